"""SageMaker Experiments: experiments, trials, trial components and their associations, Search
of them, and jobs' ExperimentConfig (:func:`experiment_linked`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from shipyard.api._context import RequestContext
from shipyard.api._json import Operation
from shipyard.core.experiments import Entity, EntityKind, ownership_arn
from shipyard.core.tags import Tag
from shipyard.services.experiments import Caller, component_document, entity_document

T = TypeVar("T")
_SUMMARY = {
    EntityKind.EXPERIMENT: (
        "ExperimentArn",
        "ExperimentName",
        "DisplayName",
        "CreationTime",
        "LastModifiedTime",
    ),
    EntityKind.TRIAL: ("TrialArn", "TrialName", "DisplayName", "CreationTime", "LastModifiedTime"),
}
_COMPONENT_SUMMARY = (
    "TrialComponentName",
    "TrialComponentArn",
    "DisplayName",
    "Status",
    "StartTime",
    "EndTime",
    "CreationTime",
    "CreatedBy",
    "LastModifiedTime",
    "LastModifiedBy",
)


def _caller(ctx: RequestContext) -> Caller:
    return Caller(ctx.region, ctx.caller.arn, ctx.owner)


def _tag(ctx: RequestContext, entity: Entity, params: dict[str, Any]) -> None:
    if params.get("Tags"):
        ctx.platform.tagging.add_tags(entity.arn, [Tag.from_wire(t) for t in params["Tags"]])


def _visible(ctx: RequestContext, items: Sequence[T], arn_of: Callable[[T], str], action: str) -> list[T]:
    """What the caller may see: reached (a job's trial component through its job) and ``action``
    allowed on the item's own ARN."""
    caller = ctx.caller
    if caller.is_administrator or not items:
        return list(items)
    arns = [arn_of(item) for item in items]
    reach = ctx.platform.identity.reachable(caller, [ownership_arn(a) for a in arns])
    return [
        item
        for item, arn in zip(items, arns, strict=True)
        if reach[ownership_arn(arn)] and caller.decide(action, arn).allowed
    ]


# -- experiments ----------------------------------------------------------------------------------
def create_experiment(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    experiment = ctx.platform.experiments.create_experiment(params, _caller(ctx))
    _tag(ctx, experiment, params)
    return {"ExperimentArn": experiment.arn}


def describe_experiment(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    experiments = ctx.platform.experiments
    return entity_document(experiments.get(EntityKind.EXPERIMENT, params["ExperimentName"], ctx.region))


def list_experiments(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    found, token = ctx.platform.experiments.list_experiments(params)
    found = _visible(ctx, found, lambda e: e.arn, "sagemaker:DescribeExperiment")
    return {"ExperimentSummaries": [_summary(e) for e in found], "NextToken": token}


def update_experiment(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return {"ExperimentArn": ctx.platform.experiments.update_experiment(params, ctx.region).arn}


def delete_experiment(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    experiment = ctx.platform.experiments.delete_experiment(params["ExperimentName"], ctx.region)
    ctx.platform.tagging.clear(experiment.arn)
    return {"ExperimentArn": experiment.arn}


def _summary(entity: Entity) -> dict[str, Any]:
    document = entity_document(entity)
    return {k: document.get(k) for k in _SUMMARY[entity.kind]}


# -- trials ---------------------------------------------------------------------------------------
def create_trial(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    trial = ctx.platform.experiments.create_trial(params, _caller(ctx))
    _tag(ctx, trial, params)
    return {"TrialArn": trial.arn}


def describe_trial(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return entity_document(ctx.platform.experiments.get(EntityKind.TRIAL, params["TrialName"], ctx.region))


def list_trials(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    found, token = ctx.platform.experiments.list_trials(params, ctx.region)
    found = _visible(ctx, found, lambda e: e.arn, "sagemaker:DescribeTrial")
    return {"TrialSummaries": [_summary(e) for e in found], "NextToken": token}


def update_trial(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return {"TrialArn": ctx.platform.experiments.update_trial(params, ctx.region).arn}


def delete_trial(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    trial = ctx.platform.experiments.delete_trial(params["TrialName"], ctx.region)
    ctx.platform.tagging.clear(trial.arn)
    return {"TrialArn": trial.arn}


# -- trial components -----------------------------------------------------------------------------
def create_trial_component(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    component = ctx.platform.experiments.create_trial_component(params, _caller(ctx))
    _tag(ctx, component, params)
    return {"TrialComponentArn": component.arn}


def describe_trial_component(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return ctx.platform.experiments.component(params["TrialComponentName"], ctx.region)


def update_trial_component(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return {"TrialComponentArn": ctx.platform.experiments.update_trial_component(params, ctx.region).arn}


def list_trial_components(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    found, token = ctx.platform.experiments.list_trial_components(params, ctx.region)
    found = _visible(ctx, found, lambda d: d["TrialComponentArn"], "sagemaker:DescribeTrialComponent")
    summaries = [
        {**{k: d.get(k) for k in _COMPONENT_SUMMARY}, "TrialComponentSource": d.get("Source")} for d in found
    ]
    return {"TrialComponentSummaries": summaries, "NextToken": token}


def delete_trial_component(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    component = ctx.platform.experiments.delete_trial_component(params["TrialComponentName"], ctx.region)
    ctx.platform.tagging.clear(component.arn)
    return {"TrialComponentArn": component.arn}


def associate_trial_component(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    component, trial = ctx.platform.experiments.associate(
        params["TrialComponentName"], params["TrialName"], ctx.region
    )
    return {"TrialComponentArn": component, "TrialArn": trial}


def disassociate_trial_component(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    component, trial = ctx.platform.experiments.disassociate(
        params["TrialComponentName"], params["TrialName"], ctx.region
    )
    return {"TrialComponentArn": component, "TrialArn": trial}


# -- search ---------------------------------------------------------------------------------------
_SEARCH_ACTIONS = {
    "Experiment": ("ExperimentArn", "sagemaker:DescribeExperiment"),
    "Trial": ("TrialArn", "sagemaker:DescribeTrial"),
    "TrialComponent": ("TrialComponentArn", "sagemaker:DescribeTrialComponent"),
}


def search(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    """Search: the experiment resources only (others are refused naming the resource). A page
    leaves out what the caller may not see, so it may be shorter than asked."""
    records, token = ctx.platform.experiments.search(params, ctx.region)

    def arn_of(record: dict[str, Any]) -> str:
        member = next(iter(record))
        return str(record[member][_SEARCH_ACTIONS[member][0]])

    if records:
        action = _SEARCH_ACTIONS[next(iter(records[0]))][1]
        records = _visible(ctx, records, arn_of, action)
    return {"Results": records, "NextToken": token}


# -- jobs' ExperimentConfig -----------------------------------------------------------------------
_JOB_NAMES = {
    "training": "TrainingJobName",
    "processing": "ProcessingJobName",
    "transform": "TransformJobName",
}


def experiment_linked(operation: Operation, kind: str) -> Operation:
    """``operation`` (a Create<Kind>Job) with its ExperimentConfig checked before the job is made
    (what it names must exist) and the job's trial component associated once it is."""

    def linked(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        config = params.get("ExperimentConfig")
        if not config:
            return operation(ctx, params)
        experiments = ctx.platform.experiments
        experiments.check_job_config(config, ctx.region)
        answer = operation(ctx, params)
        experiments.attach_job(kind, params[_JOB_NAMES[kind]], config, _caller(ctx))
        return answer

    linked.__name__ = getattr(operation, "__name__", "operation")
    linked.__doc__ = operation.__doc__
    return linked


OPERATIONS = {
    "CreateExperiment": create_experiment,
    "DescribeExperiment": describe_experiment,
    "ListExperiments": list_experiments,
    "UpdateExperiment": update_experiment,
    "DeleteExperiment": delete_experiment,
    "CreateTrial": create_trial,
    "DescribeTrial": describe_trial,
    "ListTrials": list_trials,
    "UpdateTrial": update_trial,
    "DeleteTrial": delete_trial,
    "CreateTrialComponent": create_trial_component,
    "DescribeTrialComponent": describe_trial_component,
    "UpdateTrialComponent": update_trial_component,
    "ListTrialComponents": list_trial_components,
    "DeleteTrialComponent": delete_trial_component,
    "AssociateTrialComponent": associate_trial_component,
    "DisassociateTrialComponent": disassociate_trial_component,
    "Search": search,
}

__all__ = ["OPERATIONS", "component_document", "experiment_linked"]
