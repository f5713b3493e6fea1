"""From the registry and admin-written text to Cedar: entities, statements and their ids.

Every statement in the effective policy set has a stable id that says where it came from, so
a decision can name the policies that fired:

- ``registry.grant.<agent>.<tool>`` — a tool grant: permits ``tool.invoke`` for the granted
  actions in the granted environments (expired grants are left out);
- ``registry.memory.<agent>.<store>`` — a memory binding: permits ``memory.read``, and
  ``memory.write`` too when the binding is read-write;
- ``registry.delegate.<agent>.<sub-agent>`` — the registry lets the agent start that sub-agent;
- ``baseline.*`` — built in: model calls for active agents, nothing for inactive agents, no
  writes to forbidden stores, no sub-agent that is not active;
- ``<policy-slug>`` (or ``<policy-slug>.<n>`` when a policy has several statements) — written
  by an admin.

Registry statements are generated per agent (each is scoped to ``principal == Agent::"…"``), so
the evaluator only ever hands Cedar the statements of the agent asking: the same decisions as
one big set, without every request paying for every agent's grants.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import cedarpy
from django.db import connection
from django.utils import timezone

from apps.accounts.models import Department, Team
from apps.registry.constants import MemoryAccess
from apps.registry.models import (
    Agent,
    AgentVersion,
    MemoryBinding,
    MemoryStore,
    Tool,
    ToolGrant,
)

from .constants import POLICY_STATEMENTS_MAX, POLICY_TEXT_MAX, Origin
from .models import Policy, PolicyVersion
from .schema import ATTRIBUTES, schema

# --- statements ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    """One permit or forbid in the effective set, with the Cedar text a person reads."""

    id: str
    effect: str  # "permit" | "forbid"
    origin: str  # Origin
    text: str
    est: dict[str, Any] = field(repr=False, compare=False)
    policy: str = ""  # the admin policy's slug
    line: int = 1  # where the statement starts in its policy's text


BASELINE_TEXT = {
    "baseline.model-call": (
        "// Active agents may call models; budgets and admin policies narrow this.\n"
        'permit(principal, action == Action::"model.call", resource)\n'
        '  when { principal.status == "active" };'
    ),
    "baseline.inactive-agent": (
        "// A draft, suspended or retired agent does nothing.\n"
        "forbid(principal, action, resource)\n"
        '  when { principal.status != "active" };'
    ),
    "baseline.forbidden-store-write": (
        "// A forbidden store is never written by an agent, whatever else permits it.\n"
        'forbid(principal, action == Action::"memory.write", resource is MemoryStore)\n'
        '  when { resource.store_class == "forbidden" };'
    ),
    "baseline.inactive-sub-agent": (
        "// Only an active agent can be started as a sub-agent.\n"
        'forbid(principal, action == Action::"delegate", resource is Agent)\n'
        '  when { resource.status != "active" };'
    ),
}


def cedar_string(value: str) -> str:
    """A Cedar string literal. Cedar's escapes are not JSON's (``\\u{…}``), so spell them."""
    out = ['"']
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{{{ord(char):x}}}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _uid(entity_type: str, entity_id: str) -> str:
    return f"{entity_type}::{cedar_string(entity_id)}"


def _set(values: Iterable[str]) -> str:
    return "[" + ", ".join(cedar_string(v) for v in values) + "]"


def parse_generated(texts: dict[str, str], origin: str) -> dict[str, Statement]:
    """Parse statements Tether wrote itself (one statement per id) in a single pass."""
    if not texts:
        return {}
    ids = list(texts)
    parsed = json.loads(cedarpy.policies_to_json_str("\n".join(texts[i] for i in ids)))
    static = parsed["staticPolicies"]
    return {
        statement_id: Statement(
            id=statement_id,
            effect=static[f"policy{n}"]["effect"],
            origin=origin,
            text=texts[statement_id],
            est=static[f"policy{n}"],
        )
        for n, statement_id in enumerate(ids)
    }


# --- the registry as Cedar -------------------------------------------------------------------


@dataclass(frozen=True)
class GrantRule:
    tool: str
    actions: tuple[str, ...]
    environments: tuple[str, ...]


@dataclass(frozen=True)
class AgentRules:
    """What the registry lets one agent do; compiled to statements on first use."""

    grants: tuple[GrantRule, ...] = ()
    memory: tuple[tuple[str, str], ...] = ()  # (store, access)
    delegates_to: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResourceFacts:
    """What a request's context defaults to when the caller leaves it out."""

    risk_class: str
    data_classes: tuple[str, ...]


