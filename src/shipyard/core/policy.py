"""IAM policy documents and their evaluation, as AWS defines them (pure).

A :class:`Policy` is parsed once from its JSON document (:meth:`Policy.from_document`): a
``Version``, and ``Statement`` (one object or a list), each with an ``Effect`` (``Allow`` or
``Deny``), ``Action`` or ``NotAction``, ``Resource`` or ``NotResource`` (a string or a list;
``*`` and ``?`` are wildcards), an optional ``Sid`` and an optional ``Condition``.

:func:`evaluate` decides a request as IAM does for identity policies: an explicit ``Deny`` wins,
then any ``Allow``, else the request is implicitly denied. Actions match case-insensitively,
resources case-sensitively. Conditions: the string operators ``StringEquals``,
``StringNotEquals``, ``StringLike`` and ``StringNotLike`` are evaluated against the request's
context keys (case-insensitive names, e.g. ``s3:prefix``); a key the request lacks matches no
positive operator and every negated one. Other operators, policy variables (``${...}``),
``Principal`` and ``NotPrincipal`` are refused when the document is parsed, naming the statement.

Evaluation is on every request of a user, so what can be is worked out once: each statement's
actions and resources become one set of exact names and one compiled regular expression; a set
of policies (a principal's) is indexed by the service its statements' actions name
(``s3:GetObject`` looks only at statements naming ``s3:``, ``*`` or ``NotAction``), Deny apart
from Allow, and, per action name, the statements covering it are kept, so deciding a request
tests its resource (and conditions) against those alone.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from operator import is_
from typing import Any

from shipyard.errors import MalformedPolicyDocument

VERSIONS = ("2012-10-17", "2008-10-17")
OPERATORS = ("StringEquals", "StringNotEquals", "StringLike", "StringNotLike")
_ACTION = re.compile(r"\*|[A-Za-z0-9-]+:[A-Za-z0-9*?]+")
_TOP_LEVEL = {"Version", "Id", "Statement"}
_STATEMENT_KEYS = {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition"}


class Effect(enum.StrEnum):
    ALLOW = "Allow"
    DENY = "Deny"


class Decision(enum.StrEnum):
    """The outcome of :func:`evaluate`."""

    ALLOW = "Allow"
    EXPLICIT_DENY = "ExplicitDeny"
    IMPLICIT_DENY = "ImplicitDeny"

    @property
    def allowed(self) -> bool:
        return self is Decision.ALLOW


@dataclasses.dataclass(frozen=True)
class Condition:
    """One condition test: ``operator`` applied to the context key ``key``, any of ``values``."""

    operator: str
    key: str
    values: tuple[str, ...]

    def holds(self, context: Mapping[str, str]) -> bool:
        value = _lookup(context, self.key)
        negated = self.operator.startswith("StringNot")
        if value is None:
            return negated
        if self.operator.endswith("Like"):
            found = any(_pattern(v, ignore_case=False).fullmatch(value) for v in self.values)
        else:
            found = value in self.values
        return found != negated


@dataclasses.dataclass(frozen=True)
class Statement:
    """One statement. ``not_action``/``not_resource``: the patterns name what it does *not*
    cover (NotAction / NotResource)."""

    effect: Effect
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    not_action: bool = False
    not_resource: bool = False
    conditions: tuple[Condition, ...] = ()
    sid: str | None = None

    def applies(self, action: str, resource: str, context: Mapping[str, str]) -> bool:
        """Whether this statement covers the request (its effect aside)."""
        return self.covers_action(action) and self.covers(resource, context)

    def covers_action(self, action: str) -> bool:
        return self._action_matcher.matches(action) != self.not_action

    def covers(self, resource: str, context: Mapping[str, str]) -> bool:
        """Whether this statement covers ``resource`` with ``context`` (its actions aside)."""
        if self._resource_matcher.matches(resource) == self.not_resource:
            return False
        return all(c.holds(context) for c in self.conditions)

    @functools.cached_property
    def _action_matcher(self) -> _Matcher:
        return _Matcher(self.actions, ignore_case=True)

    @functools.cached_property
    def _resource_matcher(self) -> _Matcher:
        return _Matcher(self.resources, ignore_case=False)

    @functools.cached_property
    def services(self) -> frozenset[str] | None:
        """The services (lower case) whose actions this statement may cover; None: any (``*``,
        a wildcard in a service name, or NotAction)."""
        if self.not_action:
            return None
        found = set()
        for pattern in self.actions:
            service, colon, _ = pattern.partition(":")
            if not colon or "*" in service or "?" in service:
                return None
            found.add(service.lower())
        return frozenset(found)

    def to_document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        if self.sid is not None:
            doc["Sid"] = self.sid
        doc["Effect"] = self.effect.value
        doc["NotAction" if self.not_action else "Action"] = list(self.actions)
        doc["NotResource" if self.not_resource else "Resource"] = list(self.resources)
        if self.conditions:
            tests: dict[str, dict[str, list[str]]] = {}
            for c in self.conditions:
                tests.setdefault(c.operator, {})[c.key] = list(c.values)
            doc["Condition"] = tests
        return doc


@dataclasses.dataclass(frozen=True)
class Policy:
    """A parsed IAM policy document."""

    statements: tuple[Statement, ...]
    version: str = "2012-10-17"

    @classmethod
    def from_document(cls, document: Mapping[str, Any] | str) -> Policy:
        """Parse a policy document (a mapping, or its JSON text).

        Raises:
            MalformedPolicyDocument: it is not one IAM accepts, or uses what Shipyard does not
                evaluate; the message names the statement and the member.
        """
        if isinstance(document, str):
            try:
                document = json.loads(document)
            except ValueError as exc:
                raise MalformedPolicyDocument(f"the document is not JSON: {exc}") from None
        if not isinstance(document, Mapping):
            raise MalformedPolicyDocument(f"the document must be a JSON object, got {_kind(document)}")
        unknown = sorted(set(document) - _TOP_LEVEL)
        if unknown:
            raise MalformedPolicyDocument(
                f"unknown member {unknown[0]!r} (a policy has Version, Id, Statement)"
            )
        version = document.get("Version", "2008-10-17")
        if version not in VERSIONS:
            raise MalformedPolicyDocument(
                f"Version {version!r} is not a policy language version: use {VERSIONS[0]!r}"
            )
        raw = document.get("Statement")
        if raw is None:
            raise MalformedPolicyDocument("the document has no Statement")
        items = [raw] if isinstance(raw, Mapping) else raw
        if not isinstance(items, list) or not items:
            raise MalformedPolicyDocument("Statement must be an object or a non-empty list of objects")
        statements = tuple(_statement(item, index) for index, item in enumerate(items, 1))
        sids = [s.sid for s in statements if s.sid is not None]
        for sid in sids:
            if sids.count(sid) > 1:
                raise MalformedPolicyDocument(f"Sid {sid!r} is used by more than one statement")
        return cls(statements, version)

    def to_document(self) -> dict[str, Any]:
        return {"Version": self.version, "Statement": [s.to_document() for s in self.statements]}


def allow(
    actions: Sequence[str],
    resources: Sequence[str],
    *,
    sid: str | None = None,
    conditions: Sequence[Condition] = (),
) -> Statement:
    """An ``Allow`` statement (a shorthand for policies built in code)."""
    return Statement(Effect.ALLOW, tuple(actions), tuple(resources), conditions=tuple(conditions), sid=sid)


ADMINISTRATOR = Policy((allow(["*"], ["*"], sid="Everything"),))
"""Everything allowed: what the server's master key may do."""
NOTHING = Policy((Statement(Effect.DENY, ("*",), ("*",), sid="Nothing"),))
"""Nothing allowed (a document needs a statement)."""


