"""The tuning search's ask, as a pure function, and the worker process that runs it.

:func:`ask` is a function of what the tuning job already knows — its spec, its sampler, each
trial's values, state, objective and curve (:class:`AskRequest`) — so it can run anywhere:
:class:`AskWorker` runs it off the scheduler thread, in a process of its own by default, where
Optuna (and torch, which the Gaussian process imports: ~250 MB) live instead of the server. The
study is rebuilt for each ask and the sampler seeded by RandomSeed and the trial number, so the
same request gives the same suggestion wherever and whenever it runs.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import enum
import logging
import multiprocessing
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from shipyard.core.tuning import (
    ParameterRange,
    SamplerChoice,
    SamplerKind,
    TrainingDefinition,
    Trial,
    TuningJobSpec,
)

log = logging.getLogger(__name__)


class Seen(enum.StrEnum):
    """A trial's state as the sampler sees it."""

    COMPLETE = "complete"  # with its objective
    PRUNED = "pruned"  # stopped early: judged by its curve
    FAIL = "fail"
    RUNNING = "running"  # in flight: TPE's constant liar, the GP's pending points


@dataclasses.dataclass(frozen=True)
class Observed:
    """A trial as the search knows it: its values, state, objective and objective curve."""

    trial: Trial
    seen: Seen
    value: float | None = None
    curve: tuple[float, ...] = ()


@dataclasses.dataclass(frozen=True)
class AskRequest:
    """Everything one ask needs: equal requests give equal suggestions.

    Attributes:
        spec: The tuning job's spec.
        choice: Its sampler (``core.tuning.choose_sampler``).
        number: The trial asked for (seeds the sampler with the RandomSeed).
        trials: The tuning job's trials so far.
        parents: Warm start: the parents' completed trials (those outside this space are skipped).
    """

    spec: TuningJobSpec
    choice: SamplerChoice
    number: int
    trials: tuple[Observed, ...]
    parents: tuple[Observed, ...] = ()


@dataclasses.dataclass(frozen=True)
class Suggestion:
    """The next trial: its definition's name (None: the only one) and its values."""

    definition: str | None
    values: Mapping[str, Any]


def make_sampler(choice: SamplerChoice, spec: TuningJobSpec, seed: int) -> Any:
    """The Optuna sampler ``choice`` names, seeded with ``seed``."""
    import optuna

    sampler: optuna.samplers.BaseSampler
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if choice.kind == SamplerKind.RANDOM:
            sampler = optuna.samplers.RandomSampler(seed=seed)
        elif choice.kind == SamplerKind.GP:
            # Trials in flight enter the study as running: the GP's q-batch expected
            # improvement counts them as pending points, so parallel trials spread.
            sampler = optuna.samplers.GPSampler(
                seed=seed, n_startup_trials=choice.startup_trials, warn_independent_sampling=False
            )
        else:
            sampler = optuna.samplers.TPESampler(
                seed=seed,
                constant_liar=choice.constant_liar,
                multivariate=True,
                group=len(spec.definitions) > 1,  # each definition its own subspace
                n_startup_trials=choice.startup_trials,
            )
    return sampler


def trial_seed(spec: TuningJobSpec, number: int) -> int:
    """One seed per (RandomSeed, trial): different RandomSeeds must not share shifted sequences."""
    return (spec.random_seed * 1_000_003 + number) % 2**32


def ask(request: AskRequest) -> Suggestion:
    """The next trial's definition and values: an in-memory Optuna study built from the request's
    trials (and the warm-start parents'), then one ask."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = request.spec
    space = _SearchSpace(spec.definitions)
    sampler = make_sampler(request.choice, spec, trial_seed(spec, request.number))
    study = optuna.create_study(direction="maximize" if spec.maximize else "minimize", sampler=sampler)
    states = {
        Seen.COMPLETE: optuna.trial.TrialState.COMPLETE,
        Seen.PRUNED: optuna.trial.TrialState.PRUNED,
        Seen.FAIL: optuna.trial.TrialState.FAIL,
        Seen.RUNNING: optuna.trial.TrialState.RUNNING,
    }
    for observed in (*request.parents, *request.trials):
        params = space.params(observed.trial)
        if params is None:
            continue
        study.add_trial(
            optuna.trial.create_trial(
                state=states[observed.seen],
                value=observed.value if observed.seen == Seen.COMPLETE else None,
                params=params,
                distributions=space.distributions(params),
                intermediate_values={step + 1: value for step, value in enumerate(observed.curve)},
            )
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        definition, values = space.ask(study)
    return Suggestion(definition.name, values)


def _prepare(kinds: tuple[SamplerKind, ...]) -> None:
    """Import what the samplers need, so that the first ask does not wait for it."""
    import optuna

    if SamplerKind.GP in kinds:
        import optuna._gp.gp  # noqa: F401  (torch, scipy)


def _spawned() -> concurrent.futures.Executor:
    # spawn, not fork: the server has threads (and a forked copy of it would hold their locks).
    return concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))


class InlineExecutor(concurrent.futures.Executor):
    """Runs each task at once, in the caller's thread (tests; the quality benchmark)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # the future carries it, as a pool's would
            future.set_exception(exc)
        return future


