"""What an endpoint's model reads: the content types a request to it may have, its default first.

The model server (runtime/model_server.py) reads JSON, CSV and NPY for every framework, and libsvm
too; a request without a content type is what its container reads by default: CSV for XGBoost
(built-in or its framework container), JSON for the other frameworks. A model package registered
for the model's container says what it accepts (``InferenceSpecification.SupportedContentTypes``),
which wins: the model's author declared it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

JSON = "application/json"
CSV = "text/csv"
NPY = "application/x-npy"
LIBSVM = "text/libsvm"

_BY_FRAMEWORK: Mapping[str, tuple[str, ...]] = {"xgboost": (CSV, LIBSVM, JSON, NPY)}
_FRAMEWORKS = (JSON, CSV, NPY)


def accepted(framework: str | None, declared: Sequence[str] = ()) -> tuple[str, ...]:
    """The content types a model of ``framework`` (``envs.framework_of`` its image; None: the
    model server's default, scikit-learn's) reads, its default first; ``declared`` (a model
    package's SupportedContentTypes) first when given, in its order, without repeats."""
    known = _BY_FRAMEWORK.get(framework or "", _FRAMEWORKS)
    return tuple(dict.fromkeys(t for t in (*declared, *known) if t))


def declared_by(
    packages: Iterable[Mapping[str, Any]], image: str, model_data_url: str | None
) -> tuple[str, ...]:
    """The SupportedContentTypes of the first package request in ``packages`` whose inference
    containers include one of ``image`` with ``model_data_url`` (the model it registered); ()
    when none does or it declares none."""
    for request in packages:
        spec = request.get("InferenceSpecification") or {}
        for container in spec.get("Containers") or ():
            if container.get("Image") == image and container.get("ModelDataUrl") == model_data_url:
                return tuple(str(t) for t in spec.get("SupportedContentTypes") or ())
    return ()
