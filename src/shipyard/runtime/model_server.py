"""The model server: one endpoint instance, in the model's environment.

    python model_server.py --model-dir DIR --port PORT[,PORT...] [--code-dir DIR]
                           [--program inference.py] [--framework sklearn|xgboost|pytorch]
                           [--warm-content-type text/csv]

Self-contained (the standard library, plus the model's own libraries where it uses them), because
it runs with the model's Python, which has no Shipyard. It serves SageMaker's inference contract on
127.0.0.1: ``GET /ping`` (200 once the model is loaded) and ``POST /invocations``, over keep-alive
HTTP/1.1.

Handlers follow SageMaker's framework containers: the program (``--program``, from
SAGEMAKER_PROGRAM, in ``--code-dir``) may define ``model_fn(model_dir)``, ``input_fn(body,
content_type)``, ``predict_fn(data, model)`` and ``output_fn(prediction, accept)``, or
``transform_fn(model, body, content_type, accept)`` instead of the last three; each may take a
trailing ``context``. What it leaves out comes from the defaults for the framework: scikit-learn
(a joblib or pickle file of the user's own model), XGBoost (a booster file, such as the built-in
algorithm's ``xgboost-model``, pickled or in XGBoost's format) and PyTorch (TorchScript), with
``application/json``, ``text/csv`` and ``application/x-npy`` in and out (and ``text/libsvm`` in).
A request without a content type is JSON, or CSV for XGBoost, as its container reads it. The
built-in XGBoost answers CSV as its container does: one comma-joined line for an endpoint, one
line per record in a batch transform (``SAGEMAKER_BATCH``), a record's scores comma-joined. A
handler's exception answers 500 with its message; an unsupported content type, or a body the
default handlers cannot read as its content type, 415; XGBoost refusing the rows (their feature
count, say) 400: the server's runtime turns each into ModelError.

Only the Shipyard server may call it: when ``$SHIPYARD_MODEL_SERVER_TOKEN`` is set (it is taken
out of the environment at start), every request must carry it in ``X-Shipyard-Token``; others
answer 403, so another job on the machine cannot reach the model directly.

With several ports (a batch transform's servers, one per core it may use), the model is loaded once
and then one worker process per port is forked from the loaded server, as gunicorn's ``--preload``
does: the imports and the model load are paid once, and the workers share the model's memory. With
``--warm-content-type``, the default handlers' reader for that type (pandas, for CSV) is imported
before the server answers ``/ping``, not by each worker's first request.

Output goes to standard output (the Shipyard server keeps it as the instance's log). With
``--exit-with-stdin`` the server exits when its standard input closes (the Shipyard server that
started it went away).
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import importlib.util
import inspect
import io
import json
import os
import pathlib
import sys
import threading
import traceback
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

JSON = "application/json"
CSV = "text/csv"
NPY = "application/x-npy"
LIBSVM = ("text/libsvm", "text/x-libsvm")
STREAM_ERROR = "X-Shipyard-Stream-Error"  # the trailer of a stream a handler failed midway


class UnsupportedContentType(Exception):
    """415: the content type is not one the handlers read, or the body is not what it says."""


class BadInput(Exception):
    """400: the model refuses the rows it was given."""


# -- default handlers -----------------------------------------------------------------------------
def _model_file(model_dir: str, suffixes: tuple[str, ...], names: tuple[str, ...] = ()) -> pathlib.Path:
    folder = pathlib.Path(model_dir)
    for name in names:
        if (folder / name).is_file():
            return folder / name
    found = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in suffixes)
    if not found:
        wanted = ", ".join([*names, *(f"*{s}" for s in suffixes)])
        raise FileNotFoundError(f"no model file ({wanted}) in the model archive; give a model_fn to load it")
    return found[0]


def default_model_fn(framework: str, model_dir: str) -> Any:
    if framework == "xgboost":
        import xgboost

        path = _model_file(model_dir, (".json", ".ubj", ".bst", ".model"), ("xgboost-model",))
        with path.open("rb") as f:
            pickled = f.read(1) == b"\x80"  # a pickle's protocol mark: SageMaker's XGBoost < 1.3-1
        if pickled:
            import pickle

            with path.open("rb") as f:
                return pickle.load(f)  # the job's own model file, as SageMaker's container loads it
        booster = xgboost.Booster()
        booster.load_model(str(path))
        return booster
    if framework == "pytorch":
        import torch

        model = torch.jit.load(str(_model_file(model_dir, (".pt", ".pth"), ("model.pt", "model.pth"))))
        model.eval()
        return model
    path = _model_file(model_dir, (".joblib", ".pkl", ".pickle"), ("model.joblib", "model.pkl"))
    if path.suffix == ".joblib":
        import joblib

        return joblib.load(path)
    import pickle

    with path.open("rb") as f:
        return pickle.load(f)  # the user's own model file, as SageMaker's containers load it


def default_input_fn(body: bytes, content_type: str) -> Any:
    kind = content_type.split(";")[0].strip().lower()
    if kind not in (JSON, CSV, NPY, *LIBSVM):
        raise UnsupportedContentType(
            f"content type {content_type!r} is not supported (use {CSV}, {JSON}, {NPY} or text/libsvm)"
        )
    try:
        return _parse(body, kind)
    except Exception as exc:
        raise UnsupportedContentType(
            f"the request body could not be read as {kind}: {type(exc).__name__}: {exc}"
        ) from None


def _parse(body: bytes, kind: str) -> Any:
    import numpy as np

    if kind == JSON:
        data = json.loads(body)
        if isinstance(data, dict):  # {"instances": [...]} or {"inputs": [...]}
            data = data.get("instances", data.get("inputs", data))
        return np.asarray(data)
    if kind == CSV:
        return _parse_csv(body)
    if kind == NPY:
        return np.load(io.BytesIO(body), allow_pickle=False)
    return _parse_libsvm(body)


def _parse_libsvm(body: bytes) -> Any:
    """Rows of ``[label] index:value ...``; the label, if there, is ignored (as XGBoost's container
    does), and the matrix has as many columns as the largest index asks for."""
    from scipy.sparse import csr_matrix

    rows, columns, values = [], [], []
    lines = [line for line in body.decode("utf-8").splitlines() if line.strip()]
    for row, line in enumerate(lines):
        for item in line.split():
            if ":" in item:
                index, value = item.split(":", 1)
                rows.append(row)
                columns.append(int(index))
                values.append(float(value))
    width = max(columns, default=-1) + 1
    return csr_matrix((values, (rows, columns)), shape=(len(lines), width))


def _parse_csv(body: bytes) -> Any:
    """Numbers in CSV rows, parsed in C: pandas' reader when the environment has pandas (batch
    transform sends megabytes at a time), else numpy's."""
    import numpy as np

    if not body.strip():
        return np.empty((0, 0))
    try:
        import pandas as pd
    except ImportError:
        return np.loadtxt(io.BytesIO(body), delimiter=",", ndmin=2)
    return pd.read_csv(io.BytesIO(body), header=None, skip_blank_lines=True).to_numpy(dtype=float)


