"""The caller's side of ``shipyard.remote`` (see :mod:`shipyard.sdk._remote` for how a call
travels): checking the function, pickling the call, finding the caller's own code to ship with it,
and reading back the outcome the job left."""

from __future__ import annotations

import contextlib
import functools
import inspect
import linecache
import operator
import os
import pickle
import re
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
from typing import Any, BinaryIO, cast

from shipyard.errors import ValidationError
from shipyard.sdk._training import TrainingJob

OUTCOME_DIR = "_shipyard_remote"  # in the job's output data dir
_NOT_SHIPPED = frozenset({"shipyard", "cloudpickle"})
_SKIPPED_DIRS = frozenset({"__pycache__", "site-packages", "dist-packages", "node_modules"})
_DYNAMIC_CODE = "<dynamic-code>"
_SOURCE_LIMIT = 50 * 10**6  # bytes of .py files shipped with a call
_by_value_lock = threading.Lock()


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
