"""SageMaker ML Lineage Tracking's QueryLineage, decided on a graph: from start ARNs, follow the
associations (source to destination for Descendants, back for Ascendants, both ways for Both) up
to ``MaxDepth`` associations away, and answer the entities the filters admit.

The graph is given as two functions, so the traversal knows nothing of where edges and entities
are kept: ``edges_of(arns)`` the associations touching those ARNs, ``vertices_of(arns)`` the
entities behind them (an ARN whose entity is gone is not a vertex and is not walked through).
ARNs compare without regard to case (SageMaker lower-cases names in them).

What comes back, as SageMaker describes it: without IncludeEdges, the entities the filters match
(the start entities are where the query stands, not results); with IncludeEdges, those and the
entities and associations on the paths to them, the start entities included. "Both" is the union
of the two directed walks, not an undirected one (siblings of a start entity are not its
lineage). A vertex is reached at its least depth; the paths kept to it are the shortest ones.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from shipyard.errors import ValidationError

MAX_DEPTH = 10  # botocore's QueryLineageMaxDepth; the sagemaker SDK sends it too


class LineageType(enum.Enum):
    """What a vertex is, as QueryLineage's ``LineageType`` names it."""

    TRIAL_COMPONENT = "TrialComponent"
    ARTIFACT = "Artifact"
    CONTEXT = "Context"
    ACTION = "Action"


class Direction(enum.Enum):
    BOTH = "Both"
    ASCENDANTS = "Ascendants"
    DESCENDANTS = "Descendants"


@dataclasses.dataclass(frozen=True)
class Edge:
    """An association: ``source`` to ``destination``, of ``association_type`` (may be None)."""

    source: str
    destination: str
    association_type: str | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"SourceArn": self.source, "DestinationArn": self.destination}
        if self.association_type:
            wire["AssociationType"] = self.association_type
        return wire


@dataclasses.dataclass(frozen=True)
class Vertex:
    """A lineage entity: its ARN, what it is, its ``type`` (an artifact's ArtifactType, a
    context's ContextType, an action's ActionType, a job's trial component ``TrainingJob``...),
    its times, properties and source URI (the job's ARN for a job's trial component)."""

    arn: str
    lineage_type: LineageType
    type: str | None
    created: dt.datetime
    modified: dt.datetime
    properties: Mapping[str, str] = dataclasses.field(default_factory=dict)
    source_uri: str | None = None

    def to_wire(self, *, include_source: bool = False) -> dict[str, Any]:
        wire: dict[str, Any] = {"Arn": self.arn, "LineageType": self.lineage_type.value}
        if self.type:
            wire["Type"] = self.type
        if include_source and self.source_uri:
            wire["Source"] = {"SourceUri": self.source_uri}
        return wire


@dataclasses.dataclass(frozen=True)
class LineageFilter:
    """QueryLineage's ``Filters``: every given member must admit a vertex; of ``properties``,
    any one pair matching is enough (as SageMaker documents)."""

    types: frozenset[str] = frozenset()
    lineage_types: frozenset[LineageType] = frozenset()
    created_before: dt.datetime | None = None
    created_after: dt.datetime | None = None
    modified_before: dt.datetime | None = None
    modified_after: dt.datetime | None = None
    properties: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_wire(cls, filters: Mapping[str, Any] | None) -> LineageFilter:
        filters = filters or {}
        return cls(
            types=frozenset(filters.get("Types") or ()),
            lineage_types=frozenset(LineageType(t) for t in filters.get("LineageTypes") or ()),
            created_before=filters.get("CreatedBefore"),
            created_after=filters.get("CreatedAfter"),
            modified_before=filters.get("ModifiedBefore"),
            modified_after=filters.get("ModifiedAfter"),
            properties=dict(filters.get("Properties") or {}),
        )

    def admits(self, vertex: Vertex) -> bool:
        if self.types and vertex.type not in self.types:
            return False
        if self.lineage_types and vertex.lineage_type not in self.lineage_types:
            return False
        if self.created_before is not None and not vertex.created < self.created_before:
            return False
        if self.created_after is not None and not vertex.created > self.created_after:
            return False
        if self.modified_before is not None and not vertex.modified < self.modified_before:
            return False
        if self.modified_after is not None and not vertex.modified > self.modified_after:
            return False
        return not self.properties or any(vertex.properties.get(k) == v for k, v in self.properties.items())