def warm_reader(content_type: str) -> None:
    """Import what the default ``input_fn`` reads ``content_type`` with, if the environment has it."""
    if content_type.split(";")[0].strip().lower() == CSV:
        with contextlib.suppress(ImportError):
            import pandas  # noqa: F401


def default_predict_fn(framework: str, data: Any, model: Any) -> Any:
    if framework == "xgboost":
        import xgboost

        try:
            return model.predict(xgboost.DMatrix(data))
        except (xgboost.core.XGBoostError, ValueError) as exc:
            message = str(exc).split("Stack trace:", 1)[0].strip()
            raise BadInput(f"XGBoost could not score the rows: {message}") from None
    if framework == "pytorch":
        import torch

        with torch.no_grad():
            return model(torch.as_tensor(data, dtype=torch.float32)).numpy()
    return model.predict(data)


def default_output_fn(framework: str, prediction: Any, accept: str) -> tuple[bytes, str]:
    """JSON by default; the built-in XGBoost answers CSV by default as its container does: for an
    endpoint, one line of comma-separated scores for one score per row (notebooks parse it so),
    in a batch transform (``SAGEMAKER_BATCH``) one line per row, so outputs join their records."""
    import numpy as np

    kind = (accept or "*/*").split(";")[0].strip().lower()
    if kind == "*/*":
        kind = CSV if framework == "xgboost" else JSON
    array = np.asarray(prediction)
    if kind == JSON:
        return json.dumps(array.tolist()).encode(), JSON
    if kind == CSV and framework == "xgboost" and array.ndim == 1 and not os.environ.get("SAGEMAKER_BATCH"):
        return ",".join(str(v) for v in array.tolist()).encode(), CSV
    if kind == CSV:
        if array.ndim == 1:  # one value a row: the common case, and a batch may hold a million
            return ("\n".join(map(str, array.tolist())) + "\n").encode(), CSV
        rows = array.reshape(len(array), -1) if array.ndim else array.reshape(1, 1)
        return "".join(",".join(str(v) for v in row) + "\n" for row in rows.tolist()).encode(), CSV
    if kind == NPY:
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        return buffer.getvalue(), NPY
    raise UnsupportedContentType(f"accept type {accept!r} is not supported (use {JSON}, {CSV} or {NPY})")


