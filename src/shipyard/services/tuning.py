"""Hyperparameter tuning: a loop of ask → CreateTrainingJob → tell, rebuilt from the store each pass.

The study is never kept: each ask builds an in-memory Optuna study from the tuning job's trials
and their training jobs (completed with an objective, failed, or still running — the running
ones make the sampler spread parallel trials: TPE's constant liar, the Gaussian process's q-batch
expected improvement; ``core.tuning.choose_sampler`` picks the sampler). Asks run off the
scheduler thread, in a worker process (``_tuning_search.AskWorker``): the pass launches a trial
once its suggestion is ready, and the worker wakes the scheduler when it is. Trial names are
deterministic (``<tuning job>-NNN-<hash of the values>``) and the sampler is seeded per trial
number, so a pass interrupted between creating a training job and recording it creates the same
job again, finds it exists, and records it: a restart loses no trial and duplicates none.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Any

from shipyard.core import estimates
from shipyard.core.arn import sagemaker_arn
from shipyard.core.clock import SYSTEM_CLOCK, Clock
from shipyard.core.identity import SHARE_TAG
from shipyard.core.jobs import TrainingJob
from shipyard.core.pagination import Page
from shipyard.core.quotas import Quotas
from shipyard.core.tags import Tag
from shipyard.core.training import SecondaryStatus, TrainingJobStatus, check_metric_regex
from shipyard.core.tuning import (
    SamplerChoice,
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
from shipyard.services._tuning_search import (
    AskRequest,
    AskWorker,
    InlineExecutor,
    Observed,
    Seen,
    _distribution,  # noqa: F401  (tests search the same space)
    _to_search,  # noqa: F401
    ask,
)
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
        asks: AskWorker | None = None,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self.repository = repository
        self._wake = wake  # the scheduler, whose passes run this service's tick
        # Where asks run: the server gives a worker process; by default each is asked at once.
        self._asks = asks or AskWorker(InlineExecutor)
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
        self._parents: dict[str, tuple[Observed, ...]] = {}  # tuning job → its parents' trials
        self._tags: dict[str, list[Tag]] = {}  # tuning job ARN → its tags, which its trials carry

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
        if spec.strategy != Strategy.GRID:  # the worker imports the sampler's packages meanwhile
            self._asks.prepare((self._sampler_choice(job).kind,))
        self._wake()
        return job

    def close(self) -> None:
        """End the ask worker (a server that stops)."""
        self._asks.close()

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
        self._wake()

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
        if not jobs:
            self._asks.idle()
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
                return  # failed, or its suggestion is still being made
            views.append(TrialView(trial, None, None))
        if (
            not step.launch
            and step.finish is None
            and len(views) < job.spec.max_jobs
            and job.spec.strategy != Strategy.GRID
            and any(self._uploading_objective(job, v) is not None for v in running)
        ):
            self._suggest(job, views, len(views))  # ready when the trial that uploads ends
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
            suggested = self._suggest(job, views, number)
            if suggested is None:
                return None
            definition, values = suggested
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
                *({"Key": t.key, "Value": t.value} for t in self._tags_of(job)),
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
        """The next trial's definition and values, asked here and now (``benchmarks/tuning_quality.py``
        searches through this; the pass asks through the worker)."""
        suggestion = ask(self._request(job, views, number))
        return job.spec.definition(suggestion.definition), dict(suggestion.values)

    def _suggest(
        self, job: TuningJob, views: list[TrialView], number: int
    ) -> tuple[TrainingDefinition, dict[str, Any]] | None:
        """The next trial's definition and values from the worker; None while it asks."""
        suggestion = self._asks.suggestion(job.name, self._request(job, views, number))
        if suggestion is None:
            return None
        return job.spec.definition(suggestion.definition), dict(suggestion.values)

    def _request(self, job: TuningJob, views: list[TrialView], number: int) -> AskRequest:
        """What the search knows: the trials with their state, objective and curve (and the
        warm-start parents' completed trials, read once per tuning job)."""
        spec = job.spec
        curves = self._objective_curves(job, views) if spec.early_stopping or spec.hyperband else {}
        trials = []
        for view in views:
            curve = tuple(value for value, _ in curves.get(view.trial.number, []))
            objective = view.objective if view.objective is not None else self._uploading_objective(job, view)
            if objective is not None:
                seen = Seen.COMPLETE
            elif view.status == TrainingJobStatus.STOPPED and curve:
                seen = Seen.PRUNED
            elif view.status.is_terminal:
                seen = Seen.FAIL
            else:
                seen = Seen.RUNNING
            trials.append(Observed(view.trial, seen, objective, curve))
        return AskRequest(spec, self._sampler_choice(job), number, tuple(trials), self._parents_of(job))

    def _uploading_objective(self, job: TuningJob, view: TrialView) -> float | None:
        """A running trial whose script has ended (it uploads its model) already has its
        objective: its last value, which its final metric will be. The next trial is asked for
        with it, so it is ready when this one ends."""
        if view.job is None or view.job.state.secondary != SecondaryStatus.UPLOADING:
            return None
        metric = job.spec.definition(view.trial.definition).objective_metric
        count = view.job.run.metric_steps.get(metric, 0)
        if not count:
            return None
        key = (view.trial.job, count)
        if key not in self._curves:
            points = self._training.metric_series(view.trial.job).get(metric, [])
            self._curves[key] = [(p.value, p.timestamp.timestamp()) for p in points]
        curve = self._curves[key]
        return curve[-1][0] if curve else None

    def _parents_of(self, job: TuningJob) -> tuple[Observed, ...]:
        """The warm-start parents' completed trials (they have ended: read once)."""
        if not job.spec.warm_start_parents:
            return ()
        parents = self._parents.get(job.name)
        if parents is None:
            found = []
            for parent in job.spec.warm_start_parents:
                parent_job = self.repository.get(parent)
                found += [
                    Observed(view.trial, Seen.COMPLETE, view.objective)
                    for view in self.trial_views(parent_job)
                    if view.objective is not None
                ]
            parents = self._parents[job.name] = tuple(found)
        return parents

    def _tags_of(self, job: TuningJob) -> list[Tag]:
        """The tuning job's tags, which each trial carries (read again only after they change)."""
        tags = self._tags.get(job.arn)
        if tags is None:
            tags = self._tags[job.arn] = self._training.tags_of(job.arn)
        return tags

    def tags_changed(self, arn: str) -> None:
        """A resource's tags changed: a tuning job's next trials carry the new ones."""
        self._tags.pop(arn, None)

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
        self._parents.pop(name, None)
        self._asks.forget(name)


def _gp_installed() -> bool:
    """Whether Optuna's GPSampler can run: it needs torch and scipy, which Shipyard does not require."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("torch", "scipy"))
