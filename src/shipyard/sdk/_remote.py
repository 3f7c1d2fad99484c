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
import operator
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, ParamSpec, TypeVar, cast, overload

from shipyard.errors import ShipyardError, ValidationError
from shipyard.sdk._connection import Connection, connect
from shipyard.sdk._remote_caller import (
    _check_function,
    _check_size,
    _describe,
    _download_outcome,
    _job_name,
    _local_sources,
    _pickle_call,
    _python_tag,
    _with_cloudpickle,
)
from shipyard.sdk._remote_runner import _RUNNER_SOURCE, RUNNER
from shipyard.sdk._training import Estimator, Input, TrainingJob, image_for

P = ParamSpec("P")
R = TypeVar("R")

CHANNEL = "call"
_TERMINAL = ("Completed", "Failed", "Stopped")


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
