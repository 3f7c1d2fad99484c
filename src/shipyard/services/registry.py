"""The model registry: model package groups and their versioned model packages."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from shipyard.core import content_types
from shipyard.core.arn import sagemaker_arn
from shipyard.core.clock import SYSTEM_CLOCK, Clock
from shipyard.core.hosting import ContainerSpec
from shipyard.core.pagination import Page
from shipyard.envs import framework_of
from shipyard.errors import ConflictError, ValidationError
from shipyard.services._claims import NO_CLAIMS, Claims
from shipyard.store import Resource, ResourceRepository
from shipyard.store.pipelines import ModelPackage, ModelPackageRepository

PENDING = "PendingManualApproval"
ACCEPTS_SCAN = 500  # how many of the newest packages are looked through for a model's own


class ModelRegistry:
    def __init__(
        self,
        groups: ResourceRepository,
        packages: ModelPackageRepository,
        *,
        account_id: str,
        clock: Clock = SYSTEM_CLOCK,
        claims: Claims = NO_CLAIMS,
    ) -> None:
        self._claims = claims  # who owns each group and package
        self._clock = clock
        self.groups = groups
        self.packages = packages
        self._account_id = account_id

    # -- groups ---------------------------------------------------------------------------------
    def create_group(self, params: Mapping[str, Any], *, region: str, owner: str | None = None) -> Resource:
        name = params["ModelPackageGroupName"]
        now = self._clock.now()
        group = self.groups.create(
            Resource(
                "model-package-group",
                name,
                sagemaker_arn(region, self._account_id, "model-package-group", name),
                now,
                dict(params),
                status="Completed",
            )
        )
        self._claims.claim_for(group.arn, owner)
        return group

    def group(self, name_or_arn: str) -> Resource:
        return self.groups.get(_group_name(name_or_arn))

    def delete_group(self, name_or_arn: str) -> None:
        name = _group_name(name_or_arn)
        self.groups.get(name)
        if self.packages.count(name):
            raise ConflictError(
                f"Model package group {name!r} still has model packages; delete them (DeleteModelPackage) first"
            )
        arn = self.groups.get(name).arn
        self.groups.delete(name)
        self._claims.forget(arn)

    def find_groups(self, params: Mapping[str, Any]) -> tuple[list[Resource], str | None]:
        page = Page.requested(params, default_size=10)
        found = self.groups.find(
            name_contains=params.get("NameContains"),
            created_after=params.get("CreationTimeAfter"),
            created_before=params.get("CreationTimeBefore"),
            sort_by=params.get("SortBy", "CreationTime"),
            ascending=params.get("SortOrder", "Descending") == "Ascending",
            offset=page.offset,
            limit=page.limit,
        )
        return page.cut(found)

    # -- packages -------------------------------------------------------------------------------
    def create_package(
        self, params: Mapping[str, Any], *, region: str, owner: str | None = None
    ) -> ModelPackage:
        if not params.get("ModelPackageGroupName"):
            raise ValidationError(
                "Shipyard keeps versioned model packages only: give ModelPackageGroupName "
                "(unversioned packages, named by ModelPackageName, are for AWS Marketplace)",
                field="ModelPackageGroupName",
            )
        if not params.get("InferenceSpecification"):
            raise ValidationError(
                "A model package needs an InferenceSpecification (its containers)",
                field="InferenceSpecification",
            )
        group = _group_name(params["ModelPackageGroupName"])
        now = self._clock.now()
        request = {k: v for k, v in params.items() if k not in ("Tags", "ClientToken")}

        def make(version: int) -> ModelPackage:
            return ModelPackage(
                group,
                version,
                sagemaker_arn(region, self._account_id, "model-package", f"{group}/{version}"),
                now,
                params.get("ModelApprovalStatus") or PENDING,
                request,
                {},
                now,
            )

        package = self.packages.add(group, make, group_exists=lambda: self._group_exists(group))
        self._claims.claim_for(package.arn, owner)
        return package

    def _group_exists(self, name: str) -> bool:
        try:
            self.groups.get(name)
        except ValidationError:
            return False
        return True

    def package(self, name_or_arn: str) -> ModelPackage:
        if ":model-package/" in name_or_arn:
            return self.packages.by_arn(name_or_arn)
        group, _, version = name_or_arn.rpartition("/")
        if group and version.isdigit():
            return self.packages.get(group, int(version))
        raise ValidationError(
            f"ModelPackageName {name_or_arn!r}: name a versioned model package by its ARN "
            "(arn:aws:sagemaker:<region>:<account>:model-package/<group>/<version>)",
            field="ModelPackageName",
            value=name_or_arn,
        )

    def update_package(self, params: Mapping[str, Any]) -> ModelPackage:
        found = self.package(params["ModelPackageArn"])

        def change(package: ModelPackage) -> ModelPackage:
            state = dict(package.state)
            approval = package.approval
            if params.get("ModelApprovalStatus"):
                approval = params["ModelApprovalStatus"]
            if params.get("ApprovalDescription") is not None:
                state["approval_description"] = params["ApprovalDescription"]
            request = dict(package.request)
            metadata = dict(request.get("CustomerMetadataProperties") or {})
            metadata.update(params.get("CustomerMetadataProperties") or {})
            for key in params.get("CustomerMetadataPropertiesToRemove") or []:
                metadata.pop(key, None)
            if metadata or "CustomerMetadataProperties" in request:
                request["CustomerMetadataProperties"] = metadata
            for member in ("InferenceSpecification", "SourceUri", "ModelCard", "ModelLifeCycle"):
                if params.get(member) is not None:
                    request[member] = params[member]
            if params.get("AdditionalInferenceSpecificationsToAdd"):
                request["AdditionalInferenceSpecifications"] = [
                    *(request.get("AdditionalInferenceSpecifications") or []),
                    *params["AdditionalInferenceSpecificationsToAdd"],
                ]
            return dataclasses.replace(
                package, approval=approval, state=state, request=request, last_modified=self._clock.now()
            )

        return self.packages.modify(found.group, found.version, change)

    def delete_package(self, name_or_arn: str) -> None:
        package = self.package(name_or_arn)
        self.packages.delete(package.group, package.version)
        self._claims.forget(package.arn)

    def find_packages(self, params: Mapping[str, Any]) -> tuple[list[ModelPackage], str | None]:
        if params.get("ModelPackageType") == "Unversioned":
            return [], None
        page = Page.requested(params, default_size=10)
        group = params.get("ModelPackageGroupName")
        found = self.packages.find(
            group=_group_name(group) if group else None,
            approval=params.get("ModelApprovalStatus"),
            name_contains=params.get("NameContains"),
            created_after=params.get("CreationTimeAfter"),
            created_before=params.get("CreationTimeBefore"),
            sort_by=params.get("SortBy", "CreationTime"),
            ascending=params.get("SortOrder", "Descending") == "Ascending",
            offset=page.offset,
            limit=page.limit,
        )
        return page.cut(found)

    def with_package_containers(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """CreateModel's request with each container that names a ModelPackageName (and no Image)
        filled from that package's InferenceSpecification, as SageMaker creates a model from a
        registered version: its Image, ModelDataUrl and Environment, the container's own
        Environment over the package's. The package name stays, as DescribeModel shows it.

        Raises:
            ValidationError: the package does not exist, or has several containers.
        """
        filled = dict(params)
        for member in ("PrimaryContainer", "Containers"):
            value = params.get(member)
            if value is None:
                continue
            containers = [value] if member == "PrimaryContainer" else list(value)
            done = [self._from_package(c, member if member == "PrimaryContainer" else f"{member}.{i}")
                    for i, c in enumerate(containers)]  # fmt: skip
            filled[member] = done[0] if member == "PrimaryContainer" else done
        return filled

    def _from_package(self, container: Mapping[str, Any], field: str) -> Mapping[str, Any]:
        name = container.get("ModelPackageName")
        if not name or container.get("Image"):
            return container
        package = self.package(name)
        inside = (package.request.get("InferenceSpecification") or {}).get("Containers") or []
        if len(inside) != 1:
            raise ValidationError(
                f"{field}.ModelPackageName {name!r} has {len(inside)} containers; Shipyard serves "
                "a model of one container (inference pipelines are not supported)",
                field=f"{field}.ModelPackageName",
                value=name,
            )
        [source] = inside
        filled = {k: v for k, v in source.items() if k in ("Image", "ModelDataUrl")}
        environment = {**(source.get("Environment") or {}), **(container.get("Environment") or {})}
        return {**container, **filled, **({"Environment": environment} if environment else {})}

    def accepted_by(self, container: ContainerSpec) -> tuple[str, ...]:
        """The content types a model of ``container`` reads, its default first
        (core/content_types.py): what the newest of the last ``ACCEPTS_SCAN`` model packages
        that registered its image and artifacts declares, then what its framework reads."""
        newest = self.packages.find(
            group=None,
            approval=None,
            name_contains=None,
            created_after=None,
            created_before=None,
            sort_by="CreationTime",
            ascending=False,
            offset=0,
            limit=ACCEPTS_SCAN,
        )
        declared = content_types.declared_by(
            (p.request for p in newest), container.image, container.model_data_url
        )
        return content_types.accepted(framework_of(container.image), declared)


def _group_name(name_or_arn: str) -> str:
    return name_or_arn.rsplit("/", 1)[1] if ":model-package-group/" in name_or_arn else name_or_arn
