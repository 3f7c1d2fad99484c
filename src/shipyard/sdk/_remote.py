"""``@shipyard.remote``: call a local function, have it run as a Shipyard training job.

    @shipyard.remote(instance_type="ml.m5.xlarge", requirements=["lightgbm==4.5.0"])
    def train(frame, rounds=100):
        ...
        return model

    model = train(df, rounds=300)      # blocks until the job ends; its log is printed meanwhile
    call = train.submit(df)            # or: start it and come back later
    call.job.status; model = call.result()

How a call travels:

- **The call.** ``(function, args, kwargs)`` is pickled with cloudpickle on the caller's side and
  uploaded (content-addressed) as the job's ``call`` channel. The function's own module travels by
  value, as a notebook's functions do: the job does not import that module (so its top-level code,
  its other imports and its ``@remote`` decorators do not run there); what the function uses from it
  (helpers, classes, constants) is pickled along with it.
- **The source.** The caller's own Python code goes with it, as the job's source dir: every module
  already imported that lives outside the Python installation and its environments (not the
  standard library, not ``site-packages``), shipped under the ``sys.path`` entry it was imported
  from, together with every ``.py`` file of its top-level package (so imports made later, inside
  functions, work too). Hidden folders, ``__pycache__`` and virtual environments are skipped; only
  ``.py`` files are shipped (read data from an input or an S3 URI, not from the caller's disk).
  Shipyard and cloudpickle themselves are not shipped.
- **The environment.** The job runs in the ``framework``'s environment plus ``requirements``, and
  ``cloudpickle==<the caller's version>`` is added to them. Jobs run on the server's Python; the
  job refuses to unpickle a call made on another Python version (bytecode differs between them).
  Inside the job, ``shipyard`` is a stand-in whose ``remote`` leaves functions as they are, so
  modules that decorate their functions import there too.
- **The outcome.** A generated entry point, ``_shipyard_remote_runner.py``, unpickles the call and
  runs it. If the function returns, its pickled value is left in the output data dir
  (``_shipyard_remote/result.pkl`` in ``output.tar.gz``) and the job ends ``Completed``. If it
  raises, the runner leaves ``traceback.txt`` and, when the exception pickles and unpickles again,
  ``error.pkl`` there (the output data dir is kept for failed jobs too), writes
  ``/opt/ml/output/failure`` and exits 1: the job ends ``Failed`` with a ``FailureReason`` naming
  the exception and where it was raised. The caller gets the return value, or the same exception
  re-raised, with the remote traceback added as a note (:pep:`678`; printed under the local
  traceback). The traceback names the caller's files and shows their lines, also for code that
  travelled by value (cloudpickle would otherwise name it ``<dynamic-code>``). A job that ended
  without either (stopped, out of time, its environment failed to build, killed) raises
  :class:`RemoteError`, as does an exception that cannot be rebuilt on the caller's side (its
  traceback text is then in the message).

Security: pickles are code. Only two parties ever unpickle anything: the job, which unpickles the
call its own user sent, running as that user's code in that user's sandbox; and the caller, which
unpickles the outcome of its own job, written by its own function. The server never unpickles:
to it the call and the outcome are opaque objects in the store. As with any pickle, do not call
``result()`` on a job whose outputs someone you do not trust could have written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import linecache
import operator
import os
import pickle
import re
import shutil
import site
import sys
import sysconfig
import tempfile
import threading
import time
import types
import uuid
from collections import ChainMap
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Generic, ParamSpec, TypeVar, cast, overload

from shipyard.errors import ShipyardError, ValidationError
from shipyard.sdk._connection import Connection, connect
from shipyard.sdk._training import Estimator, Input, TrainingJob, image_for

P = ParamSpec("P")
R = TypeVar("R")

RUNNER = "_shipyard_remote_runner.py"
CHANNEL = "call"
OUTCOME_DIR = "_shipyard_remote"  # in the job's output data dir
_NOT_SHIPPED = frozenset({"shipyard", "cloudpickle"})
_SKIPPED_DIRS = frozenset({"__pycache__", "site-packages", "dist-packages", "node_modules"})
_TERMINAL = ("Completed", "Failed", "Stopped")
_DYNAMIC_CODE = "<dynamic-code>"
_SOURCE_LIMIT = 50 * 10**6  # bytes of .py files shipped with a call
_by_value_lock = threading.Lock()


class RemoteError(ShipyardError):
    """A remote call that gave no value and no exception that could be rebuilt here.

    ``job_name``, ``status`` and ``failure_reason`` describe the job; ``remote_traceback`` is the
    traceback text the job left (None when the function never ran or never finished).
    """

    def __init__(
        self,
        message: str,
        *,
        job_name: str,
        status: str,
        failure_reason: str | None = None,
        remote_traceback: str | None = None,
    ) -> None:
        super().__init__(message)
        self.job_name = job_name
        self.status = status
        self.failure_reason = failure_reason
        self.remote_traceback = remote_traceback


@dataclasses.dataclass(frozen=True)
class RemoteOptions:
    """Where and with what a remote function runs (the arguments of :func:`remote`)."""

    instance_type: str = "ml.m5.large"
    framework: str = "sklearn"
    framework_version: str | None = None
    requirements: tuple[str, ...] = ()
    max_run: int = 3600
    tags: Mapping[str, str] | None = None
    connection: Connection | None = None
    logs: bool = True


class RemoteCall(Generic[R]):
    """One call of a remote function, running as the training job ``job``."""

    def __init__(self, job: TrainingJob, function: str, *, logs: bool = True) -> None:
        self.job = job
        self.function = function
        self._logs = logs
        self._outcome: tuple[bool, Any] | None = None  # (returned, value or exception)

    def done(self) -> bool:
        """Whether the job has ended (then :meth:`result` returns at once)."""
        return self._outcome is not None or self.job.status in _TERMINAL

    def result(self) -> R:
        """The function's return value, once the job has ended (printing its log meanwhile, when
        the function was made with ``logs=True``); or its exception, re-raised here with the
        remote traceback as a note; or :class:`RemoteError` when the job gave neither."""
        if self._outcome is None:
            self.job.wait(logs=self._logs)
            self._outcome = self._fetch()
        returned, value = self._outcome
        if returned:
            return cast(R, value)
        raise value

    def _fetch(self) -> tuple[bool, Any]:
        import cloudpickle

        description = self.job.describe()
        status = str(description["TrainingJobStatus"])
        if description.get("SecondaryStatus") not in (None, status):
            status += f" ({description['SecondaryStatus']})"
        reason = description.get("FailureReason")
        files = _download_outcome(self.job, description)
        if "result.pkl" in files:
            try:
                return True, cloudpickle.loads(files["result.pkl"])
            except Exception as exc:  # e.g. an object of a package only the job's environment has
                error = RemoteError(
                    f"{self.function} returned in training job {self.job.name}, but its value could not "
                    f"be rebuilt here ({type(exc).__name__}: {exc}); the packages it needs must be "
                    "installed here too, in versions that read the job's",
                    job_name=self.job.name,
                    status=status,
                )
                error.__cause__ = exc
                return False, error
        text = files["traceback.txt"].decode(errors="replace").rstrip() if "traceback.txt" in files else None
        why = "its exception could not be pickled in the job, or rebuilt from the pickle"
        if "error.pkl" in files:
            try:
                loaded = cloudpickle.loads(files["error.pkl"])
            except Exception as exc:  # e.g. its class lives in a package only the job has
                why = f"its exception could not be rebuilt here ({type(exc).__name__}: {exc})"
            else:
                if isinstance(loaded, BaseException):
                    if text:
                        loaded.add_note(
                            f"\nRemote traceback (Shipyard training job {self.job.name}):\n{text}"
                        )
                    return False, loaded
        if text:
            message = f"{self.function} raised in training job {self.job.name}; {why}. Its traceback:\n{text}"
        else:
            message = (
                f"{self.function} gave no result: training job {self.job.name} ended {status}"
                + (f": {reason}" if reason else "")
                + f"\n(its log: shipyard jobs logs {self.job.name})"
            )
        return False, RemoteError(
            message, job_name=self.job.name, status=status, failure_reason=reason, remote_traceback=text
        )

    def __repr__(self) -> str:
        return f"RemoteCall({self.function}, job={self.job.name!r})"


class RemoteFunction(Generic[P, R]):
    """A function that runs as a training job when called (made by :func:`remote`).

    Calling it blocks until the job ends and returns the function's value (or raises its
    exception); :meth:`submit` starts the job and returns a :class:`RemoteCall` at once. The
    undecorated function is ``__wrapped__``. Pickled (e.g. as a helper of another remote
    function), it is the plain function: inside a job it runs in place.
    """

    def __init__(self, func: Callable[P, R], options: RemoteOptions) -> None:
        functools.update_wrapper(self, func)
        self._func = func
        self.options = options

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        call = self.submit(*args, **kwargs)
        try:
            return call.result()
        except KeyboardInterrupt:  # the caller gave up on the call: so does the job
            with contextlib.suppress(Exception):
                call.job.stop()
            raise

    def submit(self, *args: P.args, **kwargs: P.kwargs) -> RemoteCall[R]:
        """Start the job for ``func(*args, **kwargs)`` and return its handle without waiting."""
        func, options = self._func, self.options
        name = _describe(func)
        try:
            signature: inspect.Signature | None = inspect.signature(func)
        except (TypeError, ValueError):  # none to check against (some builtins)
            signature = None
        if signature is not None:
            signature.bind(*args, **kwargs)  # a wrong call fails here, as it would locally
        with tempfile.TemporaryDirectory(prefix="shipyard-remote-") as work:
            call_file = Path(work) / "call" / "call.pkl"
            call_file.parent.mkdir()
            with call_file.open("wb") as f:
                _pickle_call(func, args, kwargs, f)
            code = Path(work) / "code"
            sources = _local_sources(sys.modules.get(getattr(func, "__module__", "") or ""))
            _check_size(name, sources)
            for arcname, path in sources.items():
                (code / arcname).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, code / arcname)
            code.mkdir(exist_ok=True)
            (code / RUNNER).write_text(_RUNNER_SOURCE)
            connection = options.connection or connect()
            estimator = Estimator(
                RUNNER,
                source_dir=code,
                framework=options.framework,
                framework_version=options.framework_version,
                instance_type=options.instance_type,
                hyperparameters={"python": _python_tag(), "function": name[:256]},
                max_run=options.max_run,
                requirements=_with_cloudpickle(options.requirements),
                tags=options.tags,
                connection=connection,
            )
            job = estimator.fit({CHANNEL: Input(call_file)}, name=_job_name(func), wait=False)
        return RemoteCall(job, name, logs=options.logs)

    def __reduce__(self) -> tuple[Any, ...]:
        # As the plain function, so that a job never needs Shipyard (nor this object's connection).
        return operator.itemgetter(0), ((self._func,),)

    def __repr__(self) -> str:
        return f"<remote function {_describe(self._func)} on {self.options.instance_type}>"


@overload
def remote(
    func: Callable[P, R],
    *,
    instance_type: str = ...,
    framework: str = ...,
    framework_version: str | None = ...,
    requirements: Sequence[str] = ...,
    max_run: int = ...,
    tags: Mapping[str, str] | None = ...,
    connection: Connection | None = ...,
    logs: bool = ...,
) -> RemoteFunction[P, R]: ...


@overload
def remote(
    func: None = None,
    *,
    instance_type: str = ...,
    framework: str = ...,
    framework_version: str | None = ...,
    requirements: Sequence[str] = ...,
    max_run: int = ...,
    tags: Mapping[str, str] | None = ...,
    connection: Connection | None = ...,
    logs: bool = ...,
) -> Callable[[Callable[P, R]], RemoteFunction[P, R]]: ...


def remote(
    func: Callable[..., Any] | None = None,
    *,
    instance_type: str = "ml.m5.large",
    framework: str = "sklearn",
    framework_version: str | None = None,
    requirements: Sequence[str] = (),
    max_run: int = 3600,
    tags: Mapping[str, str] | None = None,
    connection: Connection | None = None,
    logs: bool = True,
) -> Any:
    """Make ``func`` run as a Shipyard training job when called: ``@remote`` or ``@remote(...)``.

    Args:
        func: The function (module-level, nested or a lambda; not a generator or coroutine).
        instance_type: What the job runs on (``shipyard.instance_types()`` lists them).
        framework / framework_version: The job's environment, as for :class:`Estimator`.
        requirements: Extra packages (pip requirement strings) for the job's environment;
            ``cloudpickle`` at the caller's version is added unless given here.
        max_run: Seconds before the job is stopped (the call then raises :class:`RemoteError`).
        tags: Key → value, kept with each job (costs are reported by them).
        connection: The server (default: :func:`shipyard.connect`, when first called).
        logs: Print the job's log while waiting for the result.

    Returns a :class:`RemoteFunction` (or, without ``func``, a decorator that makes one).
    Arguments that cannot be pickled raise :class:`~shipyard.errors.ValidationError` naming them,
    before any job is created.
    """
    if isinstance(requirements, str):
        raise ValidationError(
            f"requirements is a list of requirement strings, e.g. [{requirements!r}]",
            field="requirements",
            value=requirements,
        )
    image_for(framework, framework_version, None)  # an unknown framework fails here, not at the call
    options = RemoteOptions(
        instance_type=instance_type,
        framework=framework,
        framework_version=framework_version,
        requirements=tuple(requirements),
        max_run=max_run,
        tags=dict(tags) if tags else None,
        connection=connection,
        logs=logs,
    )

    def decorate(function: Callable[P, R]) -> RemoteFunction[P, R]:
        _check_function(function)
        return RemoteFunction(function, options)

    return decorate if func is None else decorate(func)


# -- the caller's side ---------------------------------------------------------------------------


def _check_function(func: object) -> None:
    if not callable(func) or isinstance(func, type):
        hint = " (options are keywords: remote(instance_type=...))" if isinstance(func, str) else ""
        raise ValidationError(
            f"remote() makes a function run as a job; {func!r} ({type(func).__name__}) is not a function{hint}",
            field="func",
            value=repr(func)[:200],
        )
    if inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func):
        raise ValidationError(
            f"remote() cannot run {_describe(func)}: it is async; make it a plain function",
            field="func",
            value=_describe(func),
        )
    if inspect.isgeneratorfunction(func):
        raise ValidationError(
            f"remote() cannot run {_describe(func)}: a generator cannot be sent back; return a list",
            field="func",
            value=_describe(func),
        )


def _describe(func: object) -> str:
    module = getattr(func, "__module__", None) or "?"
    return f"{module}:{getattr(func, '__qualname__', None) or getattr(func, '__name__', repr(func))}"


def _job_name(func: object) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", str(getattr(func, "__name__", "call"))).strip("-")[:24] or "call"
    return f"remote-{slug}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"


def _python_tag() -> str:
    return f"cp{sys.version_info.major}{sys.version_info.minor}"  # not JSON, so it stays a string


def _with_cloudpickle(requirements: Sequence[str]) -> list[str]:
    import cloudpickle
    from packaging.requirements import InvalidRequirement, Requirement

    for line in requirements:
        with contextlib.suppress(InvalidRequirement):
            if Requirement(line).name.lower() == "cloudpickle":
                return list(requirements)  # the caller's choice
    return [*requirements, f"cloudpickle=={cloudpickle.__version__}"]


def _pickle_call(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], file: BinaryIO
) -> None:
    """Write the call to ``file``: ``(func, args, kwargs)``, then the source text of the code that
    travels by value (so that the job's tracebacks show its lines). The function's module goes by
    value when it is the caller's own code (see the module docstring). ValidationError naming the
    part that cannot be pickled."""
    import cloudpickle

    found = sys.modules.get(getattr(func, "__module__", None) or "")
    module = (
        found
        if found is not None
        and _module_layout(found) is not None
        and found.__name__ not in cloudpickle.list_registry_pickle_by_value()
        else None
    )
    filenames: set[str] = set()
    with _by_value_lock:
        if module is not None:
            cloudpickle.register_pickle_by_value(module)
        try:
            try:
                _pickler(file, filenames).dump((func, args, kwargs))
            except Exception as exc:
                raise _unpicklable(func, args, kwargs, exc) from exc
        finally:
            if module is not None:
                cloudpickle.unregister_pickle_by_value(module)
    sources = {name: "".join(linecache.getlines(name)) for name in sorted(filenames)}
    pickle.dump(
        {name: text for name, text in sources.items() if text}, file, protocol=pickle.HIGHEST_PROTOCOL
    )


def _pickler(file: BinaryIO, filenames: set[str]) -> pickle.Pickler:
    """A cloudpickle pickler that keeps the file names of code sent by value (cloudpickle replaces
    them with ``<dynamic-code>``, leaving tracebacks without files or lines), noting them in
    ``filenames``."""
    import cloudpickle

    default = cloudpickle.Pickler.dispatch_table.get(types.CodeType)
    if default is None:  # another cloudpickle: names are lost, nothing else
        return cast(pickle.Pickler, cloudpickle.Pickler(file, protocol=pickle.HIGHEST_PROTOCOL))

    def reduce_code(code: types.CodeType) -> Any:
        if code.co_filename == _DYNAMIC_CODE:
            return default(code)
        filenames.add(code.co_filename)
        # Rebuilt in the job as code.replace(co_filename=...), from the code without its name.
        return operator.methodcaller("replace", co_filename=code.co_filename), (
            code.replace(co_filename=_DYNAMIC_CODE),
        )

    class Pickler(cloudpickle.Pickler):
        dispatch_table = ChainMap({types.CodeType: reduce_code}, cloudpickle.Pickler.dispatch_table)

    return cast(pickle.Pickler, Pickler(file, protocol=pickle.HIGHEST_PROTOCOL))


def _unpicklable(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], error: Exception
) -> ValidationError:
    import cloudpickle

    name = _describe(func)
    try:
        named = dict(inspect.signature(func).bind(*args, **kwargs).arguments)
    except (TypeError, ValueError):
        named = {**{f"args[{i}]": a for i, a in enumerate(args)}, **kwargs}
    for field, value, what in [
        ("func", func, f"{name} itself (or something it uses)"),
        *((key, value, f"argument {key!r} of {name}") for key, value in named.items()),
    ]:
        try:
            cloudpickle.dumps(value)
        except Exception as exc:
            return ValidationError(
                f"{what} cannot be sent to the job: cloudpickle cannot pickle it "
                f"({type(exc).__name__}: {exc}). Pass something that can be pickled (a path, an "
                "S3 URI, the data itself), or create it inside the function.",
                field=field,
                value=repr(value)[:200],
            )
    return ValidationError(
        f"The call of {name} cannot be pickled ({type(error).__name__}: {error})",
        field="arguments",
        value=name,
    )


@functools.cache
def _installed_roots() -> tuple[Path, ...]:
    """Where the Python installation and its environments keep code (not the caller's own)."""
    paths = sysconfig.get_paths()
    roots = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    with contextlib.suppress(AttributeError):  # site may be replaced (e.g. in some embedders)
        roots.update(site.getsitepackages())
        roots.add(site.getusersitepackages())
    return tuple(Path(os.path.realpath(root)) for root in roots)


def _module_layout(module: types.ModuleType) -> tuple[Path, tuple[str, ...]] | None:
    """(the sys.path entry it was imported from, its dotted name) for the caller's own modules."""
    name, file = module.__name__, getattr(module, "__file__", None)
    if name == "__main__" or not isinstance(file, str) or not file.endswith(".py"):
        return None
    parts = tuple(name.split("."))
    path = Path(os.path.abspath(file))
    real = Path(os.path.realpath(file))
    if (
        parts[0] in _NOT_SHIPPED
        or any(part in ("site-packages", "dist-packages") for part in real.parts)
        or any(real.is_relative_to(root) for root in _installed_roots())
    ):
        return None
    chain = path.parent if path.name == "__init__.py" else path.with_suffix("")
    if chain.parts[-len(parts) :] != parts or len(chain.parts) <= len(parts):
        return None  # loaded under a name its location does not give (e.g. by file path)
    return chain.parents[len(parts) - 1], parts


def _package_files(top: Path) -> Iterator[Path]:
    for folder, dirs, files in os.walk(top):
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".") and d not in _SKIPPED_DIRS and not Path(folder, d, "pyvenv.cfg").exists()
        )
        yield from (Path(folder, f) for f in sorted(files) if f.endswith(".py"))


