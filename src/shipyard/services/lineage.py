"""SageMaker ML Lineage Tracking, the part the sagemaker SDK's experiments and lineage helpers
use: artifacts (CreateArtifact and the rest) and the associations between artifacts and trial
components (AddAssociation, ListAssociations, DeleteAssociation).

Artifacts are kept under a generated id (their ARN is ``artifact/<32 hex>``, as SageMaker's);
an association is kept under a hash of its two ends, so adding it twice is refused with
"already exists", which the SDK skips. An association's ends must exist: an artifact or a trial
component (a job's too); contexts and actions are not served, and naming one says so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections.abc import Mapping
from typing import Any

from shipyard.core.arn import sagemaker_arn
from shipyard.core.clock import SYSTEM_CLOCK, Clock
from shipyard.core.experiments import Entity, EntityKind, EntityNotFound
from shipyard.core.pagination import Page
from shipyard.errors import NotFoundError, ValidationError
from shipyard.services._claims import NO_CLAIMS, Claims
from shipyard.services.experiments import Caller, ExperimentService, entity_document, json_safe

ARTIFACT, ASSOCIATION = EntityKind.ARTIFACT, EntityKind.ASSOCIATION
_ARTIFACT_MEMBERS = ("ArtifactName", "Source", "ArtifactType", "Properties", "MetadataProperties")


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
        for edge in self._all(ASSOCIATION):
            if artifact.arn in (edge.document["SourceArn"], edge.document["DestinationArn"]):
                self._repository.delete(ASSOCIATION, edge.name, edge.name, unless=lambda links: None)
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
        resource = arn.split(":", 5)[-1] if arn.count(":") >= 5 else ""
        kind, _, name = resource.partition("/")
        if kind == "artifact":
            artifact = self.artifact(arn)
            return str(artifact.document.get("ArtifactType") or "Artifact"), str(
                artifact.document.get("ArtifactName") or ""
            )
        if kind == "experiment-trial-component":
            component = self._experiments.component(name, arn.split(":")[3])
            return str((component.get("Source") or {}).get("SourceType") or "TrialComponent"), component[
                "TrialComponentName"
            ]
        raise ValidationError(
            f"{member} '{arn}': Shipyard's lineage links artifacts and trial components; "
            f"{kind or 'this'} resources (contexts, actions, ...) are not served",
            field=member,
            value=arn,
        )

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