def evaluate(
    policies: Iterable[Policy], action: str, resource: str, context: Mapping[str, str] | None = None
) -> Decision:
    """Decide ``action`` on ``resource`` under ``policies``: an explicit Deny wins, then an Allow,
    else an implicit deny. ``context`` holds the request's condition keys (``s3:prefix``)."""
    context = context or {}
    denies, allows = _statements(tuple(policies)).for_action(action)
    for statement in denies:
        if statement.covers(resource, context):
            return Decision.EXPLICIT_DENY
    for statement in allows:
        if statement.covers(resource, context):
            return Decision.ALLOW
    return Decision.IMPLICIT_DENY


class _Statements:
    """Every statement of some policies, by the service their actions name (:attr:`Statement.services`),
    Deny statements apart from Allow ones: a request is decided
    by the Deny statements that may cover it, then by the first Allow that does. Which ones
    cover an action is kept per action (a server sees a few hundred action names)."""

    __slots__ = ("by_action", "everything", "general", "index")

    def __init__(self, policies: Sequence[Policy]) -> None:
        statements = [s for p in policies for s in p.statements]

        def split(chosen: Iterable[Statement]) -> tuple[tuple[Statement, ...], tuple[Statement, ...]]:
            chosen = list(chosen)
            return (
                tuple(s for s in chosen if s.effect is Effect.DENY),
                tuple(s for s in chosen if s.effect is Effect.ALLOW),
            )

        named = {service for s in statements for service in (s.services or ())}
        self.index = {
            service: split(s for s in statements if s.services is None or service in s.services)
            for service in named
        }
        self.general = split(s for s in statements if s.services is None)
        self.everything = split(statements)
        self.by_action: dict[str, tuple[tuple[Statement, ...], tuple[Statement, ...]]] = {}

    def for_action(self, action: str) -> tuple[tuple[Statement, ...], tuple[Statement, ...]]:
        """The Deny and the Allow statements whose actions cover ``action``."""
        found = self.by_action.get(action)
        if found is None:
            if action.isascii():
                denies, allows = self.index.get(action.partition(":")[0].lower(), self.general)
            else:  # matched by the regular expressions alone, as any service's might
                denies, allows = self.everything
            found = (
                tuple(s for s in denies if s.covers_action(action)),
                tuple(s for s in allows if s.covers_action(action)),
            )
            if len(self.by_action) >= 512:
                self.by_action.clear()
            self.by_action[action] = found
        return found