def _local_sources(first: types.ModuleType | None) -> dict[str, Path]:
    """The caller's own code to ship: archive name → file (see the module docstring)."""
    files: dict[str, Path] = {}
    done: set[Path] = set()
    for module in [*([first] if first is not None else []), *list(sys.modules.values())]:
        layout = _module_layout(module) if isinstance(module, types.ModuleType) else None
        if layout is None:
            continue
        root, parts = layout
        top = root / parts[0]
        if top in done:
            continue
        done.add(top)
        if top.is_dir():
            for path in _package_files(top):
                files.setdefault(path.relative_to(root).as_posix(), path)
        elif (root / f"{parts[0]}.py").is_file():  # (not when deleted since it was imported)
            files.setdefault(f"{parts[0]}.py", root / f"{parts[0]}.py")
    return files


def _check_size(name: str, sources: Mapping[str, Path]) -> None:
    sizes: dict[str, int] = {}
    for arcname, path in sources.items():
        top = arcname.split("/", 1)[0]
        sizes[top] = sizes.get(top, 0) + path.stat().st_size
    if sum(sizes.values()) > _SOURCE_LIMIT:
        largest = ", ".join(
            f"{top} ({size / 1e6:.1f} MB)" for top, size in sorted(sizes.items(), key=lambda i: -i[1])[:3]
        )
        raise ValidationError(
            f"The local code that would be shipped with {name} is {sum(sizes.values()) / 1e6:.0f} MB of "
            f".py files (more than {_SOURCE_LIMIT // 10**6} MB), mostly {largest}: every imported module "
            "outside site-packages goes with its whole top-level package. Install large ones in the "
            "job's environment instead (requirements=), or keep big trees out of the package.",
            field="source",
            value=largest,
        )


