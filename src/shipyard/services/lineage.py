"""SageMaker ML Lineage Tracking, what the sagemaker SDK's experiments and lineage helpers use:
artifacts, contexts and actions (Create/Describe/Update/Delete/List of each), the associations
between them and trial components (AddAssociation, ListAssociations, DeleteAssociation), and
QueryLineage over those associations (core/lineage.py decides it).

Artifacts are kept under a generated id (their ARN is ``artifact/<32 hex>``, as SageMaker's);
contexts and actions under their names, unique per kind without regard to case (``context/<name>``,
``action/<name>``, lower-cased as SageMaker's ARNs are). An association is kept under a hash of its
two ends, so adding it twice is refused with "already exists", which the SDK skips. An
association's ends must exist: an artifact, a context, an action or a trial component (a job's
too). Deleting an artifact, context or action deletes its associations.
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from shipyard.core.arn import sagemaker_arn
from shipyard.core.clock import SYSTEM_CLOCK, Clock
from shipyard.core.experiments import Entity, EntityKind, EntityNotFound
from shipyard.core.lineage import (
    MAX_DEPTH,
    Direction,
    Edge,
    LineageFilter,
    LineageResult,
    LineageType,
    Vertex,
    query_lineage,
)
from shipyard.core.pagination import Page
from shipyard.errors import NotFoundError, ValidationError
from shipyard.services._claims import NO_CLAIMS, Claims
from shipyard.services.experiments import Caller, ExperimentService, entity_document, json_safe

ARTIFACT, ASSOCIATION = EntityKind.ARTIFACT, EntityKind.ASSOCIATION
CONTEXT, ACTION = EntityKind.CONTEXT, EntityKind.ACTION
_ARTIFACT_MEMBERS = ("ArtifactName", "Source", "ArtifactType", "Properties", "MetadataProperties")
# What each named kind keeps of its create request, and the member giving its type.
_NAMED_MEMBERS = {
    CONTEXT: ("Source", "ContextType", "Description", "Properties"),
    ACTION: ("Source", "ActionType", "Description", "Status", "Properties", "MetadataProperties"),
}
_TYPE_MEMBER = {ARTIFACT: "ArtifactType", CONTEXT: "ContextType", ACTION: "ActionType"}
_LINEAGE_TYPES = {
    ARTIFACT: LineageType.ARTIFACT,
    CONTEXT: LineageType.CONTEXT,
    ACTION: LineageType.ACTION,
}
# A job's trial component's vertex Type, as the sagemaker SDK's LineageSourceEnum names them.
_JOB_TYPES = {
    "SageMakerTrainingJob": "TrainingJob",
    "SageMakerProcessingJob": "ProcessingJob",
    "SageMakerTransformJob": "TransformJob",
}


class LineageService:
    def __init__(
        self,
        experiments: ExperimentService,
        *,
        account_id: str,
        clock: Clock = SYSTEM_CLOCK,
        claims: Claims = NO_CLAIMS,
    ) -> None:
        self._experiments = experiments
        self._repository = experiments.repository
        self._account = account_id
        self._clock = clock
        self._claims = claims

    # -- artifacts ------------------------------------------------------------------------------
    def create_artifact(self, params: Mapping[str, Any], caller: Caller) -> Entity:
        artifact_id = uuid.uuid4().hex
        now = self._clock.now()
        document = {k: json_safe(params[k]) for k in _ARTIFACT_MEMBERS if params.get(k) is not None}
        entity = Entity(
            ARTIFACT,
            artifact_id,
            sagemaker_arn(caller.region, self._account, "artifact", artifact_id),
            now,
            now,
            document,
            created_by=caller.arn,
        )
        self._repository.create(entity)
        self._claims.claim_for(entity.arn, caller.owner)
        return entity

    def artifact(self, arn: str) -> Entity:
        found = self._repository.find_one(ARTIFACT, _artifact_id(arn))
        if found is None:
            raise EntityNotFound(ARTIFACT, arn)
        return found

    def update_artifact(self, params: Mapping[str, Any]) -> Entity:
        arn = params["ArtifactArn"]

        def change(entity: Entity) -> Entity:
            document = dict(entity.document)
            if params.get("ArtifactName"):
                document["ArtifactName"] = params["ArtifactName"]
            properties = {**document.get("Properties", {}), **(params.get("Properties") or {})}
            for key in params.get("PropertiesToRemove") or ():
                properties.pop(key, None)
            document["Properties"] = properties
            return dataclasses.replace(entity, document=document, last_modified=self._clock.now())

        return self._repository.modify(ARTIFACT, _artifact_id(arn), arn, change)

    def delete_artifact(self, params: Mapping[str, Any]) -> Entity:
        """By ArtifactArn, or by Source (its SourceUri); its associations go with it."""
        if params.get("ArtifactArn"):
            artifact = self.artifact(params["ArtifactArn"])
        elif params.get("Source"):
            uri = params["Source"].get("SourceUri")
            matching = [
                a for a in self._all(ARTIFACT) if (a.document.get("Source") or {}).get("SourceUri") == uri
            ]
            if not matching:
                raise NotFoundError(f"No artifact has Source.SourceUri '{uri}'")
            artifact = matching[0]
        else:
            raise ValidationError("Give ArtifactArn or Source", field="ArtifactArn")
        self._delete_edges_of(artifact.arn)
        self._repository.delete(ARTIFACT, artifact.name, artifact.arn, unless=lambda links: None)
        self._claims.forget(artifact.arn)
        return artifact

    def list_artifacts(self, params: Mapping[str, Any]) -> tuple[list[Entity], str | None]:
        found = [
            a
            for a in self._all(ARTIFACT)
            if (
                not params.get("SourceUri")
                or (a.document.get("Source") or {}).get("SourceUri") == params["SourceUri"]
            )
            and (not params.get("ArtifactType") or a.document.get("ArtifactType") == params["ArtifactType"])
            and _within(a, params)
        ]
        found.sort(key=lambda a: a.created, reverse=params.get("SortOrder", "Descending") != "Ascending")
        return Page.requested(params, default_size=10).slice(found)

    # -- contexts and actions -------------------------------------------------------------------
    def create_named(self, kind: EntityKind, params: Mapping[str, Any], caller: Caller) -> Entity:
        """CreateContext or CreateAction: kept under its name (taken: "already exists")."""
        name = params[kind.name_member]
        now = self._clock.now()
        document = {k: json_safe(params[k]) for k in _NAMED_MEMBERS[kind] if params.get(k) is not None}
        entity = Entity(
            kind,
            name,
            sagemaker_arn(caller.region, self._account, kind.value, name),
            now,
            now,
            document,
            created_by=caller.arn,
        )
        self._repository.create(entity)
        self._claims.claim_for(entity.arn, caller.owner)
        return entity

    def named(self, kind: EntityKind, name_or_arn: str, region: str) -> Entity:
        """A context or action by its name or ARN."""
        name = _name_of(kind, name_or_arn)
        found = self._repository.find_one(kind, name)
        if found is None:
            raise EntityNotFound(kind, sagemaker_arn(region, self._account, kind.value, name))
        return found

    def update_named(self, kind: EntityKind, params: Mapping[str, Any], region: str) -> Entity:
        """UpdateContext or UpdateAction: Description (and an action's Status) replaced,
        Properties merged, PropertiesToRemove removed."""
        name = params[kind.name_member]

        def change(entity: Entity) -> Entity:
            document = dict(entity.document)
            for member in ("Description", "Status"):
                if params.get(member) is not None:
                    document[member] = params[member]
            properties = {**document.get("Properties", {}), **(params.get("Properties") or {})}
            for key in params.get("PropertiesToRemove") or ():
                properties.pop(key, None)
            document["Properties"] = properties
            return dataclasses.replace(entity, document=document, last_modified=self._clock.now())

        arn = sagemaker_arn(region, self._account, kind.value, name)
        return self._repository.modify(kind, name, arn, change)

    def delete_named(self, kind: EntityKind, name: str, region: str) -> Entity:
        """DeleteContext or DeleteAction; its associations go with it."""
        entity = self.named(kind, name, region)
        self._delete_edges_of(entity.arn)
        self._repository.delete(kind, entity.name, entity.arn, unless=lambda links: None)
        self._claims.forget(entity.arn)
        return entity

    def list_named(self, kind: EntityKind, params: Mapping[str, Any]) -> tuple[list[Entity], str | None]:
        """ListContexts or ListActions: by SourceUri, type and creation time, sorted by
        CreationTime (default) or Name."""
        type_member = _TYPE_MEMBER[kind]
        found = [
            e
            for e in self._all(kind)
            if (
                not params.get("SourceUri")
                or (e.document.get("Source") or {}).get("SourceUri") == params["SourceUri"]
            )
            and (not params.get(type_member) or e.document.get(type_member) == params[type_member])
            and _within(e, params)
        ]
        descending = params.get("SortOrder", "Descending") != "Ascending"
        if params.get("SortBy") == "Name":
            found.sort(key=lambda e: e.key, reverse=descending)
        else:
            found.sort(key=lambda e: e.created, reverse=descending)
        return Page.requested(params, default_size=10).slice(found)

    # -- lineage queries ------------------------------------------------------------------------
    def query(
        self, params: Mapping[str, Any], region: str, visible: Callable[[list[str]], Collection[str]]
    ) -> tuple[LineageResult, str | None]:
        """QueryLineage over what ``visible`` keeps (it is given ARNs, answers those the caller
        may see), the vertices paged by MaxResults, with the edges that reach the page's."""
        edges = [_edge(e) for e in self._all(ASSOCIATION)]
        index: dict[str, list[Edge]] = {}
        for edge in edges:
            for end in {edge.source.lower(), edge.destination.lower()}:
                index.setdefault(end, []).append(edge)

        def edges_of(arns: Iterable[str]) -> list[Edge]:
            return list({id(e): e for a in arns for e in index.get(a, ())}.values())

        def vertices_of(arns: Iterable[str]) -> dict[str, Vertex]:
            # What the caller may not see is as good as absent: not answered, not walked through.
            found = {}
            for arn in arns:
                vertex = self.vertex(arn, region)
                if vertex is not None:
                    found[arn.lower()] = vertex
            shown = {a.lower() for a in visible([v.arn for v in found.values()])}
            return {a: v for a, v in found.items() if v.arn.lower() in shown}

        result = query_lineage(
            params.get("StartArns") or [],
            edges_of,
            vertices_of,
            direction=Direction(params.get("Direction") or "Both"),
            max_depth=MAX_DEPTH if params.get("MaxDepth") is None else int(params["MaxDepth"]),
            include_edges=bool(params.get("IncludeEdges")),
            filters=LineageFilter.from_wire(params.get("Filters")),
        )
        page, token = Page.requested(params, default_size=50).slice(result.vertices)
        on_page = {v.arn.lower() for v in page}
        joined = [e for e in result.edges if e.source.lower() in on_page or e.destination.lower() in on_page]
        return LineageResult(page, joined), token

    def vertex(self, arn: str, region: str) -> Vertex | None:
        """The lineage entity ``arn`` names (None: there is none)."""
        kind, name = _kind_and_name(arn)
        if kind in (ARTIFACT, CONTEXT, ACTION):
            entity = self._repository.find_one(kind, name)
            if entity is None:
                return None
            document = entity.document
            return Vertex(
                entity.arn,
                _LINEAGE_TYPES[kind],
                document.get(_TYPE_MEMBER[kind]),
                entity.created,
                entity.last_modified,
                dict(document.get("Properties") or {}),
                (document.get("Source") or {}).get("SourceUri"),
            )
        if kind is EntityKind.TRIAL_COMPONENT:
            try:
                component = self._experiments.component(name, region)
            except EntityNotFound:
                return None
            source = component.get("Source") or {}
            return Vertex(
                component["TrialComponentArn"],
                LineageType.TRIAL_COMPONENT,
                _JOB_TYPES.get(source.get("SourceType", "")),
                component["CreationTime"],
                component.get("LastModifiedTime") or component["CreationTime"],
                {},
                source.get("SourceArn"),
            )
        return None

    # -- associations ---------------------------------------------------------------------------
    def add_association(self, params: Mapping[str, Any], caller: Caller) -> Entity:
        source, destination = params["SourceArn"], params["DestinationArn"]
        ends = {
            "Source": self._end(source, "SourceArn"),
            "Destination": self._end(destination, "DestinationArn"),
        }
        key = _edge_key(source, destination)
        if self._repository.find_one(ASSOCIATION, key) is not None:
            raise ValidationError(
                f"An association from '{source}' to '{destination}' already exists.",
                field="SourceArn",
                value=source,
            )
        now = self._clock.now()
        document = {
            "SourceArn": source,
            "DestinationArn": destination,
            "AssociationType": params.get("AssociationType"),
            **{f"{side}Type": kind for side, (kind, _) in ends.items()},
            **{f"{side}Name": name for side, (_, name) in ends.items()},
        }
        edge = Entity(
            ASSOCIATION, key, key, now, now, {k: v for k, v in document.items() if v}, created_by=caller.arn
        )
        return self._repository.create(edge)

    def delete_association(self, source: str, destination: str) -> None:
        key = _edge_key(source, destination)
        if self._repository.find_one(ASSOCIATION, key) is None:
            raise NotFoundError(f"No association from '{source}' to '{destination}' exists.")
        self._repository.delete(ASSOCIATION, key, key, unless=lambda links: None)

    def list_associations(self, params: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
        def wanted(edge: Entity) -> bool:
            document = edge.document
            for member in ("SourceArn", "DestinationArn"):
                if params.get(member) and document[member].lower() != params[member].lower():
                    return False
            for member in ("SourceType", "DestinationType", "AssociationType"):
                if params.get(member) and document.get(member) != params[member]:
                    return False
            return _within(edge, params)

        found = [e for e in self._all(ASSOCIATION) if wanted(e)]
        sort_by = params.get("SortBy", "CreationTime")
        descending = params.get("SortOrder", "Descending") != "Ascending"
        if sort_by == "CreationTime":
            found.sort(key=lambda e: e.created, reverse=descending)
        else:
            found.sort(key=lambda e: str(e.document.get(sort_by) or ""), reverse=descending)
        page, token = Page.requested(params, default_size=10).slice(found)
        return [_association_summary(e) for e in page], token

    def _end(self, arn: str, member: str) -> tuple[str, str]:
        """An association's end: its type and name, or why it cannot be one."""
        kind, name = _kind_and_name(arn)
        if kind is ARTIFACT:
            artifact = self.artifact(arn)
            return str(artifact.document.get("ArtifactType") or "Artifact"), str(
                artifact.document.get("ArtifactName") or ""
            )
        if kind in (CONTEXT, ACTION):
            entity = self.named(kind, arn, arn.split(":")[3])
            return str(entity.document.get(_TYPE_MEMBER[kind]) or kind.label), entity.name
        if kind is EntityKind.TRIAL_COMPONENT:
            component = self._experiments.component(name, arn.split(":")[3])
            return str((component.get("Source") or {}).get("SourceType") or "TrialComponent"), component[
                "TrialComponentName"
            ]
        raise ValidationError(
            f"{member} '{arn}': an association joins artifacts, contexts, actions and trial "
            "components; this ARN names none of them",
            field=member,
            value=arn,
        )

    def _delete_edges_of(self, arn: str) -> None:
        for edge in self._all(ASSOCIATION):
            ends = (edge.document["SourceArn"].lower(), edge.document["DestinationArn"].lower())
            if arn.lower() in ends:
                self._repository.delete(ASSOCIATION, edge.name, edge.name, unless=lambda links: None)

    def _all(self, kind: EntityKind) -> list[Entity]:
        found: list[Entity] = []
        while True:
            batch = self._repository.find(kind, ascending=True, offset=len(found), limit=500)
            found += batch
            if len(batch) < 500:
                return found


def artifact_document(entity: Entity) -> dict[str, Any]:
    """DescribeArtifact's answer."""
    document = entity_document(entity)
    document.pop("ArtifactName", None)
    document.pop("DisplayName", None)
    return {**document, **entity.document, "ArtifactArn": entity.arn}


def named_document(entity: Entity) -> dict[str, Any]:
    """DescribeContext's or DescribeAction's answer."""
    member = entity.kind.name_member
    created_by = {"IamIdentity": {"Arn": entity.created_by}} if entity.created_by else {}
    return {
        member: entity.name,
        member.replace("Name", "Arn"): entity.arn,
        **entity.document,
        "CreationTime": entity.created,
        "CreatedBy": created_by,
        "LastModifiedTime": entity.last_modified,
        "LastModifiedBy": created_by,
    }


def _kind_and_name(arn: str) -> tuple[EntityKind | None, str]:
    """The lineage kind and name (an artifact's id) an ARN names; None for anything else."""
    resource = arn.split(":", 5)[-1] if arn.startswith("arn:") and arn.count(":") >= 5 else ""
    kind, _, name = resource.partition("/")
    wanted = {k.value: k for k in (ARTIFACT, CONTEXT, ACTION, EntityKind.TRIAL_COMPONENT)}
    return (wanted.get(kind) if name else None), name


def _name_of(kind: EntityKind, name_or_arn: str) -> str:
    if not name_or_arn.startswith("arn:"):
        return name_or_arn
    found, name = _kind_and_name(name_or_arn)
    if found is not kind:
        raise ValidationError(
            f"{kind.name_member} '{name_or_arn}' is not the ARN of a {kind.label.lower()}",
            field=kind.name_member,
            value=name_or_arn,
        )
    return name


def _edge(entity: Entity) -> Edge:
    document = entity.document
    return Edge(document["SourceArn"], document["DestinationArn"], document.get("AssociationType"))


def _association_summary(edge: Entity) -> dict[str, Any]:
    created_by = {"IamIdentity": {"Arn": edge.created_by}} if edge.created_by else {}
    return {**edge.document, "CreationTime": edge.created, "CreatedBy": created_by}


def _artifact_id(arn: str) -> str:
    prefix, sep, artifact_id = arn.partition(":artifact/")
    if not sep or not artifact_id or not prefix.startswith("arn:"):
        raise ValidationError(f"ArtifactArn '{arn}' is not an artifact's ARN", field="ArtifactArn", value=arn)
    return artifact_id


def _edge_key(source: str, destination: str) -> str:
    return hashlib.sha256(f"{source.lower()}|{destination.lower()}".encode()).hexdigest()


def _within(entity: Entity, params: Mapping[str, Any]) -> bool:
    after, before = params.get("CreatedAfter"), params.get("CreatedBefore")
    return (after is None or entity.created > after) and (before is None or entity.created < before)
