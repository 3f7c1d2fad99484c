"""Hyperparameter tuning: a loop of ask → CreateTrainingJob → tell, rebuilt from the store each pass.

The study is never kept: each pass builds an in-memory Optuna study from the tuning job's trials
and their training jobs (completed with an objective, failed, or still running — the running
ones make the sampler spread parallel trials: TPE's constant liar, the Gaussian process's q-batch
expected improvement; ``core.tuning.choose_sampler`` picks the sampler). Trial names are deterministic
(``<tuning job>-NNN-<hash of the values>``) and the sampler is seeded per trial number, so a pass
interrupted between creating a training job and recording it creates the same job again, finds it
exists, and records it: a restart loses no trial and duplicates none.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from shipyard.core import estimates
from shipyard.core.arn import sagemaker_arn
from shipyard.core.clock import SYSTEM_CLOCK, Clock
from shipyard.core.identity import SHARE_TAG
from shipyard.core.jobs import TrainingJob
from shipyard.core.pagination import Page
from shipyard.core.quotas import Quotas
from shipyard.core.tags import Tag
from shipyard.core.training import TrainingJobStatus, check_metric_regex
from shipyard.core.tuning import (
    ParameterRange,
    SamplerChoice,
    SamplerKind,
    Strategy,
    TrainingDefinition,
    Trial,
    TuningJob,
    TuningJobSpec,
    TuningJobStatus,
    choose_sampler,
    objective_value,
    plan_pass,
    should_stop_early,
)
from shipyard.errors import ConflictError, ShipyardError, ValidationError
from shipyard.services._claims import NO_CLAIMS, Claims
from shipyard.services._guard import LaunchGuard, no_guard, request_tags
from shipyard.services.jobs import TrainingService
from shipyard.store import TuningJobRepository

log = logging.getLogger(__name__)
TUNING_TAG = "shipyard:tuning-job"


@dataclasses.dataclass(frozen=True)
class TrialView:
    """A trial with its training job, as DescribeHyperParameterTuningJob and the list call show it."""

    trial: Trial
    job: TrainingJob | None
    objective: float | None

    @property
    def status(self) -> TrainingJobStatus:
        return self.job.state.status if self.job else TrainingJobStatus.IN_PROGRESS


class TuningService:
    def __init__(
        self,
        repository: TuningJobRepository,
        training: TrainingService,
        *,
        account_id: str,
        clock: Clock = SYSTEM_CLOCK,
        guard: LaunchGuard = no_guard,
        quotas: Quotas = Quotas(),
        claims: Claims = NO_CLAIMS,
    ) -> None:
        self.repository = repository
        self._claims = claims  # who owns each tuning job (its trials: its owner too)
        self._clock = clock
        self._guard = guard  # the budgets, asked once per tuning job (not per trial)
        self._quotas = quotas  # checked once per tuning job: its trials are not refused for them
        self._training = training
        self._account_id = account_id
        self._settled: dict[str, dict[str, TrainingJob]] = {}  # tuning job → its ended trials
        self._samplers: dict[str, SamplerChoice] = {}  # tuning job → its sampler, once logged
        self._curves: dict[
            tuple[str, int], list[tuple[float, float]]
        ] = {}  # (training job, points) → objective curve

    # -- API operations -------------------------------------------------------------------------
    def create(self, params: Mapping[str, Any], *, region: str, owner: str | None = None) -> TuningJob:
        name = str(params.get("HyperParameterTuningJobName", ""))
        with self._guard("tuning job", name, estimates.tuning, params, request_tags(params), owner=owner):
            return self._create(params, region=region, owner=owner)

    def _create(self, params: Mapping[str, Any], *, region: str, owner: str | None) -> TuningJob:
        spec = TuningJobSpec.from_request(params)
        self._quotas.check_tuning(
            spec.max_jobs,
            spec.max_parallel,
            (int(d.resource_config.get("InstanceCount", 1)) for d in spec.definitions),
        )
        for definition in spec.definitions:  # a trial larger than a quota of its owner's never runs
            resources = definition.resource_config
            self._training.check_owner_quota(
                owner, str(resources.get("InstanceType", "")), int(resources.get("InstanceCount", 1))
            )
        for definition in spec.definitions:
            algorithm = definition.training.get("AlgorithmSpecification", {})
            for index, m in enumerate(algorithm.get("MetricDefinitions", [])):
                check_metric_regex(
                    m["Name"], m["Regex"], f"AlgorithmSpecification.MetricDefinitions.{index}.Regex"
                )
            metrics = {m["Name"] for m in algorithm.get("MetricDefinitions", [])}
            metric = definition.objective_metric
            if metric not in metrics and not metric.startswith(("train:", "validation:")):
                raise ValidationError(
                    f"The objective metric {metric!r} is not among the MetricDefinitions of training job "
                    f"definition {definition.name or ''}".rstrip()
                    + f" ({', '.join(sorted(metrics)) or 'none'})",
                    field="HyperParameterTuningJobConfig.HyperParameterTuningJobObjective.MetricName"
                    if definition.name is None
                    else "TrainingJobDefinitions.TuningObjective.MetricName",
                    value=metric,
                )
        for parent in spec.warm_start_parents:
            parent_job = self.repository.get(parent)
            if not parent_job.status.is_terminal:
                raise ValidationError(
                    f"Warm start parent {parent!r} is {parent_job.status.value}; a parent must have finished",
                    field="WarmStartConfig.ParentHyperParameterTuningJobs",
                    value=parent,
                )
        now = self._clock.now()
        job = TuningJob(
            spec,
            sagemaker_arn(region, self._account_id, "hyper-parameter-tuning-job", spec.name),
            now,
            TuningJobStatus.IN_PROGRESS,
            last_modified=now,
            owner=owner,
        )
        tags = [Tag.from_wire(t) for t in params.get("Tags") or ()]
        if tags:  # before the job exists: its first trial gets them too
            self.repository.ensure_absent(spec.name)
            self._training.add_tags(job.arn, tags)
        self.repository.create(job)
        self._claims.claim_for(job.arn, owner)
        shared = [t for t in tags if t.key == SHARE_TAG]
        if shared:  # shared again: the claim recorded the owner alone
            self._training.add_tags(job.arn, shared)
        return job

    def describe(self, name: str) -> tuple[TuningJob, list[TrialView]]:
        job = self.repository.get(name)
        return job, self.trial_views(job)

    def parallel_note(self, job: TuningJob) -> str | None:
        """Why fewer than MaxParallelTrainingJobs trials run at once here (the first definition
        that says so), or None when that many fit."""
        for definition in job.spec.definitions:
            resources = definition.resource_config
            note = self._training.parallel_note(
                str(resources.get("InstanceType", "")),
                int(resources.get("InstanceCount", 1)),
                job.spec.max_parallel,
            )
            if note is not None:
                return note
        return None

    def list_jobs(
        self,
        *,
        name_contains: str | None,
        status: str | None,
        sort_by: str,
        ascending: bool,
        max_results: int,
        next_token: str | None,
    ) -> tuple[list[TuningJob], str | None]:
        page = Page.at(next_token, max_results)
        jobs = self.repository.find(
            name_contains=name_contains,
            status=status,
            sort_by=sort_by,
            ascending=ascending,
            offset=page.offset,
            limit=page.limit,
        )
        return page.cut(jobs)

    def stop(self, name: str) -> None:
        def change(job: TuningJob) -> TuningJob:
            if job.status.is_terminal:
                raise ValidationError(
                    f"The tuning job {name!r} is {job.status.value} and cannot be stopped",
                    field="HyperParameterTuningJobName",
                    value=name,
                )
            return dataclasses.replace(job, status=TuningJobStatus.STOPPING, last_modified=self._clock.now())

        self.repository.modify(name, change)

    def trial_views(self, job: TuningJob) -> list[TrialView]:
        views = []
        # A trial that ended does not change again: read from the store only those still going
        # (a long tuning job would otherwise read every trial on every pass).
        active = job.status in (TuningJobStatus.IN_PROGRESS, TuningJobStatus.STOPPING)
        settled = self._settled.setdefault(job.name, {}) if active else {}
        jobs = {**settled, **self._training.describe_many(t.job for t in job.trials if t.job not in settled)}
        settled.update((name, j) for name, j in jobs.items() if j.state.status.is_terminal)
        for trial in job.trials:
            training = jobs.get(trial.job)
            value = None
            if training is not None and training.state.status == TrainingJobStatus.COMPLETED:
                metric = job.spec.definition(trial.definition).objective_metric
                value = objective_value(training.run.final_metrics, metric)
            views.append(TrialView(trial, training, value))
        return views

    def best(self, job: TuningJob, views: list[TrialView]) -> TrialView | None:
        best: TrialView | None = None
        for view in views:
            if view.objective is not None and job.spec.is_better(
                view.objective, best.objective if best else None
            ):
                best = view
        return best

    # -- the search (one pass) ------------------------------------------------------------------
    def tick(self) -> bool:
        jobs = self.repository.active()
        for job in jobs:
            try:
                self._advance(job)
            except Exception as exc:
                log.exception("Tuning job %s: pass failed", job.name)
                self._finish(job.name, TuningJobStatus.FAILED, f"InternalServerError: {exc}")
        return bool(jobs)

    def _advance(self, job: TuningJob) -> None:
        views = self.trial_views(job)
        running = [v for v in views if not v.status.is_terminal]
        if job.status == TuningJobStatus.IN_PROGRESS and (job.spec.early_stopping or job.spec.hyperband):
            self._stop_early(job, views, running)  # they count as running until they have stopped
        best = self.best(job, views)
        step = plan_pass(
            job.spec,
            stopping=job.status == TuningJobStatus.STOPPING,
            elapsed_seconds=(self._clock.now() - job.created).total_seconds(),
            best=best.objective if best else None,
            launched=len(views),
            running=len(running),
            completed=sum(v.status == TrainingJobStatus.COMPLETED for v in views),
        )
        if step.stop_trials:
            for view in running:
                if view.status == TrainingJobStatus.IN_PROGRESS:
                    self._training.stop(view.trial.job)
        for _ in range(step.launch):
            trial = self._launch(job, views)
            if trial is None:
                return
            views.append(TrialView(trial, None, None))
        if step.finish is not None:
            self._finish(job.name, step.finish, step.failure_reason, step.completion)

    def _stop_early(self, job: TuningJob, views: list[TrialView], running: list[TrialView]) -> None:
        """Stop running trials that early stopping (Auto: worse than the median) or Hyperband (not
        promoted at a rung) gives up on."""
        curves = self._objective_curves(job, views)
        for view in running:
            if view.status != TrainingJobStatus.IN_PROGRESS:
                continue
            number = view.trial.number
            curve = curves.get(number, [])
            if job.spec.hyperband is not None:
                stop = job.spec.hyperband.should_stop(number, curves, maximize=job.spec.maximize)
            else:
                others = [[v for v, _ in c] for n, c in curves.items() if n != number]
                stop = should_stop_early([v for v, _ in curve], others, maximize=job.spec.maximize)
            if stop:
                log.info("Tuning job %s: stopping %s early at step %d", job.name, view.trial.job, len(curve))
                self._training.stop(view.trial.job)

    def _objective_curves(
        self, job: TuningJob, views: list[TrialView]
    ) -> dict[int, list[tuple[float, float]]]:
        """Each trial's objective values so far with their times (epoch seconds), by trial number."""
        curves = {}
        for view in views:
            metric = job.spec.definition(view.trial.definition).objective_metric
            count = view.job.run.metric_steps.get(metric, 0) if view.job else 0
            if not count:
                continue
            key = (view.trial.job, count)  # a curve changes only when it gains points
            if key not in self._curves:
                points = self._training.metric_series(view.trial.job).get(metric, [])
                self._curves[key] = [(p.value, p.timestamp.timestamp()) for p in points]
            curves[view.trial.number] = self._curves[key]
        return curves

    def _launch(self, job: TuningJob, views: list[TrialView]) -> Trial | None:
        spec = job.spec
        number = len(views)
        if spec.strategy == Strategy.GRID:
            definition, values = spec.grid_point(number)
        else:
            definition, values = self._ask(job, views, number)
        tuned = {r.name: r.format(values[r.name]) for r in definition.ranges}
        trial = Trial(number, spec.trial_name(number, tuned), tuned, definition.name)
        training = definition.training
        params: dict[str, Any] = {
            "TrainingJobName": trial.job,
            "AlgorithmSpecification": {
                k: v
                for k, v in training["AlgorithmSpecification"].items()
                if k in ("TrainingImage", "TrainingInputMode", "MetricDefinitions", "AlgorithmName")
            },
            "RoleArn": training["RoleArn"],
            "OutputDataConfig": training["OutputDataConfig"],
            "ResourceConfig": dict(definition.resource_config),
            "StoppingCondition": training["StoppingCondition"],
            "HyperParameters": {**definition.trial_static_hyperparameters, **tuned},
            # As SageMaker does, a trial carries the tuning job's tags (its costs go with them).
            "Tags": [
                *({"Key": t.key, "Value": t.value} for t in self._training.tags_of(job.arn)),
                {"Key": TUNING_TAG, "Value": spec.name},
            ],
        }
        for optional in (
            "InputDataConfig",
            "Environment",
            "CheckpointConfig",
            "RetryStrategy",
            "VpcConfig",
            "EnableNetworkIsolation",
        ):
            if optional in training:
                params[optional] = training[optional]
        region = job.arn.split(":")[3]
        try:
            self._training.create(params, region=region, tuning_job=(spec.name, job.arn), owner=job.owner)
        except ConflictError:
            pass  # created by a pass that stopped before recording it: adopt it
        except ShipyardError as exc:
            self._finish(
                spec.name,
                TuningJobStatus.FAILED,
                f"ClientError: a training job could not be created: {exc.message}",
            )
            return None
        self.repository.modify(
            spec.name,
            lambda j: dataclasses.replace(j, trials=(*j.trials, trial), last_modified=self._clock.now()),
        )
        return trial

    def _ask(
        self, job: TuningJob, views: list[TrialView], number: int
    ) -> tuple[TrainingDefinition, dict[str, Any]]:
        """The next trial's definition and values: the Optuna study rebuilt from the trials so far
        (and the warm-start parents'), then one ask."""
        import warnings

        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        spec = job.spec
        space = _SearchSpace(spec.definitions)
        # One seed per (RandomSeed, trial): different RandomSeeds must not share shifted sequences.
        seed = (spec.random_seed * 1_000_003 + number) % 2**32
        choice = self._sampler_choice(job)
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
        study = optuna.create_study(direction="maximize" if spec.maximize else "minimize", sampler=sampler)
        for parent in spec.warm_start_parents:  # warm start: what the parents learnt, where it still applies
            parent_job = self.repository.get(parent)
            for view in self.trial_views(parent_job):
                params = space.params(view.trial) if view.objective is not None else None
                if params is not None:
                    study.add_trial(
                        optuna.trial.create_trial(
                            value=view.objective, params=params, distributions=space.distributions(params)
                        )
                    )
        curves = self._objective_curves(job, views) if spec.early_stopping or spec.hyperband else {}
        for view in views:
            params = space.params(view.trial)
            if params is None:
                continue
            intermediate = {
                step + 1: value for step, (value, _) in enumerate(curves.get(view.trial.number, []))
            }
            if view.objective is not None:
                state, value = optuna.trial.TrialState.COMPLETE, view.objective
            elif view.status == TrainingJobStatus.STOPPED and intermediate:
                state, value = optuna.trial.TrialState.PRUNED, None  # stopped early: judged by its curve
            elif view.status.is_terminal:
                state, value = optuna.trial.TrialState.FAIL, None
            else:
                state, value = optuna.trial.TrialState.RUNNING, None
            study.add_trial(
                optuna.trial.create_trial(
                    state=state,
                    value=value,
                    params=params,
                    distributions=space.distributions(params),
                    intermediate_values=intermediate,
                )
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return space.ask(study)

    def _sampler_choice(self, job: TuningJob) -> SamplerChoice:
        """The job's sampler (``core.tuning.choose_sampler``), said once in the log."""
        choice = self._samplers.get(job.name)
        if choice is None:
            choice = self._samplers[job.name] = choose_sampler(job.spec, gp_available=_gp_installed())
            fell_back = choice.kind != choose_sampler(job.spec).kind
            level = logging.WARNING if fell_back else logging.INFO
            log.log(level, "Tuning job %s searches with %s", job.name, choice.describe())
        return choice

    def _finish(
        self, name: str, status: TuningJobStatus, reason: str | None, completion: str | None = None
    ) -> None:
        now = self._clock.now()
        self.repository.modify(
            name,
            lambda j: dataclasses.replace(
                j,
                status=status,
                failure_reason=reason,
                end_time=now,
                last_modified=now,
                completion=completion,
            ),
        )
        self._settled.pop(name, None)
        self._samplers.pop(name, None)


def _gp_installed() -> bool:
    """Whether Optuna's GPSampler can run: it needs torch and scipy, which Shipyard does not require."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("torch", "scipy"))


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