@dataclasses.dataclass
class _Pending:
    request: AskRequest
    future: concurrent.futures.Future[Suggestion]
    retried: bool = False


def _still_holds(asked: AskRequest, now: AskRequest) -> bool:
    """Whether what was asked with is still true: the same trial, of the same job, over the same
    trials, each seen as it is now or as running then. A trial that ended while its successor was
    asked for is not waited for (a plain ask/tell loop does not either); one seen as completed that
    then ended otherwise (it failed to upload) is."""
    return (
        asked.number == now.number
        and asked.spec == now.spec
        and asked.choice == now.choice
        and asked.parents == now.parents
        and len(asked.trials) == len(now.trials)
        and all(a == b or a.seen == Seen.RUNNING for a, b in zip(asked.trials, now.trials, strict=True))
    )


class AskWorker:
    """Asks off the scheduler thread: :meth:`suggestion` answers at once with a suggestion made
    for that request, or None while one is being made (``on_ready`` is called when it is). One
    ask per tuning job at a time. A suggestion asked while trials still ran serves the same trial
    number after they ended (as a plain ask/tell loop's would); one asked with a result that did
    not come is asked again (see :func:`_still_holds`).

    Args:
        executor: Makes the executor asks run in (a process of their own by default, started at
            the first ask or :meth:`prepare`, shut down after ``idle_seconds`` without tuning).
        on_ready: Called (in a worker's thread) when a suggestion is ready: the scheduler's wake.
        ask: The ask itself (tests give a slow or failing one; it must pickle for a process).
    """

    def __init__(
        self,
        executor: Callable[[], concurrent.futures.Executor] = _spawned,
        *,
        on_ready: Callable[[], None] = lambda: None,
        ask: Callable[[AskRequest], Suggestion] = ask,
        idle_seconds: float = 300.0,
    ) -> None:
        self._make_executor = executor
        self._on_ready = on_ready
        self._ask = ask
        self._idle_seconds = idle_seconds
        self._executor: concurrent.futures.Executor | None = None
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._idle_since: float | None = None

    def _pool(self) -> concurrent.futures.Executor:
        if self._executor is None:
            self._executor = self._make_executor()
        return self._executor

    def prepare(self, kinds: tuple[SamplerKind, ...]) -> None:
        """Start the worker and import what ``kinds`` of samplers need, ahead of the first ask."""
        with self._lock:
            self._idle_since = None
            self._pool().submit(_prepare, kinds)

    def suggestion(self, key: str, request: AskRequest) -> Suggestion | None:
        """The suggestion for ``request`` (``key``: its tuning job), or None while it is made.
        A suggestion is kept until another request comes for its key: asked for ahead of time,
        it is there when the trial is launched.

        Raises:
            Exception: what the ask raised.
        """
        with self._lock:
            self._idle_since = None
            pending = self._pending.get(key)
            usable = pending is not None and _still_holds(pending.request, request)
            if pending is not None and not pending.future.done():
                return None  # this one, or one for an older request: wait for it
            if pending is None or not usable:
                pending = self._pending[key] = self._submit(request)
            elif isinstance(pending.future.exception(), BrokenProcessPool) and not pending.retried:
                log.warning(
                    "The tuning worker process ended (%s); starting another", pending.future.exception()
                )
                self._executor = None
                pending = self._pending[key] = self._submit(request, retried=True)
            return pending.future.result() if pending.future.done() else None

    def _submit(self, request: AskRequest, *, retried: bool = False) -> _Pending:
        try:
            future = self._pool().submit(self._ask, request)
        except BrokenProcessPool:  # it ended since: another one
            self._executor = None
            future = self._pool().submit(self._ask, request)
        pending = _Pending(request, future, retried)
        future.add_done_callback(lambda _: self._on_ready())
        return pending

    def forget(self, key: str) -> None:
        """A tuning job ended: drop what was asked for it."""
        with self._lock:
            self._pending.pop(key, None)

    def idle(self) -> None:
        """No tuning job is active: after ``idle_seconds`` of that, the worker process ends (and
        its memory goes back); the next ask starts another."""
        with self._lock:
            now = time.monotonic()
            if self._idle_since is None:
                self._idle_since = now
            self._pending.clear()  # no tuning job asks any more
            if self._executor is not None and now - self._idle_since >= self._idle_seconds:
                self._executor.shutdown(wait=False)
                self._executor = None

    def close(self) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None
            self._pending.clear()