class Context:
    """The ``context`` SageMaker's inference toolkit passes to handlers that take one: the model's
    properties and, during a request, its headers; headers set here go back with the answer (e.g.
    ``X-Amzn-SageMaker-Custom-Attributes``, which InvokeEndpoint returns as CustomAttributes)."""

    def __init__(self, model_dir: str, headers: dict[str, str] | None = None) -> None:
        self.system_properties = {"model_dir": model_dir, "gpu_id": None}
        self.request_headers = {k.lower(): v for k, v in (headers or {}).items()}
        self.response_headers: dict[str, str] = {}

    @property
    def custom_attributes(self) -> str | None:
        return self.request_headers.get("x-amzn-sagemaker-custom-attributes")

    def get_request_header(self, idx: int, key: str) -> str | None:
        return self.request_headers.get(key.lower())

    def get_all_request_header(self, idx: int) -> dict[str, str]:
        return dict(self.request_headers)

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        self.response_headers[key] = value


# -- the user's handlers, with the defaults for what they leave out -------------------------------
class Handlers:
    def __init__(
        self,
        framework: str,
        model_dir: str,
        code_dir: str | None,
        program: str | None,
        warm_content_type: str | None = None,
    ) -> None:
        self.framework = framework
        self.model_dir = model_dir
        # what a request without a Content-Type is: XGBoost's container reads CSV
        self.default_content_type = CSV if framework == "xgboost" else JSON
        self.user: Any = None
        if program:
            if code_dir and code_dir not in sys.path:
                sys.path.insert(0, code_dir)
            path = pathlib.Path(code_dir or ".") / program
            spec = importlib.util.spec_from_file_location(pathlib.Path(program).stem, path)
            if spec is None or spec.loader is None:
                raise FileNotFoundError(f"the inference program {program!r} is not in {code_dir}")
            self.user = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(self.user)
        self.model = self._call(
            "model_fn",
            model_dir,
            default=lambda d: default_model_fn(framework, d),
            context=Context(model_dir),
        )
        if warm_content_type and not (
            getattr(self.user, "input_fn", None) or getattr(self.user, "transform_fn", None)
        ):
            warm_reader(warm_content_type)

    def _call(self, name: str, *args: Any, default: Any, context: Context) -> Any:
        function = getattr(self.user, name, None)
        if function is None:
            return default(*args)
        if len(inspect.signature(function).parameters) == len(args) + 1:  # it takes the context
            return function(*args, context)
        return function(*args)

    def invoke(
        self, body: bytes, content_type: str, accept: str, headers: dict[str, str] | None = None
    ) -> tuple[bytes | Iterator[bytes], str, dict[str, str]]:
        """The answer's body, content type and the headers the handlers set. The body is an
        iterator of chunks when the handlers stream (see :func:`_is_stream`); its first chunk
        has been made already, so a handler that fails at once fails the request, not the stream."""
        context = Context(self.model_dir, headers)
        default_content = accept if accept and accept != "*/*" else JSON
        if getattr(self.user, "transform_fn", None) is not None:
            result = self._call(
                "transform_fn", self.model, body, content_type, accept, default=None, context=context
            )
        else:
            data = self._call("input_fn", body, content_type, default=default_input_fn, context=context)
            prediction = self._call(
                "predict_fn",
                data,
                self.model,
                default=lambda d, m: default_predict_fn(self.framework, d, m),
                context=context,
            )

            def output(item: Any) -> Any:
                return self._call(
                    "output_fn",
                    item,
                    accept,
                    default=lambda p, a: default_output_fn(self.framework, p, a),
                    context=context,
                )

            # a predict_fn that yields: each item through output_fn, each answer one chunk
            result = (output(item) for item in prediction) if _is_stream(prediction) else output(prediction)
        if not _is_stream(result):
            chunk, content = _chunk(result, default_content)
            return chunk, content, context.response_headers
        items = iter(result)
        first = next(items, None)
        if first is None:
            return b"", default_content, context.response_headers
        chunk, content = _chunk(first, default_content)
        return _chunks(chunk, items, content), content, context.response_headers


