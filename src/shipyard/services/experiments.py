"""SageMaker Experiments: experiments, trials, trial components (a job's among them), their
associations, metrics (BatchPutMetrics, BatchGetMetrics) and Search.

What is stored is what users create; a job's trial component (``<job>-aws-training-job``) is
built from the job whenever it is read (services/_experiment_jobs.py), and only its
associations with trials are stored. Names are unique per kind without regard to case.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from shipyard.core.arn import sagemaker_arn
from shipyard.core.clock import SYSTEM_CLOCK, Clock
from shipyard.core.experiments import (
    Entity,
    EntityKind,
    EntityNotFound,
    MetricStats,
    SeriesPoint,
    check_expression,
    job_component_name,
    job_of_component,
    job_of_source_arn,
    matches,
    metric_query_result,
    ordered,
)
from shipyard.core.pagination import Page
from shipyard.core.tags import Tag
from shipyard.errors import ValidationError
from shipyard.services._claims import NO_CLAIMS, Claims
from shipyard.services._experiment_jobs import JobComponents, job_answer_member
from shipyard.store.experiments import EXPERIMENT_TRIAL, TRIAL_COMPONENT, ExperimentRepository

EXPERIMENT, TRIAL, COMPONENT = EntityKind.EXPERIMENT, EntityKind.TRIAL, EntityKind.TRIAL_COMPONENT
_TIMES = ("StartTime", "EndTime")
SEARCHABLE = {"Experiment": EXPERIMENT, "ExperimentTrial": TRIAL, "ExperimentTrialComponent": COMPONENT}
_COMPONENT_MEMBERS = (
    "DisplayName",
    "Status",
    "StartTime",
    "EndTime",
    "Parameters",
    "InputArtifacts",
    "OutputArtifacts",
    "MetadataProperties",
)


@dataclasses.dataclass(frozen=True)
class Caller:
    """Who a request acts as: ``arn`` (CreatedBy), ``owner`` (the user who owns what it makes)."""

    region: str
    arn: str | None = None
    owner: str | None = None


class ExperimentService:
    """Experiments, trials and trial components; ``jobs`` builds the jobs' components,
    ``tags_of`` gives a resource's tags (Search answers carry them), ``claims`` records owners."""

    def __init__(
        self,
        repository: ExperimentRepository,
        jobs: JobComponents,
        *,
        account_id: str,
        tags_of: Callable[[str], list[Tag]] = lambda arn: [],
        clock: Clock = SYSTEM_CLOCK,
        claims: Claims = NO_CLAIMS,
    ) -> None:
        self.repository = repository
        self._jobs = jobs
        self._account = account_id
        self._tags_of = tags_of
        self._clock = clock
        self._claims = claims

    # -- shared ---------------------------------------------------------------------------------
    def _arn(self, kind: EntityKind, name: str, region: str) -> str:
        return sagemaker_arn(region, self._account, kind.value, name)

    def _create(
        self,
        kind: EntityKind,
        name: str,
        document: Mapping[str, Any],
        caller: Caller,
        links: Sequence[tuple[str, str, str]] = (),
    ) -> Entity:
        now = self._clock.now()
        entity = Entity(
            kind,
            name,
            self._arn(kind, name, caller.region),
            now,
            now,
            {k: json_safe(v) for k, v in document.items() if v is not None},
            created_by=caller.arn,
        )
        self.repository.create(entity, links=links)
        self._claims.claim_for(entity.arn, caller.owner)
        return entity

    def get(self, kind: EntityKind, name: str, region: str) -> Entity:
        found = self.repository.find_one(kind, name)
        if found is None:
            raise EntityNotFound(kind, self._arn(kind, name, region))
        return found

    def _modify(
        self,
        kind: EntityKind,
        name: str,
        region: str,
        changes: Mapping[str, Any],
        removed: Iterable[tuple[str, str]] = (),
    ) -> Entity:
        def change(entity: Entity) -> Entity:
            document = {k: v for k, v in entity.document.items()}
            for member, value in changes.items():
                if value is None:
                    continue
                if isinstance(value, Mapping) and member in (
                    "Parameters",
                    "InputArtifacts",
                    "OutputArtifacts",
                ):
                    document[member] = {**document.get(member, {}), **json_safe(value)}
                else:
                    document[member] = json_safe(value)
            for member, key in removed:
                document.get(member, {}).pop(key, None)
            return dataclasses.replace(entity, document=document, last_modified=self._clock.now())

        return self.repository.modify(kind, name, self._arn(kind, name, region), change)

    def _delete(self, kind: EntityKind, name: str, region: str, refuse: Any) -> Entity:
        entity = self.repository.delete(kind, name, self._arn(kind, name, region), unless=refuse)
        self._claims.forget(entity.arn)
        return entity

    def _list(
        self, kind: EntityKind, params: Mapping[str, Any], keys: Iterable[str] | None = None
    ) -> tuple[list[Entity], str | None]:
        page = Page.requested(params, default_size=10)
        found = self.repository.find(
            kind,
            keys=None if keys is None else set(keys),
            created_after=params.get("CreatedAfter"),
            created_before=params.get("CreatedBefore"),
            sort_by=params.get("SortBy", "CreationTime"),
            ascending=params.get("SortOrder", "Descending") == "Ascending",
            offset=page.offset,
            limit=page.limit,
        )
        return page.cut(found)

    # -- experiments ----------------------------------------------------------------------------
    def create_experiment(self, params: Mapping[str, Any], caller: Caller) -> Entity:
        document = {k: params.get(k) for k in ("DisplayName", "Description")}
        return self._create(EXPERIMENT, params["ExperimentName"], document, caller)

    def update_experiment(self, params: Mapping[str, Any], region: str) -> Entity:
        changes = {k: params.get(k) for k in ("DisplayName", "Description")}
        return self._modify(EXPERIMENT, params["ExperimentName"], region, changes)

    def delete_experiment(self, name: str, region: str) -> Entity:
        def refuse(links: list[tuple[str, str, str]]) -> None:
            trials = [d for k, _, d in links if k == EXPERIMENT_TRIAL]
            if trials:
                raise ValidationError(
                    f"Experiment '{name}' still has {len(trials)} trial(s) ({', '.join(trials[:5])}): "
                    "delete them first (DeleteTrial)",
                    field="ExperimentName",
                    value=name,
                )

        return self._delete(EXPERIMENT, name, region, refuse)

    def list_experiments(self, params: Mapping[str, Any]) -> tuple[list[Entity], str | None]:
        return self._list(EXPERIMENT, params)

    # -- trials ---------------------------------------------------------------------------------
    def create_trial(self, params: Mapping[str, Any], caller: Caller) -> Entity:
        experiment = self.get(EXPERIMENT, params["ExperimentName"], caller.region)
        document = {
            "DisplayName": params.get("DisplayName"),
            "ExperimentName": experiment.name,
            "MetadataProperties": params.get("MetadataProperties"),
        }
        name = params["TrialName"]
        return self._create(TRIAL, name, document, caller, [(EXPERIMENT_TRIAL, experiment.key, name.lower())])

    def update_trial(self, params: Mapping[str, Any], region: str) -> Entity:
        return self._modify(TRIAL, params["TrialName"], region, {"DisplayName": params.get("DisplayName")})

    def delete_trial(self, name: str, region: str) -> Entity:
        def refuse(links: list[tuple[str, str, str]]) -> None:
            components = [d for k, _, d in links if k == TRIAL_COMPONENT]
            if components:
                raise ValidationError(
                    f"Trial '{name}' still has {len(components)} trial component(s) associated "
                    f"({', '.join(components[:5])}): disassociate them first (DisassociateTrialComponent)",
                    field="TrialName",
                    value=name,
                )

        return self._delete(TRIAL, name, region, refuse)

    def list_trials(self, params: Mapping[str, Any], region: str) -> tuple[list[Entity], str | None]:
        keys: set[str] | None = None
        if params.get("ExperimentName"):
            experiment = self.get(EXPERIMENT, params["ExperimentName"], region)
            keys = set(self.repository.destinations(EXPERIMENT_TRIAL, [experiment.key])[experiment.key])
        if params.get("TrialComponentName"):
            component = self.component(params["TrialComponentName"], region)
            key = component["TrialComponentName"].lower()
            trials = set(self.repository.sources(TRIAL_COMPONENT, [key])[key])
            keys = trials if keys is None else keys & trials
        return self._list(TRIAL, params, keys)

    # -- trial components -----------------------------------------------------------------------
    def create_trial_component(self, params: Mapping[str, Any], caller: Caller) -> Entity:
        name = params["TrialComponentName"]
        if job_of_component(name) is not None:
            raise ValidationError(
                f"TrialComponentName '{name}': names ending in -aws-training-job, -aws-processing-job "
                "or -aws-transform-job are the trial components SageMaker makes for its jobs; choose "
                "another name",
                field="TrialComponentName",
                value=name,
            )
        return self._create(COMPONENT, name, {k: params.get(k) for k in _COMPONENT_MEMBERS}, caller)

    def component(self, name: str, region: str) -> dict[str, Any]:
        """A trial component as DescribeTrialComponent answers it (a job's built from the job)."""
        stored = self.repository.find_one(COMPONENT, name)
        if stored is not None:
            return component_document(stored)
        job = self._jobs.by_name(name)
        if job is None:
            raise EntityNotFound(COMPONENT, self._arn(COMPONENT, name, region))
        return self._job_document(job[1], region)

    def _job_document(self, document: Mapping[str, Any], region: str) -> dict[str, Any]:
        name = document["TrialComponentName"]
        return {
            **document,
            "TrialComponentArn": self._arn(COMPONENT, name, region),
            "CreatedBy": {},
            "LastModifiedBy": {},
        }

    def _job_only(self, name: str, action: str) -> None:
        """Refuse ``action`` on a job's trial component: only its job changes it."""
        found = self._jobs.by_name(name) if self.repository.find_one(COMPONENT, name) is None else None
        if found is not None:
            source, _ = found
            raise ValidationError(
                f"Trial component '{name}' is the {source.source_type.removeprefix('SageMaker')} "
                f"{name[: -len(source.suffix)]!r}'s: SageMaker keeps it from the job, which cannot be "
                f"changed this way ({action})",
                field="TrialComponentName",
                value=name,
            )

    def update_trial_component(self, params: Mapping[str, Any], region: str) -> Entity:
        name = params["TrialComponentName"]
        self._job_only(name, "UpdateTrialComponent")
        removed = [
            (member, key)
            for member in ("Parameters", "InputArtifacts", "OutputArtifacts")
            for key in params.get(f"{member}ToRemove") or ()
        ]
        changes = {k: params.get(k) for k in _COMPONENT_MEMBERS if k != "MetadataProperties"}
        return self._modify(COMPONENT, name, region, changes, removed)

    def delete_trial_component(self, name: str, region: str) -> Entity:
        self._job_only(name, "DeleteTrialComponent")

        def refuse(links: list[tuple[str, str, str]]) -> None:
            trials = [s for k, s, _ in links if k == TRIAL_COMPONENT]
            if trials:
                raise ValidationError(
                    f"Trial component '{name}' is still associated with {len(trials)} trial(s) "
                    f"({', '.join(trials[:5])}): disassociate it first (DisassociateTrialComponent)",
                    field="TrialComponentName",
                    value=name,
                )

        return self._delete(COMPONENT, name, region, refuse)

    def list_trial_components(
        self, params: Mapping[str, Any], region: str
    ) -> tuple[list[dict[str, Any]], str | None]:
        """TrialComponentSummaries' documents, stored and jobs' merged in the order asked."""
        page = Page.requested(params, default_size=10)
        sort_by = "Name" if params.get("SortBy") == "Name" else "CreationTime"
        ascending = params.get("SortOrder", "Descending") == "Ascending"
        keys = self._component_keys(params, region)
        if keys is not None:
            documents = self._components(keys, region)
        else:
            stored = self.repository.find(
                COMPONENT,
                created_after=params.get("CreatedAfter"),
                created_before=params.get("CreatedBefore"),
                sort_by=sort_by,
                ascending=ascending,
                limit=page.offset + page.limit,
            )
            jobs = self._jobs.listed(
                created_after=params.get("CreatedAfter"),
                created_before=params.get("CreatedBefore"),
                sort_by=sort_by,
                ascending=ascending,
                limit=page.offset + page.limit,
            )
            documents = [component_document(e) for e in stored] + [
                self._job_document(d, region) for d in jobs
            ]
        documents = [d for d in documents if _created_within(d, params)]
        member = "TrialComponentName" if sort_by == "Name" else "CreationTime"
        return page.slice(ordered(documents, member, ascending=ascending))

    def _component_keys(self, params: Mapping[str, Any], region: str) -> list[str] | None:
        """The components a ListTrialComponents filter names (None: no filter)."""
        if params.get("SourceArn"):
            job = self._jobs.by_source_arn(params["SourceArn"])
            return [job["TrialComponentName"]] if job else []
        trials: list[str] | None = None
        if params.get("TrialName"):
            trials = [self.get(TRIAL, params["TrialName"], region).key]
        elif params.get("ExperimentName"):
            experiment = self.get(EXPERIMENT, params["ExperimentName"], region)
            trials = self.repository.destinations(EXPERIMENT_TRIAL, [experiment.key])[experiment.key]
        if trials is None:
            return None
        linked = self.repository.destinations(TRIAL_COMPONENT, trials)
        return list(dict.fromkeys(c for t in trials for c in linked[t]))

    def _components(self, names: Sequence[str], region: str) -> list[dict[str, Any]]:
        stored = self.repository.get_many(COMPONENT, names)
        found = []
        for name in names:
            if name.lower() in stored:
                found.append(component_document(stored[name.lower()]))
                continue
            job = self._jobs.by_name(name)
            if job is not None:
                found.append(self._job_document(job[1], region))
        return found

    # -- associations ---------------------------------------------------------------------------
    def associate(self, component_name: str, trial_name: str, region: str) -> tuple[str, str]:
        component = self.component(component_name, region)
        trial = self.get(TRIAL, trial_name, region)
        self.repository.link(TRIAL_COMPONENT, trial.key, component_name.lower(), self._clock.now())
        return component["TrialComponentArn"], trial.arn

    def disassociate(self, component_name: str, trial_name: str, region: str) -> tuple[str, str]:
        component = self.component(component_name, region)
        trial = self.get(TRIAL, trial_name, region)
        if not self.repository.unlink(TRIAL_COMPONENT, trial.key, component_name.lower()):
            raise ValidationError(
                f"Trial component '{component_name}' is not associated with trial '{trial_name}'",
                field="TrialComponentName",
                value=component_name,
            )
        return component["TrialComponentArn"], trial.arn

    # -- jobs' experiment configs ---------------------------------------------------------------
    def check_job_config(self, config: Mapping[str, Any], region: str) -> None:
        """Refuse a job's ExperimentConfig naming what does not exist, before the job is made."""
        experiment = config.get("ExperimentName")
        if experiment:
            self.get(EXPERIMENT, experiment, region)
        if config.get("TrialName"):
            trial = self.get(TRIAL, config["TrialName"], region)
            if experiment and trial.document.get("ExperimentName", "").lower() != experiment.lower():
                raise ValidationError(
                    f"ExperimentConfig.TrialName '{config['TrialName']}' is a trial of experiment "
                    f"'{trial.document.get('ExperimentName')}', not of '{experiment}'",
                    field="ExperimentConfig.TrialName",
                    value=config["TrialName"],
                )
        if config.get("RunName"):
            self.component(config["RunName"], region)

    def attach_job(self, kind: str, job_name: str, config: Mapping[str, Any], caller: Caller) -> None:
        """Associate a new job's trial component as its ExperimentConfig says: with TrialName, or
        with a new trial of ExperimentName named after the job."""
        component = job_component_name(kind, job_name).lower()
        trial_name = config.get("TrialName")
        if not trial_name and config.get("ExperimentName"):
            trial_name = job_component_name(kind, job_name)
            self.create_trial({"TrialName": trial_name, "ExperimentName": config["ExperimentName"]}, caller)
        if trial_name:
            self.repository.link(TRIAL_COMPONENT, trial_name.lower(), component, self._clock.now())

    # -- metrics --------------------------------------------------------------------------------
    def put_metrics(
        self, component_name: str, data: Sequence[Mapping[str, Any]], region: str
    ) -> list[dict[str, Any]]:
        """BatchPutMetrics: each datum added to its metric's summary; the answer's Errors."""
        self._job_only(component_name, "BatchPutMetrics")
        errors: list[dict[str, Any]] = []
        points = []
        for index, datum in enumerate(data):
            value = datum.get("Value")
            if not isinstance(value, int | float) or value != value or value in (float("inf"), float("-inf")):
                errors.append({"Code": "VALIDATION_ERROR", "MetricIndex": index})
                continue
            at = datum.get("Timestamp") or self._clock.now()
            points.append((datum["MetricName"], SeriesPoint(float(value), at, datum.get("Step"))))

        def change(entity: Entity) -> Entity:
            metrics = dict(entity.metrics)
            for name, point in points:
                current = metrics.get(name)
                at = point.timestamp
                stats = (
                    MetricStats.from_json(current).add(point.value, at)
                    if current
                    else MetricStats.of(point.value, at)
                )
                metrics[name] = stats.to_json()
            return dataclasses.replace(entity, metrics=metrics, last_modified=self._clock.now())

        if points:
            self.repository.modify(
                COMPONENT, component_name, self._arn(COMPONENT, component_name, region), change, points=points
            )
        return errors

    def get_metrics(self, queries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """BatchGetMetrics: each MetricQuery answered over its resource's series (a trial
        component's, stored or a job's, or a job's by its ARN), in the order asked."""
        found: dict[str, Mapping[str, Sequence[SeriesPoint]] | None] = {}
        results = []
        for query in queries:
            arn = query["ResourceArn"]
            if arn.lower() not in found:
                found[arn.lower()] = self._series(arn)
            series = found[arn.lower()]
            if series is None:
                results.append(
                    {
                        "Status": "ValidationError",
                        "Message": f"ResourceArn '{arn}': no trial component or training job has this ARN",
                        "XAxisValues": [],
                        "MetricValues": [],
                    }
                )
                continue
            results.append(metric_query_result(series, query))
        return results

    def _series(self, arn: str) -> Mapping[str, Sequence[SeriesPoint]] | None:
        job = job_of_source_arn(arn)
        if job is not None:
            return self._jobs.series(job_component_name(job[0].kind, job[1]))
        resource = arn.split(":", 5)[-1] if arn.count(":") >= 5 else ""
        kind, _, name = resource.partition("/")
        if kind != COMPONENT.value or not name:
            return None
        if self.repository.find_one(COMPONENT, name) is not None:
            return self.repository.metric_series(name)
        return self._jobs.series(name)

    # -- search ---------------------------------------------------------------------------------
    def search(self, params: Mapping[str, Any], region: str) -> tuple[list[dict[str, Any]], str | None]:
        """Search's records (``{"TrialComponent": ...}``) for the experiment resources."""
        resource = params["Resource"]
        kind = SEARCHABLE.get(resource)
        if kind is None:
            raise ValidationError(
                f"Search of Resource '{resource}' is not served by Shipyard; it searches "
                f"{', '.join(SEARCHABLE)}",
                field="Resource",
                value=resource,
            )
        expression = params.get("SearchExpression") or {}
        check_expression(expression)
        records = [r for r in self._search_candidates(kind, expression, region) if matches(expression, r)]
        records = ordered(
            records,
            params.get("SortBy") or "LastModifiedTime",
            ascending=params.get("SortOrder") == "Ascending",
        )
        page = Page.requested(params, default_size=10)
        found, token = page.slice(records)
        member = {EXPERIMENT: "Experiment", TRIAL: "Trial", COMPONENT: "TrialComponent"}[kind]
        return [{member: r} for r in found], token

    def _search_candidates(
        self, kind: EntityKind, expression: Mapping[str, Any], region: str
    ) -> list[dict[str, Any]]:
        if kind is COMPONENT:
            return [self._component_record(d, region) for d in self._candidate_components(expression, region)]
        entities = self._all(kind)
        if kind is EXPERIMENT:
            return [{**entity_document(e), "Tags": self._tags(e.arn)} for e in entities]
        linked = self.repository.destinations(TRIAL_COMPONENT, [e.key for e in entities])
        records = []
        for trial in entities:
            components = self._components(linked[trial.key], region)
            summaries = [
                {
                    k: c.get(k)
                    for k in ("TrialComponentName", "TrialComponentArn", "CreationTime", "CreatedBy")
                }
                | {"TrialComponentSource": c.get("Source")}
                for c in components
            ]
            records.append(
                {
                    **entity_document(trial),
                    "Tags": self._tags(trial.arn),
                    "TrialComponentSummaries": summaries,
                }
            )
        return records

    def _all(self, kind: EntityKind) -> list[Entity]:
        found: list[Entity] = []
        while True:
            batch = self.repository.find(kind, ascending=True, offset=len(found), limit=500)
            found += batch
            if len(batch) < 500:
                return found

    def _candidate_components(self, expression: Mapping[str, Any], region: str) -> list[dict[str, Any]]:
        """The components an And of the expression's top-level filters narrows to (the Parents
        and the name the sagemaker SDK filters on), else every component, jobs' too."""
        narrowed: list[str] | None = None
        if expression.get("Operator") != "Or":
            for item in expression.get("Filters") or ():
                if (item.get("Operator") or "Equals") != "Equals" or item.get("Value") is None:
                    continue
                keys = self._named_components(item["Name"], item["Value"], region)
                if keys is not None:
                    narrowed = keys if narrowed is None else [k for k in narrowed if k in set(keys)]
        if narrowed is not None:
            return self._components(narrowed, region)
        stored = [component_document(e) for e in self._all(COMPONENT)]
        jobs = self._jobs.listed(
            created_after=None, created_before=None, sort_by="CreationTime", ascending=True, limit=100_000
        )
        return stored + [self._job_document(d, region) for d in jobs]

    def _named_components(self, name: str, value: str, region: str) -> list[str] | None:
        if name == "TrialComponentName":
            return [value.lower()]
        if name == "Parents.TrialName":
            return self.repository.destinations(TRIAL_COMPONENT, [value])[value.lower()]
        if name == "Parents.ExperimentName":
            trials = self.repository.destinations(EXPERIMENT_TRIAL, [value])[value.lower()]
            linked = self.repository.destinations(TRIAL_COMPONENT, trials)
            return list(dict.fromkeys(c for t in trials for c in linked[t]))
        return None

    def _component_record(self, document: Mapping[str, Any], region: str) -> dict[str, Any]:
        key = document["TrialComponentName"].lower()
        trials = self.repository.get_many(TRIAL, self.repository.sources(TRIAL_COMPONENT, [key])[key])
        record = {
            **document,
            "Parents": [
                {"TrialName": t.name, "ExperimentName": t.document.get("ExperimentName")}
                for t in trials.values()
            ],
            "Tags": self._tags(document["TrialComponentArn"]),
        }
        source = document.get("Source") or {}
        job = job_of_component(document["TrialComponentName"]) if source else None
        if job is not None:
            answer = self._jobs.answer(job[0].kind, job[1])
            if answer is not None:
                record["SourceDetail"] = {
                    "SourceArn": source.get("SourceArn"),
                    job_answer_member(job[0].kind): answer,
                }
        return record

    def _tags(self, arn: str) -> list[dict[str, str]]:
        return [t.to_wire() for t in self._tags_of(arn)]


def entity_document(entity: Entity) -> dict[str, Any]:
    """An experiment's or trial's Describe answer."""
    member = entity.kind.name_member
    created_by = {"IamIdentity": {"Arn": entity.created_by}} if entity.created_by else {}
    return {
        member: entity.name,
        member.replace("Name", "Arn"): entity.arn,
        "DisplayName": entity.name,
        **entity.document,
        "CreationTime": entity.created,
        "CreatedBy": created_by,
        "LastModifiedTime": entity.last_modified,
        "LastModifiedBy": created_by,
    }


def component_document(entity: Entity) -> dict[str, Any]:
    """A stored trial component's DescribeTrialComponent answer."""
    document = entity_document(entity)
    for member in _TIMES:
        if isinstance(document.get(member), str):
            document[member] = dt.datetime.fromisoformat(document[member])
    document["Metrics"] = [
        MetricStats.from_json(stats).summary(name, entity.arn)
        for name, stats in sorted(entity.metrics.items())
    ]
    return document


def _created_within(document: Mapping[str, Any], params: Mapping[str, Any]) -> bool:
    created = document["CreationTime"]
    after, before = params.get("CreatedAfter"), params.get("CreatedBefore")
    return (after is None or created > after) and (before is None or created < before)


def json_safe(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