@dataclass
class RegistryData:
    entities: list[dict[str, Any]]
    rules: dict[str, AgentRules]
    tools: dict[str, ResourceFacts]
    stores: dict[str, ResourceFacts]
    valid_until: datetime | None  # the next grant expiry: the compiled set is stale after it


def agent_statement_texts(agent: str, rules: AgentRules) -> dict[str, str]:
    """The registry's statements for one agent, by id."""
    principal = _uid("Agent", agent)
    texts: dict[str, str] = {}
    for grant in rules.grants:
        texts[f"registry.grant.{agent}.{grant.tool}"] = (
            f'permit(principal == {principal}, action == Action::"tool.invoke", '
            f"resource == {_uid('Tool', grant.tool)})\n"
            f"  when {{ {_set(grant.actions)}.contains(context.tool_action) &&\n"
            f"         {_set(grant.environments)}.contains(context.environment) }};"
        )
    for store, access in rules.memory:
        actions = ['Action::"memory.read"']
        if access == MemoryAccess.READ_WRITE:
            actions.append('Action::"memory.write"')
        texts[f"registry.memory.{agent}.{store}"] = (
            f"permit(principal == {principal}, action in [{', '.join(actions)}], "
            f"resource == {_uid('MemoryStore', store)});"
        )
    for target in rules.delegates_to:
        texts[f"registry.delegate.{agent}.{target}"] = (
            f'permit(principal == {principal}, action == Action::"delegate", '
            f"resource == {_uid('Agent', target)});"
        )
    return texts


def _through_slugs(model: Any, owner_field: str) -> dict[int, list[str]]:
    """``{tool_id: [data class slugs]}`` from a many-to-many table, in one query."""
    through = model.data_classes.through
    found: dict[int, list[str]] = {}
    for owner_id, slug in through.objects.values_list(f"{owner_field}_id", "dataclass__slug"):
        found.setdefault(owner_id, []).append(slug)
    return found


def load_registry(*, now: datetime | None = None) -> RegistryData:
    """Read the whole registry (a handful of queries) into Cedar entities and agent rules.

    Not scoped to a user: the decision service needs all of it. Nothing here is shown to a
    person without a selector's check.
    """
    now = now or timezone.now()
    entities: list[dict[str, Any]] = []
    for slug in Department.objects.values_list("slug", flat=True):
        entities.append({"uid": {"type": "Department", "id": slug}, "attrs": {}, "parents": []})
    for slug, dept in Team.objects.values_list("slug", "department__slug"):
        parents = [{"type": "Department", "id": dept}]
        entities.append({"uid": {"type": "Team", "id": slug}, "attrs": {}, "parents": parents})

    agents = Agent.objects.values_list(
        "slug", "department__slug", "team__slug", "owner__username", "status",
        "autonomy_level", "environments", "tags", "delegates_to",
    )  # fmt: skip
    delegations: dict[str, tuple[str, ...]] = {}
    for slug, dept, team, owner, status, autonomy, envs, tags, delegates in agents:
        parents = [{"type": "Department", "id": dept}]
        if team:
            parents.append({"type": "Team", "id": team})
        entities.append(
            {
                "uid": {"type": "Agent", "id": slug},
                "attrs": {
                    "department": dept,
                    "team": team or "",
                    "owner": owner or "",
                    "status": status,
                    "autonomy_level": int(autonomy),
                    "environments": sorted(envs or []),
                    "tags": sorted(tags or []),
                },
                "parents": parents,
            }
        )
        delegations[slug] = tuple(sorted(set(delegates or [])))

    tool_classes = _through_slugs(Tool, "tool")
    tools: dict[str, ResourceFacts] = {}
    for pk, slug, risk, actions, approval, reversible in Tool.objects.values_list(
        "pk", "slug", "risk_class", "actions", "approval_required", "reversible"
    ):
        classes = sorted(tool_classes.get(pk, []))
        tools[slug] = ResourceFacts(risk_class=risk, data_classes=tuple(classes))
        entities.append(
            {
                "uid": {"type": "Tool", "id": slug},
                "attrs": {
                    "risk_class": risk,
                    "data_classes": classes,
                    "actions": sorted(actions or []),
                    "approval_required": bool(approval),
                    "reversible": bool(reversible),
                },
                "parents": [],
            }
        )

    store_classes = _through_slugs(MemoryStore, "memorystore")
    stores: dict[str, ResourceFacts] = {}
    for pk, slug, store_class in MemoryStore.objects.values_list("pk", "slug", "store_class"):
        classes = sorted(store_classes.get(pk, []))
        stores[slug] = ResourceFacts(risk_class="", data_classes=tuple(classes))
        entities.append(
            {
                "uid": {"type": "MemoryStore", "id": slug},
                "attrs": {"store_class": store_class, "data_classes": classes},
                "parents": [],
            }
        )

    grants: dict[str, list[GrantRule]] = {}
    valid_until: datetime | None = None
    for agent, tool, actions, envs, expires_at in ToolGrant.objects.values_list(
        "agent__slug", "tool__slug", "actions", "environments", "expires_at"
    ).order_by("agent__slug", "tool__slug"):
        if expires_at is not None:
            if expires_at <= now:
                continue
            valid_until = expires_at if valid_until is None else min(valid_until, expires_at)
        grants.setdefault(agent, []).append(
            GrantRule(tool=tool, actions=tuple(actions or ()), environments=tuple(envs or ()))
        )
    memory: dict[str, list[tuple[str, str]]] = {}
    for agent, store, access in MemoryBinding.objects.values_list(
        "agent__slug", "store__slug", "access"
    ).order_by("agent__slug", "store__slug"):
        memory.setdefault(agent, []).append((store, access))

    rules = {
        slug: AgentRules(
            grants=tuple(grants.get(slug, ())),
            memory=tuple(memory.get(slug, ())),
            delegates_to=delegations.get(slug, ()),
        )
        for slug in delegations
    }
    return RegistryData(
        entities=entities, rules=rules, tools=tools, stores=stores, valid_until=valid_until
    )


