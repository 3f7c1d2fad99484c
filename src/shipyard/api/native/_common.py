"""What the native routers share: the platform serving a request, what every kind of job shows
(status, placement, cost), and times read or written as ISO text."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

from fastapi import HTTPException, Request

from shipyard.errors import ValidationError
from shipyard.services import Platform

# The largest offset (or version number) a query may name: past it no store integer holds it, so
# it is refused as a bad parameter (422 naming it) rather than failing in the database.
MAX_OFFSET = 2**31 - 1


def platform_of(request: Request) -> Platform:
    platform: Platform | None = request.app.state.platform
    if platform is None:
        raise HTTPException(503, "Shipyard is starting")
    return platform


def job_view(platform: Platform, job: Any) -> dict[str, Any]:
    """What every kind of job shows on /api/v1: status, placement and cost (so far, while it runs)."""
    billing = job.run.billing
    cost, sagemaker_cost = cost_of(platform, job)
    return {
        "name": job.name,
        "arn": job.arn,
        "status": job.state.status.value,
        "status_message": status_message(job),
        "failure_reason": job.state.failure_reason,
        "instance_type": job.spec.instance_type,
        "instance_count": job.spec.instance_count,
        "placement": dataclasses.asdict(job.run.placement) if job.run.placement else None,
        "scaled_down": job.state.scaled_down,
        "billable_seconds": billing.billable_seconds if billing else None,
        "price_per_hour_usd": str(billing.price_per_hour_usd) if billing else None,
        "billed_as": billed_as(platform, job),
        "cost_usd": str(cost),
        "sagemaker_cost_usd": str(sagemaker_cost),
    }


def billed_as(platform: Platform, job: Any) -> str | None:
    """The instance type the site charges a scaled-down job as (core/pricing.py), or None when
    it charges for the type asked: as it was billed once it ended, else as it is priced now."""
    if job.run.billing is not None:
        return job.run.billing.billed_as
    if job.run.placement is None:
        return None
    try:
        return platform.costs.job_price(job).billed_as
    except ValidationError:  # its type has left the site's catalog since
        return None


def status_message(job: Any) -> str:
    """What the job's current secondary status says (a waiting job: why, and behind whom)."""
    return str(job.state.transitions[-1].to_wire()["StatusMessage"]) if job.state.transitions else ""


def cost_of(platform: Platform, job: Any) -> tuple[Decimal, Decimal]:
    """A job's cost (the site's, SageMaker's): final once it ended, else so far."""
    if job.run.billing is not None:
        return job.run.billing.cost_usd, job.run.billing.sagemaker_cost_usd
    _, so_far, sagemaker_so_far = platform.costs.resource_cost(job.kind, job.name, since=job.created)
    return so_far, sagemaker_so_far


def when(text: str, field: str) -> Any:
    """An ISO date or time as an aware UTC datetime; ValidationError naming the field."""
    import datetime as dt

    try:
        found = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError(
            f"{field} {text!r} is not an ISO date or time", field=field, value=text
        ) from None
    return found if found.tzinfo else found.replace(tzinfo=dt.UTC)


def iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None