# The statements of the policy sets decided lately (a user's, kept by the identity service for
# every request it makes), by the identities of their policies; each entry holds its policies, so
# those identities stay theirs while it is kept.
_RECENT: dict[tuple[int, ...], tuple[tuple[Policy, ...], _Statements]] = {}
_RECENT_MAX = 1024


def _statements(policies: tuple[Policy, ...]) -> _Statements:
    key = tuple(map(id, policies))
    hit = _RECENT.get(key)
    if hit is not None and all(map(is_, hit[0], policies)):
        return hit[1]
    found = _Statements(policies)
    if len(_RECENT) >= _RECENT_MAX:
        _RECENT.clear()
    _RECENT[key] = (policies, found)
    return found


# -- parsing ----------------------------------------------------------------------------------------
def _statement(raw: Any, index: int) -> Statement:
    where = f"Statement {index}"
    if not isinstance(raw, Mapping):
        raise MalformedPolicyDocument(f"{where} must be an object, got {_kind(raw)}")
    sid = raw.get("Sid")
    if sid is not None:
        if not isinstance(sid, str) or not re.fullmatch(r"[A-Za-z0-9]*", sid):
            raise MalformedPolicyDocument(f"{where}: Sid {sid!r} must be letters and digits only")
        where = f"Statement {index} (Sid {sid!r})"
    for member in ("Principal", "NotPrincipal"):
        if member in raw:
            raise MalformedPolicyDocument(
                f"{where}: {member} belongs in resource-based policies; an identity policy names none"
            )
    unknown = sorted(set(raw) - _STATEMENT_KEYS)
    if unknown:
        raise MalformedPolicyDocument(f"{where}: unknown member {unknown[0]!r}")
    effect = raw.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise MalformedPolicyDocument(f"{where}: Effect must be 'Allow' or 'Deny', got {effect!r}")
    actions, not_action = _one_of(raw, "Action", "NotAction", where)
    for action in actions:
        if not _ACTION.fullmatch(action):
            raise MalformedPolicyDocument(
                f"{where}: action {action!r} must be '*' or '<service>:<action>' (wildcards * and ?)"
            )
    resources, not_resource = _one_of(raw, "Resource", "NotResource", where)
    for resource in resources:
        if resource != "*" and not resource.startswith("arn:"):
            raise MalformedPolicyDocument(f"{where}: resource {resource!r} must be '*' or an ARN")
        if "${" in resource:
            raise MalformedPolicyDocument(
                f"{where}: resource {resource!r} uses a policy variable, which Shipyard does not evaluate"
            )
    return Statement(
        Effect(effect),
        actions,
        resources,
        not_action=not_action,
        not_resource=not_resource,
        conditions=_conditions(raw.get("Condition"), where) if "Condition" in raw else (),
        sid=sid,
    )