def registry_fingerprint() -> tuple[Any, ...]:
    """A cheap summary (one query) that changes whenever the compiled set would.

    Row counts catch deletions; the newest ``updated_at`` or id catches edits. Grant and
    memory-binding edits always write a new AgentVersion, so its newest id covers them.
    """
    q = connection.ops.quote_name

    def table(model: Any) -> str:
        return q(model._meta.db_table)

    parts = []
    for model, newest in (
        (Agent, "updated_at"),
        (Tool, "updated_at"),
        (MemoryStore, "updated_at"),
        (Policy, "updated_at"),
        (ToolGrant, "id"),
        (MemoryBinding, "id"),
        (Team, "id"),
        (Department, "id"),
    ):
        parts.append(f"(SELECT COUNT(*) FROM {table(model)})")
        parts.append(f"(SELECT MAX({q(newest)}) FROM {table(model)})")
    for versions in (AgentVersion, PolicyVersion):
        parts.append(f"(SELECT MAX({q('id')}) FROM {table(versions)})")
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(parts))
        row = cursor.fetchone()
    return tuple(row or ())


# --- admin-written text ----------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyProblem:
    """Why a policy text cannot be saved, and where (1-based line and column)."""

    message: str
    line: int = 1
    column: int = 1

    def __str__(self) -> str:
        return f"Line {self.line}, column {self.column}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "column": self.column, "message": self.message}


class PolicyTextInvalid(Exception):
    def __init__(self, problems: list[PolicyProblem]):
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class _Chunk:
    start: int  # offset of the chunk in the whole text
    text: str  # up to and including its ';' (or to the end of the text)

    @property
    def body_offset(self) -> int:
        """Where the statement itself starts, after blank lines and comments."""
        return self.start + _skip_trivia(self.text, 0)


def _skip_trivia(text: str, i: int) -> int:
    while i < len(text):
        if text[i].isspace():
            i += 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end + 1
        else:
            break
    return i


def _split_statements(text: str) -> list[_Chunk]:
    """Cut the text after each ``;`` outside strings and comments; drop chunks that are
    only blanks and comments."""
    chunks: list[_Chunk] = []
    start = i = 0
    in_string = False
    while i < len(text):
        char = text[i]
        if in_string:
            if char == "\\":
                i += 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        elif char == ";":
            chunks.append(_Chunk(start, text[start : i + 1]))
            start = i + 1
        i += 1
    if start < len(text):
        chunks.append(_Chunk(start, text[start:]))
    return [c for c in chunks if _skip_trivia(c.text, 0) < len(c.text)]


def _line_col(text: str, offset: int) -> tuple[int, int]:
    offset = max(0, min(offset, len(text)))
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|//[^\n]*|[A-Za-z_][A-Za-z0-9_]*|::|==|!=|<=|>=|&&|\|\||\S')
_MAX_TOKENS_SCANNED = 600


def _parse_error(text: str) -> str | None:
    try:
        cedarpy.policies_to_json_str(text)
    except ValueError as exc:
        return str(exc)
    return None