def _download_outcome(job: TrainingJob, description: Mapping[str, Any]) -> dict[str, bytes]:
    """The files the runner left (none when it left nothing, or the job never ran)."""
    from botocore.exceptions import ClientError

    from shipyard.storage._archives import extract_tar

    output = str(description["OutputDataConfig"]["S3OutputPath"]).rstrip("/")
    bucket, key = f"{output}/{job.name}/output/output.tar.gz"[len("s3://") :].split("/", 1)
    try:
        body = job.connection.client("s3").get_object(Bucket=bucket, Key=key)["Body"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return {}
        raise
    with tempfile.TemporaryDirectory(prefix="shipyard-remote-") as folder:
        extract_tar(body, Path(folder), what=f"output of {job.name}")
        found = Path(folder) / OUTCOME_DIR
        return {
            name: (found / name).read_bytes()
            for name in ("result.pkl", "error.pkl", "traceback.txt")
            if (found / name).is_file()
        }


# -- the job's side: the generated entry point ---------------------------------------------------

_RUNNER_SOURCE = '''\
"""Runs one call sent by shipyard.remote, or one step of a Shipyard pipeline (generated by the
Shipyard SDK).

The call (function, args, kwargs) comes pickled in the "call" channel ($SHIPYARD_CALL in a pipeline
step). The return value, or the exception and its traceback, is left in <output data dir>/
_shipyard_remote/ ($SHIPYARD_OUT) for the caller; after an exception the job fails (exit 1) with a
FailureReason naming it. In a pipeline step, arguments that stand for a parameter or an earlier
step's result are replaced by its value first ($SHIPYARD_PARAM_<name>, $SHIPYARD_STEPS/<step>), and
the result is also left as result.json for the pipeline's conditions.
"""

import json
import linecache
import os
import sys
import traceback
import types
from pathlib import Path

OUT = (
    Path(os.environ["SHIPYARD_OUT"])
    if os.environ.get("SHIPYARD_OUT")
    else Path(os.environ.get("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data")) / "_shipyard_remote"
)
FAILURE = Path(os.environ.get("SM_OUTPUT_DIR", "/opt/ml/output")) / "failure"
PLACEHOLDER = "__shipyard_placeholder__"


def _write(name, data):
    OUT.mkdir(parents=True, exist_ok=True)
    part = OUT / (name + ".part")
    part.write_bytes(data)
    part.replace(OUT / name)


def _report(exc, pickler):
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        exc.add_note(
            f"(The job has no module {exc.name!r}: add its package to remote(requirements=[...]), or, "
            "if it is your own code, import it before the call so that it is shipped.)"
        )
    text = "".join(traceback.format_exception(exc))
    sys.stderr.write(text)
    sys.stderr.flush()
    if pickler is not None:
        try:
            data = pickler.dumps(exc)
            pickler.loads(data)  # one that cannot be rebuilt travels as text only
        except Exception:
            pass
        else:
            _write("error.pkl", data)
    _write("traceback.txt", text.encode("utf-8", "replace"))
    summary = "".join(traceback.format_exception_only(exc)).strip()
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"\\n  in {frames[-1].name} ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""
    FAILURE.parent.mkdir(parents=True, exist_ok=True)
    FAILURE.write_text(f"AlgorithmError: {summary}{where}\\n(the traceback is in the job's log)")
    return 1


def _stand_in_for_shipyard():
    try:
        import shipyard  # noqa: F401
    except ImportError:
        stub = types.ModuleType("shipyard", "Inside a shipyard.remote job: remote() leaves functions as they are.")

        def remote(func=None, **_options):
            return func if func is not None else (lambda f: f)

        stub.remote = remote
        sys.modules["shipyard"] = stub


def _placeholder(cloudpickle, kind, name, path, kind_of_value):
    if kind == "parameter":
        raw = os.environ["SHIPYARD_PARAM_" + name]
        convert = {"Integer": int, "Float": float, "Boolean": lambda v: v.strip().lower() == "true"}
        value = convert.get(kind_of_value, str)(raw)
    else:
        with open(Path(os.environ["SHIPYARD_STEPS"]) / name / "result.pkl", "rb") as f:
            value = cloudpickle.load(f)
    for part in path:
        value = value[part]
    return value


def _resolve(value, cloudpickle):
    """The arguments with each parameter and earlier step's result in place."""
    if isinstance(value, dict):
        if set(value) == {PLACEHOLDER}:
            return _placeholder(cloudpickle, *value[PLACEHOLDER])
        return {k: _resolve(v, cloudpickle) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, cloudpickle) for v in value]
    if type(value) is tuple:
        return tuple(_resolve(v, cloudpickle) for v in value)
    return value


def main():
    try:
        import cloudpickle
    except ImportError as exc:
        return _report(exc, None)
    wanted, here = os.environ.get("SM_HP_PYTHON", ""), "cp%d%d" % sys.version_info[:2]
    if wanted and wanted != here:
        error = RuntimeError(
            f"The job runs Python {sys.version_info[0]}.{sys.version_info[1]} and the call was pickled "
            f"on another Python ({wanted}); call it from the server's Python version"
        )
        return _report(error, cloudpickle)
    _stand_in_for_shipyard()
    try:
        call = os.environ.get("SHIPYARD_CALL") or Path(os.environ["SM_CHANNEL_CALL"]) / "call.pkl"
        with open(call, "rb") as f:
            func, args, kwargs = cloudpickle.load(f)
            sources = cloudpickle.load(f)
        for name, text in sources.items():  # the caller's lines, for tracebacks through its code
            linecache.cache[name] = (len(text), None, text.splitlines(True), name)
        args, kwargs = _resolve(args, cloudpickle), _resolve(kwargs, cloudpickle)
    except BaseException as exc:
        return _report(exc, cloudpickle)
    try:
        result = func(*args, **kwargs)
    except BaseException as exc:
        if exc.__traceback__ is not None:  # start the traceback at the function, not here
            exc = exc.with_traceback(exc.__traceback__.tb_next)
        return _report(exc, cloudpickle)
    try:
        data = cloudpickle.dumps(result)
    except Exception as exc:
        error = TypeError(
            f"The return value of {getattr(func, '__qualname__', func)!s} "
            f"({type(result).__qualname__}) cannot be pickled to be sent back: {exc}"
        )
        error.__suppress_context__ = True  # the message says it all
        return _report(error, cloudpickle)
    _write("result.pkl", data)
    if os.environ.get("SHIPYARD_OUT"):  # a pipeline step: the value for its conditions, when it is JSON
        try:
            text = json.dumps({"value": result})
        except (TypeError, ValueError):
            text = json.dumps({"value": None, "type": type(result).__qualname__})
        _write("result.json", text.encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''
