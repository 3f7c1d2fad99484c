"""How the SDK sends data to endpoints and reads their answers."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest

from shipyard.sdk._hosting import CSVSerializer, JSONSerializer, NumpySerializer, _serializer_for, deserialize
from shipyard.sdk._progress import Progress


def test_the_serializer_follows_the_data() -> None:
    frame = pd.DataFrame({"a": [1.5, 2.0], "b": [3, 4]})
    assert isinstance(_serializer_for(frame), CSVSerializer)
    assert CSVSerializer().serialize(frame) == b"1.5,3\n2.0,4\n"  # no header, no index
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert isinstance(_serializer_for(array), NumpySerializer)
    loaded = np.load(io.BytesIO(NumpySerializer().serialize(array)), allow_pickle=False)
    assert loaded.dtype == np.float32 and loaded.tolist() == array.tolist()
    assert isinstance(_serializer_for([[1, 2]]), JSONSerializer)
    assert json.loads(JSONSerializer().serialize(frame)) == [[1.5, 3.0], [2.0, 4.0]]
    assert isinstance(_serializer_for("1,2\n"), CSVSerializer)
    assert CSVSerializer().serialize([1, 2, 3]) == b"1,2,3\n"  # one row
    assert CSVSerializer().serialize([[1, 2], [3, 4]]) == b"1,2\n3,4\n"


def test_answers_are_read_by_their_content_type() -> None:
    assert deserialize(b'{"p": [0.1]}', "application/json; charset=utf-8") == {"p": [0.1]}
    assert deserialize(b"0.1\n0.9\n", "text/csv").tolist() == [0.1, 0.9]  # one score a row
    assert deserialize(b"0.1,0.9", "text/csv").tolist() == [0.1, 0.9]  # one line of scores
    assert deserialize(b"1,2\n3,4\n", "text/csv").tolist() == [[1, 2], [3, 4]]
    assert deserialize(b"cat,0.9\n", "text/csv").tolist() == ["cat", "0.9"]
    buffer = io.BytesIO()
    np.save(buffer, np.array([1, 2]))
    assert deserialize(buffer.getvalue(), "application/x-npy").tolist() == [1, 2]
    assert deserialize(b"\x89PNG", "image/png") == b"\x89PNG"


def test_progress_off_a_terminal_prints_each_new_status_once(capsys: pytest.CaptureFixture[str]) -> None:
    with Progress("Training job t") as progress:
        for text in ("InProgress", "InProgress", "Completed"):
            progress.update(text)
        progress.log("[bold]not markup[/]")
        progress.done("Completed in 1.0 s")
    assert capsys.readouterr().out.splitlines() == [
        "Training job t: InProgress",
        "Training job t: Completed",
        "[bold]not markup[/]",
        "Training job t: Completed in 1.0 s",
    ]