def _parse_error_offset(chunk: _Chunk, message: str) -> int:
    """Where in the chunk the parser gave up: Cedar's messages carry no position, so find the
    shortest prefix that fails with the same message. Blank prefixes fail with 'unexpected
    end of input' instead, which is why this works token by token."""
    body = chunk.text
    if "unexpected end of input" in message:
        return len(body.rstrip())
    found: re.Match[str] | None = None
    for n, match in enumerate(_TOKEN.finditer(body)):
        if n >= _MAX_TOKENS_SCANNED:
            break
        if match.group().startswith("//"):
            continue
        if _parse_error(body[: match.end()]) == message:
            found = match
            break
    if found is None:
        return _skip_trivia(body, 0)
    # Some errors surface only once the statement is complete ('"alice"' is not an entity);
    # when the message quotes what is wrong, point at its last appearance up to there.
    for snippet in re.findall(r"`([^`]+)`|'([^']+)'", message):
        text = snippet[0] or snippet[1]
        index = body.rfind(text, 0, found.end())
        if index >= 0:
            return index
    return found.start()


def _problem_offset(chunk: _Chunk, message: str) -> int:
    """The best place in a chunk to point at for a validation message: the attribute, action
    or type the message names, else the start of the statement."""
    body = chunk.text
    for name in re.findall(r"`([^`]+)`", message):
        if re.fullmatch(r"policy\d+", name):
            continue
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            found = re.search(rf"(?:\.|\bhas\s+)\s*{re.escape(name)}\b", body)
            if found:
                return found.end() - len(name)
        index = body.find(name)
        if index >= 0:
            return index
    return _skip_trivia(body, 0)


_FOR_ACTION = re.compile(r'^(?P<base>.*) for Action::"(?P<action>[^"]+)"$')
_MISSING_ATTR = re.compile(r"^attribute `(?P<attr>\w+)` on entity type `(?P<type>\w+)` not found$")
_MISSING_CONTEXT = re.compile(
    r'^attribute `(?P<attr>\w+)` in context for Action::"(?P<action>[^"]+)" not found$'
)


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" Did you mean `{close[0]}`?" if close else ""


_ALL_ACTIONS = 5


def _humane(messages: list[str], body: str = "") -> list[str]:
    """Fold Cedar's one-message-per-action (or per-type) repetitions into one message each,
    and say how to fix the common mistakes."""
    by_base: dict[str, list[str]] = {}
    types_by_attr: dict[str, list[str]] = {}
    order: list[tuple[str, str]] = []
    for message in messages:
        message = re.sub(r"^for policy `[^`]*`, ", "", message)
        if match := _MISSING_CONTEXT.match(message):
            message = (
                f'the context has no attribute `{match["attr"]}` for Action::"{match["action"]}"'
            )
        if match := _FOR_ACTION.match(message):
            base = match["base"]
            if base not in by_base:
                order.append(("action", base))
            by_base.setdefault(base, []).append(match["action"])
        elif match := _MISSING_ATTR.match(message):
            attr = match["attr"]
            if attr not in types_by_attr:
                order.append(("attr", attr))
            types_by_attr.setdefault(attr, []).append(match["type"])
        elif ("plain", message) not in order:
            order.append(("plain", message))
    out = []
    for kind, value in order:
        if kind == "action":
            actions = by_base[value]
            where = (
                "for every action"
                if len(set(actions)) >= _ALL_ACTIONS
                else "for " + ", ".join(sorted(set(actions)))
            )
            text = f"{value} ({where})."
            if optional := re.search(r"optional attribute `(\w+)`", value):
                attr = optional[1]
                text += f" Check it first, e.g. `context has {attr} && context.{attr} > 1000`."
            if missing := re.search(r"context has no attribute `(\w+)`", value):
                text += _did_you_mean(missing[1], ATTRIBUTES["Context"])
            out.append(text)
        elif kind == "attr":
            missing_on = sorted(set(types_by_attr[value]))
            having = sorted(
                t for t, attrs in ATTRIBUTES.items() if value in attrs and t != "Context"
            )
            if not having and value in ATTRIBUTES["Context"]:
                out.append(
                    f"`{value}` is not an attribute of {', '.join(missing_on)}; it is in the "
                    f"request's context: write `context.{value}`."
                )
            elif having and re.search(rf"\bprincipal\s*\.\s*{value}\b", body):
                out.append(
                    f"agents have no attribute `{value}`; {', '.join(having)} "
                    f"{'has' if len(having) == 1 else 'have'} it: e.g. "
                    f"`resource is {having[0]} && resource.{value} …`."
                )
            elif having:
                out.append(
                    f"attribute `{value}` is not defined on {', '.join(missing_on)}. Narrow the "
                    f"type first, e.g. `resource is {having[0]} && resource.{value} …`, or name "
                    "the action in the scope."
                )
            else:
                known = {a for attrs in ATTRIBUTES.values() for a in attrs}
                out.append(f"no entity has an attribute `{value}`." + _did_you_mean(value, known))
        else:
            out.append(value if value.endswith(".") else value + ".")
    return out