@dataclasses.dataclass(frozen=True)
class LineageResult:
    """The vertices (start entities first, then by depth and ARN) and edges a query found."""

    vertices: list[Vertex]
    edges: list[Edge]


EdgesOf = Callable[[Collection[str]], Sequence[Edge]]
VerticesOf = Callable[[Collection[str]], Mapping[str, Vertex]]


def query_lineage(
    start_arns: Sequence[str],
    edges_of: EdgesOf,
    vertices_of: VerticesOf,
    *,
    direction: Direction = Direction.BOTH,
    max_depth: int = MAX_DEPTH,
    include_edges: bool = False,
    filters: LineageFilter | None = None,
) -> LineageResult:
    """QueryLineage's answer (before paging) from ``start_arns``.

    ``vertices_of`` answers by lower-cased ARN. Raises ValidationError for a depth out of range.
    """
    if not 0 <= max_depth <= MAX_DEPTH:
        raise ValidationError(
            f"MaxDepth {max_depth} is out of range: give 0 to {MAX_DEPTH}", field="MaxDepth", value=max_depth
        )
    admitted = filters or LineageFilter()
    starts = {a.lower(): a for a in start_arns}
    known = dict(vertices_of(list(starts)))
    depth: dict[str, int] = {a: 0 for a in starts if a in known}
    parents: dict[str, list[Edge]] = {}  # how each vertex was reached at its least depth
    directions = [Direction.DESCENDANTS, Direction.ASCENDANTS] if direction is Direction.BOTH else [direction]
    for walk in directions:
        frontier = [a for a in starts if a in known]
        seen = set(frontier)
        level = 0
        while frontier and level < max_depth:
            level += 1
            found: dict[str, list[Edge]] = {}
            here = set(frontier)
            for edge in edges_of(frontier):
                near, far = _ends(edge, walk)
                if near in here and far not in seen:
                    found.setdefault(far, []).append(edge)
            known.update(vertices_of([a for a in found if a not in known]))
            frontier = []
            for arn, via in sorted(found.items()):
                if arn not in known:
                    continue  # its entity is gone: not a vertex, not a way through
                seen.add(arn)
                frontier.append(arn)
                if depth.get(arn, level + 1) > level:
                    depth[arn], parents[arn] = level, list(via)
                elif depth[arn] == level:
                    parents[arn] = _union(parents[arn], via)
    matched = [a for a, d in depth.items() if d > 0 and admitted.admits(known[a])]
    order = sorted(depth, key=lambda a: (depth[a], a))
    if not include_edges:
        return LineageResult([known[a] for a in order if a in set(matched)], [])
    on_path: set[str] = set()
    edges: list[Edge] = []
    pending = list(matched)
    while pending:
        arn = pending.pop()
        if arn in on_path:
            continue
        on_path.add(arn)
        for edge in parents.get(arn, ()):
            if edge not in edges:
                edges.append(edge)
            pending += [e for e in (edge.source.lower(), edge.destination.lower()) if e != arn]
    vertices = [known[a] for a in order if a in on_path]
    edges.sort(key=lambda e: (e.source.lower(), e.destination.lower()))
    return LineageResult(vertices, edges)


def _ends(edge: Edge, walk: Direction) -> tuple[str, str]:
    source, destination = edge.source.lower(), edge.destination.lower()
    return (source, destination) if walk is Direction.DESCENDANTS else (destination, source)


def _union(edges: list[Edge], more: list[Edge]) -> list[Edge]:
    return edges + [e for e in more if e not in edges]
