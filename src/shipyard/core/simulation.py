"""IAM's policy simulator (SimulatePrincipalPolicy, SimulateCustomPolicy), pure.

A simulation decides each action on each resource as :func:`shipyard.core.policy.evaluate`
does (an explicit Deny wins, then an Allow, else an implicit deny) and says which statements
decided it: the Deny statements that cover it when one does, else the Allow statements that do,
each named by the policy it is in. An administrator's (and the root's) decisions are all
allowed, as their requests are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from shipyard.core.policy import Decision, Effect, Policy

# IAM's words for a decision (EvalDecision).
EVAL_DECISIONS = {
    Decision.ALLOW: "allowed",
    Decision.EXPLICIT_DENY: "explicitDeny",
    Decision.IMPLICIT_DENY: "implicitDeny",
}


@dataclasses.dataclass(frozen=True)
class SourcePolicy:
    """A policy taking part in a simulation: ``policy_id`` names it (an inline policy's name,
    ``PolicyInputList.<n>`` for one given in the request), ``source_type`` is IAM's
    PolicySourceType (user, group, role, none)."""

    policy_id: str
    source_type: str
    policy: Policy


@dataclasses.dataclass(frozen=True)
class Simulated:
    action: str
    resource: str
    decision: Decision
    matched: tuple[SourcePolicy, ...] = ()


def simulate(
    sources: Sequence[SourcePolicy],
    actions: Sequence[str],
    resources: Sequence[str],
    context: Mapping[str, str] | None = None,
    *,
    administrator: bool = False,
) -> list[Simulated]:
    """Each of ``actions`` on each of ``resources`` (``*`` when none), in that order."""
    context = context or {}
    results = []
    for action in actions:
        for resource in resources or ("*",):
            if administrator:
                results.append(Simulated(action, resource, Decision.ALLOW))
                continue
            denies: list[SourcePolicy] = []
            allows: list[SourcePolicy] = []
            for source in sources:
                for statement in source.policy.statements:
                    if statement.applies(action, resource, context):
                        chosen = denies if statement.effect is Effect.DENY else allows
                        if source not in chosen:
                            chosen.append(source)
            if denies:
                results.append(Simulated(action, resource, Decision.EXPLICIT_DENY, tuple(denies)))
            elif allows:
                results.append(Simulated(action, resource, Decision.ALLOW, tuple(allows)))
            else:
                results.append(Simulated(action, resource, Decision.IMPLICIT_DENY))
    return results