class _SearchSpace:
    """The search space in Optuna's terms. One definition: its ranges by name. Several: a
    ``definition`` choice, and each definition's ranges as ``<definition>.<name>``."""

    def __init__(self, definitions: tuple[TrainingDefinition, ...]) -> None:
        self._definitions = {d.name: d for d in definitions}
        self._several = len(definitions) > 1

    def _key(self, definition: TrainingDefinition, r: ParameterRange) -> str:
        return f"{definition.name}.{r.name}" if self._several else r.name

    def params(self, trial: Trial) -> dict[str, Any] | None:
        """A trial's values in search terms; None if they are not in this space (a warm-start
        parent's trial outside the ranges, or of a definition this job does not have)."""
        definition = (
            self._definitions.get(trial.definition)
            if self._several
            else next(iter(self._definitions.values()))
        )
        if definition is None or not all(r.name in trial.hyperparameters for r in definition.ranges):
            return None
        params: dict[str, Any] = {"definition": definition.name} if self._several else {}
        for r in definition.ranges:
            value = _parse(r, trial.hyperparameters[r.name])
            if not _within(r, value):
                return None
            params[self._key(definition, r)] = _to_search(r, value)
        return params

    def distributions(self, params: Mapping[str, Any]) -> dict[str, Any]:
        from optuna.distributions import CategoricalDistribution

        found: dict[str, Any] = {}
        if self._several:
            found["definition"] = CategoricalDistribution(list(self._definitions))
        definition = (
            self._definitions[params["definition"]]
            if self._several
            else next(iter(self._definitions.values()))
        )
        for r in definition.ranges:
            found[self._key(definition, r)] = _distribution(r)
        return found

    def ask(self, study: Any) -> tuple[TrainingDefinition, dict[str, Any]]:
        if not self._several:
            [definition] = self._definitions.values()
            asked = study.ask(self.distributions({})).params
            return definition, {
                r.name: _to_search(r, asked[r.name]) for r in definition.ranges
            }  # 1-(1-x) = x
        trial = study.ask()
        definition = self._definitions[trial.suggest_categorical("definition", list(self._definitions))]
        values = {}
        for r in definition.ranges:
            values[r.name] = _to_search(r, _suggest(trial, self._key(definition, r), _distribution(r)))
        return definition, values


def _suggest(trial: Any, name: str, distribution: Any) -> Any:
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(name, distribution.low, distribution.high, log=distribution.log)
    return trial.suggest_float(name, distribution.low, distribution.high, log=distribution.log)


def _distribution(r: ParameterRange) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if r.scaling == "ReverseLogarithmic":  # searched as 1 - x on a log scale: dense near 1
        return FloatDistribution(1 - r.high, 1 - r.low, log=True)
    if r.kind == "Integer":
        return IntDistribution(int(r.low), int(r.high), log=r.log)
    if r.kind == "Continuous":
        return FloatDistribution(r.low, r.high, log=r.log)
    return CategoricalDistribution(list(r.values))


def _to_search(r: ParameterRange, value: Any) -> Any:
    return 1 - value if r.scaling == "ReverseLogarithmic" else value


def _within(r: ParameterRange, value: Any) -> bool:
    return value in r.values if r.kind == "Categorical" else r.low <= value <= r.high


def _parse(r: ParameterRange, text: str) -> Any:
    if r.kind == "Integer":
        return int(text)
    if r.kind == "Continuous":
        return float(text)
    return text