def parse_policy_text(text: str, *, slug: str, origin: str = Origin.ADMIN) -> list[Statement]:
    """An admin's policy text as statements with their ids, or PolicyTextInvalid saying what
    is wrong and where. Validated against the schema: a policy that names an attribute, type
    or action Tether does not have is refused, not left to fail at decision time."""
    if len(text) > POLICY_TEXT_MAX:
        raise PolicyTextInvalid(
            [PolicyProblem(f"The policy is longer than {POLICY_TEXT_MAX} characters.")]
        )
    chunks = _split_statements(text)
    if not chunks:
        raise PolicyTextInvalid(
            [PolicyProblem("Write at least one permit or forbid statement ending in ';'.")]
        )
    if len(chunks) > POLICY_STATEMENTS_MAX:
        raise PolicyTextInvalid(
            [
                PolicyProblem(
                    f"A policy may hold at most {POLICY_STATEMENTS_MAX} statements; this one "
                    f"has {len(chunks)}. Split it into several policies."
                )
            ]
        )

    def at(chunk: _Chunk, offset_in_chunk: int, message: str) -> PolicyProblem:
        line, column = _line_col(text, chunk.start + offset_in_chunk)
        return PolicyProblem(message, line, column)

    if _parse_error(text) is not None:
        problems = []
        for chunk in chunks:
            message = _parse_error(chunk.text)
            if message is not None:
                offset = _parse_error_offset(chunk, message)
                hint = ""
                if "end of input" in message and not chunk.text.rstrip().endswith(";"):
                    hint = " Does the statement end in ';'?"
                problems.append(at(chunk, offset, f"Syntax error: {message}.{hint}"))
        raise PolicyTextInvalid(problems or [PolicyProblem(f"Syntax error: {_parse_error(text)}.")])

    parsed = json.loads(cedarpy.policies_to_json_str(text))
    static: dict[str, Any] = parsed.get("staticPolicies", {})
    templates: dict[str, Any] = parsed.get("templates", {})
    count = len(static) + len(templates)
    if count != len(chunks):  # the splitter and Cedar disagree: do not guess at positions
        chunks = [_Chunk(0, text)] * count

    def chunk_of(policy_id: str) -> _Chunk:
        n = int(policy_id.removeprefix("policy") or 0)
        return chunks[n] if n < len(chunks) else chunks[0]

    if templates:
        raise PolicyTextInvalid(
            [
                at(
                    chunk_of(pid),
                    _skip_trivia(chunk_of(pid).text, 0),
                    "Templates (?principal, ?resource) are not supported here; name the agent, "
                    "or leave the scope open and test attributes in a when clause.",
                )
                for pid in sorted(templates)
            ]
        )

    result = cedarpy.validate_policies(text, schema())
    if not result.validation_passed:
        grouped: dict[str, list[str]] = {}
        for error in result.errors:
            grouped.setdefault(error.policy_id or "policy0", []).append(error.error)
        problems = []
        for pid in sorted(grouped, key=lambda p: int(p.removeprefix("policy") or 0)):
            chunk = chunk_of(pid)
            for message in _humane(grouped[pid], chunk.text):
                problems.append(at(chunk, _problem_offset(chunk, message), message))
        raise PolicyTextInvalid(problems)

    ids = statement_ids(slug, len(static))
    statements = []
    for n in range(len(static)):
        est = static[f"policy{n}"]
        chunk = chunks[n]
        body = chunk.text[_skip_trivia(chunk.text, 0) :].strip()
        statements.append(
            Statement(
                id=ids[n],
                effect=est["effect"],
                origin=origin,
                text=body,
                est=est,
                policy=slug,
                line=_line_col(text, chunk.body_offset)[0],
            )
        )
    return statements


def statement_ids(slug: str, count: int) -> list[str]:
    """``slug`` for a one-statement policy; ``slug.1``, ``slug.2``… when it has several."""
    if count == 1:
        return [slug]
    return [f"{slug}.{n}" for n in range(1, count + 1)]


def policy_set_json(statements: Iterable[Statement]) -> str:
    """The Cedar JSON of a policy set whose ids are ours (Cedar's text parser would number
    them policy0, policy1…)."""
    return json.dumps(
        {
            "staticPolicies": {s.id: s.est for s in statements},
            "templates": {},
            "templateLinks": [],
        }
    )