def _one_of(raw: Mapping[str, Any], name: str, negated: str, where: str) -> tuple[tuple[str, ...], bool]:
    if (name in raw) == (negated in raw):
        raise MalformedPolicyDocument(f"{where} must have exactly one of {name} and {negated}")
    member = name if name in raw else negated
    return _strings(raw[member], f"{where}: {member}"), member == negated


def _strings(value: Any, what: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) and v for v in items):
        raise MalformedPolicyDocument(
            f"{what} must be a string or a non-empty list of strings, got {value!r}"
        )
    return tuple(items)


def _conditions(raw: Any, where: str) -> tuple[Condition, ...]:
    if not isinstance(raw, Mapping) or not raw:
        raise MalformedPolicyDocument(f"{where}: Condition must be an object of operators, got {raw!r}")
    found = []
    for operator, tests in raw.items():
        if operator not in OPERATORS:
            raise MalformedPolicyDocument(
                f"{where}: condition operator {operator!r} is not supported (Shipyard evaluates "
                f"{', '.join(OPERATORS)})"
            )
        if not isinstance(tests, Mapping) or not tests:
            raise MalformedPolicyDocument(
                f"{where}: Condition {operator} must map keys to values, got {tests!r}"
            )
        for key, values in tests.items():
            found.append(
                Condition(operator, str(key), _strings(values, f"{where}: Condition {operator} {key}"))
            )
    return tuple(found)


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return "a string" if isinstance(value, str) else type(value).__name__


def _lookup(context: Mapping[str, str], key: str) -> str | None:
    if key in context:
        return context[key]
    lowered = key.lower()
    return next((v for k, v in context.items() if k.lower() == lowered), None)


@functools.lru_cache(maxsize=4096)
def _pattern(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    """An IAM wildcard pattern as a regular expression: ``*`` any run of characters, ``?`` one."""
    return re.compile(_regex(pattern), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _regex(pattern: str) -> str:
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)


class _Matcher:
    """Whether a name matches any of a statement's patterns: ``*`` alone matches everything;
    names without wildcards are looked up in a set; the rest are one compiled alternation. (A
    name that is not ASCII is matched by the regular expressions alone, so that case is ignored
    exactly as ``re.IGNORECASE`` ignores it.)"""

    __slots__ = ("everything", "exact", "fold", "patterns", "wild")

    def __init__(self, patterns: Sequence[str], *, ignore_case: bool) -> None:
        self.fold = ignore_case
        self.patterns = tuple(patterns)
        self.everything = "*" in patterns
        plain = [p for p in patterns if "*" not in p and "?" not in p]
        self.exact = frozenset(p.lower() for p in plain) if ignore_case else frozenset(plain)
        wild = [p for p in patterns if "*" in p or "?" in p]
        self.wild = _alternation(tuple(wild), ignore_case) if wild else None

    def matches(self, name: str) -> bool:
        if self.everything:
            return True
        if self.fold and not name.isascii():
            return _alternation(self.patterns, True).fullmatch(name) is not None
        if (name.lower() if self.fold else name) in self.exact:
            return True
        return self.wild is not None and self.wild.fullmatch(name) is not None


@functools.lru_cache(maxsize=4096)
def _alternation(patterns: tuple[str, ...], ignore_case: bool) -> re.Pattern[str]:
    return re.compile(
        "|".join(f"(?:{_regex(p)})" for p in patterns), re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    )
