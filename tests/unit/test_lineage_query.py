"""QueryLineage decided on a small graph of fakes (core/lineage.py), and BatchGetMetrics' buckets
decided on a series (core/experiments/_series.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

import pytest

from shipyard.core.experiments import SeriesPoint, metric_query_result
from shipyard.core.lineage import Direction, Edge, LineageFilter, LineageType, Vertex, query_lineage
from shipyard.errors import ValidationError

T0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
P = "arn:aws:sagemaker:us-east-1:000000000000:"


def _v(name: str, lineage: LineageType, kind: str | None, minutes: int = 0, **properties: str) -> Vertex:
    at = T0 + dt.timedelta(minutes=minutes)
    return Vertex(P + name, lineage, kind, at, at, properties)


# data --ContributedTo--> training job's component --Produced--> model --> deployment --> endpoint
DATA = _v("artifact/data", LineageType.ARTIFACT, "DataSet", 0, stage="raw")
TRAIN = _v("experiment-trial-component/fit-aws-training-job", LineageType.TRIAL_COMPONENT, "TrainingJob", 1)
MODEL = _v("artifact/model", LineageType.ARTIFACT, "Model", 2)
DEPLOY = _v("action/deploy", LineageType.ACTION, "ModelDeployment", 3)
ENDPOINT = _v("context/endpoint", LineageType.CONTEXT, "Endpoint", 4, stage="prod")
NOTES = _v("artifact/notes", LineageType.ARTIFACT, "Notes", 5)  # another input of the job
GONE = P + "artifact/deleted"
EDGES = [
    Edge(DATA.arn, TRAIN.arn, "ContributedTo"),
    Edge(NOTES.arn, TRAIN.arn, "ContributedTo"),
    Edge(TRAIN.arn, MODEL.arn, "Produced"),
    Edge(MODEL.arn, DEPLOY.arn, "ContributedTo"),
    Edge(DEPLOY.arn, ENDPOINT.arn, "AssociatedWith"),
    Edge(MODEL.arn, GONE, "DerivedFrom"),  # an end whose entity is gone
]
VERTICES = {v.arn.lower(): v for v in (DATA, TRAIN, MODEL, DEPLOY, ENDPOINT, NOTES)}


def _edges_of(arns: Collection[str]) -> list[Edge]:
    wanted = set(arns)
    return [e for e in EDGES if e.source.lower() in wanted or e.destination.lower() in wanted]


def _vertices_of(arns: Collection[str]) -> dict[str, Vertex]:
    return {a: VERTICES[a] for a in arns if a in VERTICES}


def _query(start: Vertex, **options: object) -> list[Vertex]:
    return query_lineage([start.arn], _edges_of, _vertices_of, **options).vertices  # type: ignore[arg-type]


def test_descendants_and_ascendants_follow_the_associations_each_way() -> None:
    assert _query(DATA, direction=Direction.DESCENDANTS) == [TRAIN, MODEL, DEPLOY, ENDPOINT]
    assert _query(ENDPOINT, direction=Direction.ASCENDANTS) == [DEPLOY, MODEL, TRAIN, DATA, NOTES]
    # Both is the union of the two walks: the job's other input is not the data's lineage.
    assert _query(MODEL, direction=Direction.BOTH) == [DEPLOY, TRAIN, DATA, NOTES, ENDPOINT]  # by depth, ARN
    assert NOTES not in _query(DATA)


def test_max_depth_counts_associations_from_the_start() -> None:
    assert _query(DATA, direction=Direction.DESCENDANTS, max_depth=2) == [TRAIN, MODEL]
    assert _query(DATA, max_depth=0) == []
    with pytest.raises(ValidationError, match="MaxDepth 11"):
        _query(DATA, max_depth=11)


def test_filters_choose_what_is_answered_not_where_the_walk_goes() -> None:
    datasets = LineageFilter(lineage_types=frozenset({LineageType.ARTIFACT}), types=frozenset({"DataSet"}))
    assert _query(ENDPOINT, direction=Direction.ASCENDANTS, filters=datasets) == [DATA]
    jobs = LineageFilter.from_wire({"LineageTypes": ["TrialComponent"], "Types": ["TrainingJob"]})
    assert _query(ENDPOINT, direction=Direction.ASCENDANTS, filters=jobs) == [TRAIN]
    later = LineageFilter.from_wire({"CreatedAfter": T0 + dt.timedelta(minutes=2, seconds=30)})
    assert _query(DATA, filters=later) == [DEPLOY, ENDPOINT]
    before = LineageFilter.from_wire({"ModifiedBefore": T0 + dt.timedelta(minutes=2)})
    assert _query(ENDPOINT, direction=Direction.ASCENDANTS, filters=before) == [TRAIN, DATA]
    # Properties: any one pair matching is enough.
    either = LineageFilter.from_wire({"Properties": {"stage": "prod", "owner": "nobody"}})
    assert _query(DATA, filters=either) == [ENDPOINT]


def test_include_edges_adds_the_paths_to_what_matched() -> None:
    models = LineageFilter.from_wire({"Types": ["Model"]})
    result = query_lineage(
        [DATA.arn.upper().replace("ARN:AWS:SAGEMAKER", "arn:aws:sagemaker")],  # ARNs ignore case
        _edges_of,
        _vertices_of,
        direction=Direction.DESCENDANTS,
        include_edges=True,
        filters=models,
    )
    assert result.vertices == [DATA, TRAIN, MODEL]  # the start and the path, not beyond
    assert [e.association_type for e in result.edges] == ["ContributedTo", "Produced"]
    bare = query_lineage([DATA.arn], _edges_of, _vertices_of, filters=models)
    assert bare.vertices == [MODEL] and bare.edges == []


def test_an_end_whose_entity_is_gone_is_no_vertex_and_an_unknown_start_finds_nothing() -> None:
    found = _query(MODEL, direction=Direction.DESCENDANTS)
    assert GONE not in [v.arn for v in found] and found == [DEPLOY, ENDPOINT]
    assert query_lineage([GONE], _edges_of, _vertices_of).vertices == []


def test_a_vertex_on_the_wire_has_its_type_and_source_only_when_asked() -> None:
    vertex = Vertex(TRAIN.arn, LineageType.TRIAL_COMPONENT, "TrainingJob", T0, T0, {}, P + "training-job/fit")
    assert vertex.to_wire() == {"Arn": TRAIN.arn, "LineageType": "TrialComponent", "Type": "TrainingJob"}
    assert vertex.to_wire(include_source=True)["Source"] == {"SourceUri": P + "training-job/fit"}


# -- BatchGetMetrics ----------------------------------------------------------------------------
def _at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


SERIES = {
    "loss": [SeriesPoint(0.9, _at(0), 0), SeriesPoint(0.7, _at(10), 1), SeriesPoint(0.4, _at(70), 2)],
    "notes": [SeriesPoint(1.0, _at(5))],  # logged without a step
}
EPOCH = int(T0.timestamp())


def _get(**query: object) -> dict[str, object]:
    base = {
        "MetricName": "loss",
        "MetricStat": "Avg",
        "Period": "IterationNumber",
        "XAxisType": "IterationNumber",
    }
    return metric_query_result(SERIES, {**base, **query})


def test_metrics_by_step_and_by_time_period() -> None:
    assert _get() == {"Status": "Complete", "XAxisValues": [0, 1, 2], "MetricValues": [0.9, 0.7, 0.4]}
    by_minute = _get(Period="OneMinute", XAxisType="Timestamp", MetricStat="Max")
    assert by_minute["XAxisValues"] == [EPOCH, EPOCH + 60] and by_minute["MetricValues"] == [0.9, 0.4]
    assert _get(Period="OneMinute", XAxisType="Timestamp")["MetricValues"] == [pytest.approx(0.8), 0.4]
    assert _get(Period="OneHour", XAxisType="Timestamp", MetricStat="Count")["MetricValues"] == [3.0]
    assert _get(Period="OneHour", XAxisType="Timestamp", MetricStat="Last")["MetricValues"] == [0.4]
    assert _get(XAxisType="Timestamp")["XAxisValues"] == [EPOCH, EPOCH + 10, EPOCH + 70]
    assert _get(Start=1, End=1)["MetricValues"] == [0.7]  # both bounds included


def test_metric_queries_that_cannot_be_answered_say_why() -> None:
    unknown = _get(MetricName="accuracy")
    assert unknown["Status"] == "ValidationError" and "loss, notes" in str(unknown["Message"])
    mixed = _get(Period="FiveMinute")
    assert mixed["Status"] == "ValidationError" and "XAxisType 'IterationNumber'" in str(mixed["Message"])
    stepless = _get(MetricName="notes")
    assert stepless["Status"] == "ValidationError" and "without a Step" in str(stepless["Message"])