def _is_stream(value: Any) -> bool:
    """A handler streams when it returns an iterator (a generator, say): not bytes, a string, a
    tuple of (body, content type), or an array, which are one answer."""
    return isinstance(value, Iterator) and not isinstance(value, (str, bytes, bytearray, tuple))


def _chunk(result: Any, content: str) -> tuple[bytes, str]:
    """One answer (or chunk) as bytes, with its content type if it gave one."""
    if isinstance(result, tuple):
        result, content = result
    if isinstance(result, str):
        result = result.encode()
    return bytes(result), content


def _chunks(first: bytes, rest: Iterator[Any], content: str) -> Iterator[bytes]:
    yield first
    for item in rest:
        yield _chunk(item, content)[0]


def _handler_class(state: dict[str, Any], token: str) -> type[BaseHTTPRequestHandler]:
    """The request handler of one server: ``state`` holds the loaded handlers (or why not)."""
    expected = token.encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: without it, 40 ms each answer

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per request would drown the user's own output

        def _answer(
            self,
            status: int,
            body: bytes,
            content_type: str = "text/plain",
            headers: dict[str, str] | None = None,
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _refused(self) -> bool:
            """Answer 403 to a request without the server's token (the connection then closes)."""
            given = (self.headers.get("X-Shipyard-Token") or "").encode()
            if not expected or hmac.compare_digest(given, expected):
                return False
            self.close_connection = True
            self._answer(
                403, b"only the Shipyard server may call this model server", headers={"Connection": "close"}
            )
            return True

        def do_GET(self) -> None:
            if self._refused():
                return
            if self.path != "/ping":
                self._answer(404, b"not found")
            elif state["handlers"] is not None:
                self._answer(200, b"")
            else:
                self._answer(503, (state["error"] or "loading the model").encode())

        def do_POST(self) -> None:
            if self._refused():
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if self.path != "/invocations":
                self._answer(404, b"not found")
                return
            handlers = state["handlers"]
            if handlers is None:
                self._answer(503, (state["error"] or "the model is still loading").encode())
                return
            try:
                result, content_type, extra = handlers.invoke(
                    body,
                    self.headers.get("Content-Type") or handlers.default_content_type,
                    self.headers.get("Accept") or "*/*",
                    dict(self.headers.items()),
                )
            except UnsupportedContentType as exc:
                self._answer(415, str(exc).encode())
            except BadInput as exc:
                self._answer(400, str(exc).encode())
            except Exception as exc:
                traceback.print_exc()
                self._answer(500, f"{type(exc).__name__}: {exc}".encode())
            else:
                if isinstance(result, bytes):
                    self._answer(200, result, content_type, extra)
                else:
                    self._stream(result, content_type, extra)

        def _stream(self, chunks: Iterator[bytes], content_type: str, headers: dict[str, str]) -> None:
            """Answer in chunks as the handler yields them (HTTP/1.1 chunked transfer encoding,
            as SageMaker's streaming containers answer); a handler that fails midway ends the
            stream with its message in the trailer ``X-Shipyard-Stream-Error``."""
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Trailer", STREAM_ERROR)
            self.end_headers()
            trailer = b""
            try:
                for chunk in chunks:
                    if chunk:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the Shipyard server stopped reading
                return
            except Exception as exc:
                traceback.print_exc()
                message = f"{type(exc).__name__}: {exc}".replace("\r", " ").replace("\n", " ")
                trailer = f"{STREAM_ERROR}: {message}\r\n".encode("utf-8", "replace")
            self.wfile.write(b"0\r\n" + trailer + b"\r\n")

    return Handler


def _load(state: dict[str, Any], handlers_factory: Any, where: str) -> None:
    try:
        state["handlers"] = handlers_factory()
        print(f"Model server ready on {where}", flush=True)
    except Exception as exc:
        traceback.print_exc()
        state["error"] = f"loading the model failed: {type(exc).__name__}: {exc}"


def serve(
    handlers_factory: Any,
    port: int,
    exit_with_stdin: bool = False,
    host: str = "127.0.0.1",
    token: str = "",
) -> None:
    """One server: ``/ping`` answers 503 while the model loads (in a thread), then 200."""
    state: dict[str, Any] = {"handlers": None, "error": None}
    server = ThreadingHTTPServer((host, port), _handler_class(state, token))
    server.daemon_threads = True

    def load() -> None:
        _load(state, handlers_factory, f"{host}:{port}")

    threading.Thread(target=load, daemon=True).start()
    if exit_with_stdin:
        threading.Thread(target=_exit_with_stdin, daemon=True).start()
    server.serve_forever()


def serve_workers(
    handlers_factory: Any,
    ports: list[int],
    exit_with_stdin: bool = False,
    host: str = "127.0.0.1",
    token: str = "",
) -> None:
    """One worker process per port, forked once the model is loaded (see the module docstring).

    Every port listens from the start, so a ``/ping`` sent while the model loads waits and is
    answered as soon as it is loaded. The load runs before any thread is started, so the workers
    fork from a process with one thread; each ends with the one that forked it. A model that fails
    to load is not forked: every port answers why.
    """
    state: dict[str, Any] = {"handlers": None, "error": None}
    handler = _handler_class(state, token)
    servers = [ThreadingHTTPServer((host, port), handler) for port in ports]
    for server in servers:
        server.daemon_threads = True
    _load(state, handlers_factory, ", ".join(f"{host}:{port}" for port in ports))
    if state["handlers"] is None:
        for server in servers[1:]:
            threading.Thread(target=server.serve_forever, daemon=True).start()
        servers[0].serve_forever()
        return
    sys.stdout.flush()
    parent = os.getpid()
    for index, server in enumerate(servers[1:], start=1):
        if os.fork() == 0:
            _die_with_parent(parent)
            for other, sibling in enumerate(servers):
                if other != index:
                    sibling.socket.close()
            try:
                server.serve_forever()
            finally:
                os._exit(0)
    for server in servers[1:]:
        server.socket.close()
    if exit_with_stdin:
        threading.Thread(target=_exit_with_stdin, daemon=True).start()
    servers[0].serve_forever()


def _die_with_parent(parent: int) -> None:
    """Have the kernel end this worker when the server that forked it ends (Linux's prctl)."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it ended before the kernel was told
        os._exit(0)


def _exit_with_stdin() -> None:
    while sys.stdin.buffer.read(1):
        pass
    os._exit(0)  # the Shipyard server went away


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument(
        "--port", required=True, help="the port, or several comma-separated: one worker process each"
    )
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    parser.add_argument("--code-dir")
    parser.add_argument("--program")
    parser.add_argument("--framework", default="sklearn")
    parser.add_argument("--warm-content-type", help="import the default reader of this type before ready")
    parser.add_argument("--exit-with-stdin", action="store_true", help="exit when standard input closes")
    parser.add_argument("--memory-limit-mb", type=int, help="the memory this process may allocate")
    args = parser.parse_args(argv)
    sys.stderr = sys.stdout
    if args.memory_limit_mb:
        import resource

        # Its heap and anonymous mappings (RLIMIT_DATA), soft and hard: the model's code, which runs
        # after this, cannot raise it; an allocation past it is a MemoryError.
        limit = args.memory_limit_mb * 2**20
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    ports = [int(p) for p in args.port.split(",")]
    token = os.environ.pop("SHIPYARD_MODEL_SERVER_TOKEN", "")

    def handlers() -> Handlers:
        return Handlers(args.framework, args.model_dir, args.code_dir, args.program, args.warm_content_type)

    if len(ports) > 1:
        serve_workers(handlers, ports, exit_with_stdin=args.exit_with_stdin, host=args.host, token=token)
        return
    serve(handlers, ports[0], exit_with_stdin=args.exit_with_stdin, host=args.host, token=token)


if __name__ == "__main__":
    main()
