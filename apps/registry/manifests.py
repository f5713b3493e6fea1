"""Manifests: the registry as YAML files that can live in git.

A manifest file holds one or more documents (``---``), each ``apiVersion: tether/v1``, a
``kind`` (Tool, MemoryStore, Agent, and the kinds other apps register: Policy, Budget),
``metadata`` (slug, name) and a ``spec`` whose keys are those of :mod:`apps.registry.snapshots`
(or of the registering app's export). The spec is declarative: a key left out means its
default (no grants, no tags, ...), except ``owner``, which left out keeps the current owner
(or makes the applying person the owner of a new object).

Applying is all or nothing. The whole file is read and checked first and every problem is
reported at once; then every document goes through the registry services in one transaction
(tools and memory stores first, then agents), so permissions, versions and audit events are
exactly those of the console and the API. Apps above the registry (policy, runtime) add their
kinds with :func:`register_kind` from their ``AppConfig.ready``, so this module never imports
them; their documents are applied after agents, in the order the apps registered. Objects whose spec already matches are not touched:
applying the same file twice changes nothing. Exporting writes every visible object back in a
fixed order and layout, so export → apply → export gives the same bytes.

YAML is read with the safe loader only, after a scan of the parser's events that refuses
aliases (the "billion laughs"), very deep nesting and too many nodes; inputs are limited in
size and in the number of documents.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import yaml
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.db.models import Model

from apps.accounts.models import Department, Team, User
from apps.common.errors import ApplicationError

from . import services
from .constants import (
    RUN_TOKEN_TTL_DEFAULT,
    AgentStatus,
    AutonomyLevel,
    FailurePosture,
    MemoryAccess,
    MemoryClass,
    PreviewFormat,
    RiskClass,
)
from .models import Agent, DataClass, MemoryStore, Tool, ToolGrant
from .snapshots import agent_spec, memory_store_spec, tool_spec, usd_number
from .validators import validate_webhook_secret, validate_webhook_url

API_VERSION = "tether/v1"
KIND_TOOL = "Tool"
KIND_MEMORY_STORE = "MemoryStore"
KIND_AGENT = "Agent"
KINDS = (KIND_TOOL, KIND_MEMORY_STORE, KIND_AGENT)  # also the order in which they are applied

MAX_MANIFEST_BYTES = 2 * 1024 * 1024
MAX_DOCUMENTS = 1000
MAX_DEPTH = 64
MAX_NODES = 250_000

CREATE = "create"
UPDATE = "update"
UNCHANGED = "unchanged"

_KEEP = object()  # "owner" left out: keep the current owner


class ManifestError(ApplicationError):
    """A manifest was refused; ``details["problems"]`` lists every problem found.

    Each problem: ``document`` (1-based, within its file), ``kind``, ``slug``, ``path`` (e.g.
    ``spec.tools[0].environments``), ``message``, ``line`` (1-based, where known) and ``file``.
    """

    code = "invalid_manifest"

    def __init__(self, problems: list[dict[str, Any]], *, message: str = "", code: str = ""):
        self.problems = problems
        super().__init__(message or _summary(problems), details={"problems": problems}, code=code)


@dataclass(frozen=True)
class PlannedChange:
    """What applying one document does: create it, update some top-level fields, or nothing."""

    kind: str
    slug: str
    action: str  # "create" | "update" | "unchanged"
    fields: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "slug": self.slug, "action": self.action, "fields": self.fields}


@dataclass
class ApplyResult:
    changes: list[PlannedChange]
    applied: bool

    def counts(self) -> dict[str, int]:
        found = {CREATE: 0, UPDATE: 0, UNCHANGED: 0}
        for change in self.changes:
            found[change.action] += 1
        return found

    def to_dict(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "counts": self.counts(),
            "changes": [change.to_dict() for change in self.changes],
        }


# --- reading YAML safely ---------------------------------------------------------------------


@dataclass
class _Document:
    file: str
    index: int  # 1-based within its file
    line: int | None
    body: Any


class _Problems:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(
        self, *, file: str = "", document: int | None = None, line: int | None = None,
        kind: str | None = None, slug: str | None = None, path: str = "", message: str,
    ) -> None:  # fmt: skip
        self.items.append(
            {
                "document": document,
                "kind": kind,
                "slug": slug,
                "path": path,
                "message": message,
                "line": line,
                "file": file,
            }
        )

    def __len__(self) -> int:
        return len(self.items)


# --- kinds other apps contribute -------------------------------------------------------------


@dataclass(frozen=True)
class ManifestContext:
    """What a registered kind's checks may consult: who applies, and what the input defines."""

    actor: User
    file_slugs: dict[str, set[str]]  # kind -> slugs defined anywhere in the input


@dataclass(frozen=True)
class ManifestKind:
    """A kind of document defined by an app above the registry (``kind: Policy``, ``Budget``).

    - ``spec``: key -> (type, default), as the registry's own specs (types: text,
      text_or_null, bool, int, int_or_null, number, text_list, object);
    - ``current(slug)``: (the object, its spec in export form) or (None, None);
    - ``hidden(actor, slug)``: the slug exists but lies outside the actor's scope;
    - ``check(entry, context)``: (path, message) for every problem found before writing;
    - ``apply(actor, entry, instance)``: create (instance None) or update, through services;
    - ``export(user)``: (slug, name, spec) of every object the user may see, by slug;
    - ``api_view``: the URL name of an object's API detail (kwarg ``slug``).
    """

    kind: str
    spec: dict[str, tuple[str, Any]]
    current: Callable[[str], tuple[Any, dict[str, Any] | None]]
    hidden: Callable[[User, str], bool]
    check: Callable[[ManifestEntry, ManifestContext], list[tuple[str, str]]]
    apply: Callable[[User, ManifestEntry, Any], None]
    export: Callable[[Any], list[tuple[str, str, dict[str, Any]]]]
    api_view: str


_REGISTERED: dict[str, ManifestKind] = {}


def register_kind(kind: ManifestKind) -> None:
    """Add (or replace) a kind; called from the owning app's ``AppConfig.ready``."""
    if kind.kind in KINDS:
        raise ValueError(f"{kind.kind} is one of the registry's own kinds.")
    _REGISTERED[kind.kind] = kind


def kinds() -> tuple[str, ...]:
    """Every kind a manifest may hold, in the order they are applied and exported."""
    return (*KINDS, *_REGISTERED)


def api_view_name(kind: str) -> str:
    """The URL name of an object's API detail, for the plan's ``url``."""
    registered = _REGISTERED.get(kind)
    return registered.api_view if registered else _REGISTRY_VIEWS[kind]


_REGISTRY_VIEWS = {
    KIND_AGENT: "registry-api:agent-detail",
    KIND_TOOL: "registry-api:tool-detail",
    KIND_MEMORY_STORE: "registry-api:memory-store-detail",
}


def _summary(problems: list[dict[str, Any]]) -> str:
    if not problems:
        return "The manifest was refused."
    if len(problems) == 1:
        return _describe_problem(problems[0]) + " Nothing was applied."
    return (
        f"The manifest has {len(problems)} problems; nothing was applied. First: "
        + _describe_problem(problems[0])
    )


def _describe_problem(problem: dict[str, Any]) -> str:
    """``tools.yaml:19: document 2 (Tool t1) spec.input_schema: message``."""
    file, line = problem.get("file"), problem.get("line")
    place = f"{file}:{line}" if file and line else file or (f"line {line}" if line else "")
    where = [f"{place}:"] if place else []
    if problem.get("document"):
        where.append(f"document {problem['document']}")
    if problem.get("kind") and problem.get("slug"):
        where.append(f"({problem['kind']} {problem['slug']})")
    if problem.get("path"):
        where.append(f"{problem['path']}:")
    elif where and not where[-1].endswith(":"):
        where[-1] += ":"
    message = problem["message"]
    if message and message[-1] not in ".?!":
        message += "."
    return " ".join([*where, message])


def describe_problem(problem: dict[str, Any]) -> str:
    """One line a person can act on, for command output and logs."""
    return _describe_problem(problem)


def _line_of(exc: Exception, text: str) -> int | None:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is not None:
        return int(mark.line) + 1
    position = getattr(exc, "position", None)  # yaml.reader.ReaderError
    if isinstance(position, int):
        return text.count("\n", 0, position) + 1
    return None


def _event_line(event: yaml.Event) -> int | None:
    return event.start_mark.line + 1 if event.start_mark is not None else None


def _scan(text: str, file: str, problems: _Problems) -> list[int | None] | None:
    """Walk the parser's events (no objects are built) to refuse what the loader should never
    see: aliases, absurd nesting, too many nodes or documents. Returns each document's line."""
    starts: list[int | None] = []
    depth = nodes = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.DocumentStartEvent):
                starts.append(_event_line(event))
                if len(starts) > MAX_DOCUMENTS:
                    problems.add(
                        file=file, line=_event_line(event),
                        message=f"Too many documents: at most {MAX_DOCUMENTS} in one manifest.",
                    )  # fmt: skip
                    return None
            elif isinstance(event, yaml.AliasEvent):
                problems.add(
                    file=file, document=len(starts) or None, line=_event_line(event),
                    message=f"YAML aliases (*{event.anchor}) are not accepted in manifests; "
                    "write the value out in full.",
                )  # fmt: skip
                return None
            elif isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    problems.add(
                        file=file, document=len(starts) or None, line=_event_line(event),
                        message=f"Nested more than {MAX_DEPTH} levels deep.",
                    )  # fmt: skip
                    return None
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            if isinstance(event, yaml.NodeEvent):
                nodes += 1
                if nodes > MAX_NODES:
                    problems.add(
                        file=file, line=_event_line(event),
                        message=f"Too many values: at most {MAX_NODES} in one manifest.",
                    )  # fmt: skip
                    return None
    except yaml.YAMLError as exc:
        problems.add(
            file=file, line=_line_of(exc, text), message=f"Not valid YAML: {_yaml_message(exc)}"
        )
        return None
    return starts


def _yaml_message(exc: Exception) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        parts = [exc.context or "", exc.problem or ""]
        return "; ".join(p for p in parts if p) + "."
    return (str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__) + "."


def _load(sources: Sequence[tuple[str, str]], problems: _Problems) -> list[_Document]:
    documents: list[_Document] = []
    for file, text in sources:
        size = len(text.encode("utf-8", "replace"))
        if size > MAX_MANIFEST_BYTES:
            problems.add(
                file=file,
                message=f"The manifest is {size / 1024 / 1024:.1f} MiB; at most "
                f"{MAX_MANIFEST_BYTES // 1024 // 1024} MiB is accepted.",
            )
            continue
        starts = _scan(text, file, problems)
        if starts is None:
            continue
        try:
            bodies = list(yaml.safe_load_all(text))
        except yaml.YAMLError as exc:
            problems.add(
                file=file, line=_line_of(exc, text), message=f"Not valid YAML: {_yaml_message(exc)}"
            )
            continue
        except (ValueError, RecursionError, OverflowError) as exc:  # e.g. a 5,000-digit integer
            problems.add(file=file, message=f"Not valid YAML: {str(exc)[:200]}")
            continue
        for position, body in enumerate(bodies):
            if body is None:  # an empty document, e.g. a trailing "---"
                continue
            line = starts[position] if position < len(starts) else None
            documents.append(_Document(file=file, index=position + 1, line=line, body=body))
    return documents


# --- the shape of a document -----------------------------------------------------------------

# Each spec key: (type, default). Key order is the snapshots' order. ``REQUIRED`` has no default.
REQUIRED = object()

_PATH_BLOCK = {"action": ("text", ""), "contact": ("text", ""), "notes": ("text", "")}
# The shutdown path also names the safe-state webhook the kill switch calls. Its signing secret
# is write-only: never exported, and left out it keeps the agent's current one.
_SHUTDOWN_BLOCK = {**_PATH_BLOCK, "webhook": ("text", ""), "webhook_secret": ("text", _KEEP)}
_GRANT = {
    "tool": ("text", REQUIRED),
    "actions": ("text_list", REQUIRED),
    "environments": ("text_list", REQUIRED),
    "constraints": ("object", {}),
    "expires_at": ("datetime", None),
}
_BINDING = {"store": ("text", REQUIRED), "access": ("text", MemoryAccess.READ.value)}

AGENT_SPEC: dict[str, tuple[str, Any]] = {
    "mission": ("text", REQUIRED),
    "owner": ("owner", _KEEP),
    "department": ("text", REQUIRED),
    "team": ("text_or_null", None),
    "business_process": ("text", ""),
    "status": ("text", AgentStatus.DRAFT.value),
    "autonomy_level": ("autonomy", AutonomyLevel.L1.value),
    "environments": ("text_list", []),
    "model_family": ("text", ""),
    "default_model": ("text", ""),
    "providers": ("text_list", []),
    "failure_posture": ("text", FailurePosture.CLOSED.value),
    "shutdown": ("shutdown_block", None),
    "rollback": ("path_block", None),
    "tags": ("text_list", []),
    "knowledge_base_version": ("text", ""),
    "parameters": ("object", {}),
    "run_token_ttl_seconds": ("int", RUN_TOKEN_TTL_DEFAULT),
    "delegates_to": ("text_list", []),
    "instructions": ("text", ""),
    "tools": ("grants", []),
    "memory": ("bindings", []),
}
TOOL_SPEC: dict[str, tuple[str, Any]] = {
    "description": ("text", REQUIRED),
    "owner": ("owner", _KEEP),
    "risk_class": ("text", RiskClass.LOW.value),
    "actions": ("text_list", REQUIRED),
    "capabilities": ("text", ""),
    "prohibitions": ("text", ""),
    "data_classes": ("text_list", []),
    "rate_limit_per_minute": ("int_or_null", None),
    "cost_per_call_usd": ("number", 0),
    "approval_required": ("bool", False),
    "reversible": ("bool", True),
    "rollback_hint": ("text", ""),
    "preview_format": ("preview_format", ""),
    "blast_radius": ("object", {}),
    "systems": ("text_list", []),
    "downstream_tools": ("text_list", []),
    "audit_event": ("text", ""),
    "input_schema": ("object", REQUIRED),
    "output_schema": ("object", {}),
}
MEMORY_STORE_SPEC: dict[str, tuple[str, Any]] = {
    "description": ("text", ""),
    "owner": ("owner", _KEEP),
    "store_class": ("text", REQUIRED),
    "retention_days": ("int_or_null", None),
    "data_classes": ("text_list", []),
}
SPECS = {KIND_AGENT: AGENT_SPEC, KIND_TOOL: TOOL_SPEC, KIND_MEMORY_STORE: MEMORY_STORE_SPEC}
_MODELS: dict[str, type[Model]] = {
    KIND_AGENT: Agent,
    KIND_TOOL: Tool,
    KIND_MEMORY_STORE: MemoryStore,
}
_TOP_KEYS = ("apiVersion", "kind", "metadata", "spec")
_METADATA_KEYS = ("slug", "name")


def _what(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, datetime | date):
        return "a date"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__} value"


def _key_text(key: Any) -> str:
    return key if isinstance(key, str) else repr(key)


def _unknown_keys(value: dict[Any, Any], allowed: Iterable[str]) -> list[Any]:
    allowed = list(allowed)
    return [key for key in value if key not in allowed]


def _check_json(value: Any, path: str) -> tuple[str, str] | None:
    """JSON data only: text keys, finite numbers, no dates or binary (which JSON cannot hold)."""
    if value is None or isinstance(value, bool | int | str):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, "Numbers must be finite.")
    if isinstance(value, list):
        for i, item in enumerate(value):
            error = _check_json(item, f"{path}[{i}]")
            if error:
                return error
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return path, f"Keys must be text; put {key!r} in quotes."
            error = _check_json(item, f"{path}.{key}")
            if error:
                return error
        return None
    hint = " Put it in quotes." if isinstance(value, date) else ""
    return path, f"{_what(value).capitalize()} is not JSON data.{hint}"


def _bad_string(value: Any, path: str) -> tuple[str, str] | None:
    """Text the database cannot store (NUL, lone surrogates), anywhere in a document."""
    if isinstance(value, str):
        if "\x00" in value:
            return path, "Text may not contain NUL characters."
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path, "Text contains characters that are not valid Unicode."
        return None
    if isinstance(value, list):
        for i, item in enumerate(value):
            error = _bad_string(item, f"{path}[{i}]")
            if error:
                return error
    if isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{_key_text(key)}" if path else _key_text(key)
            error = _bad_string(key, path) or _bad_string(item, child)
            if error:
                return error
    return None


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    else:
        raise ValueError
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def iso(moment: datetime | None) -> str | None:
    """The form snapshots use for moments (UTC, ``Z``)."""
    return moment.isoformat().replace("+00:00", "Z") if moment else None


@dataclass
class ManifestEntry:
    """One well-formed document, its desired spec in snapshot form, and what it refers to."""

    doc: _Document
    kind: str
    slug: str
    name: str | None  # None: missing or not text (reported)
    spec: dict[str, Any]
    refs: dict[str, Any] = field(default_factory=dict)


class _Reader:
    """Checks each document's shape and turns it into an ManifestEntry, reporting every problem."""

    def __init__(self, problems: _Problems) -> None:
        self.problems = problems

    def problem(
        self, doc: _Document, kind: str | None, slug: str | None, path: str, message: str
    ) -> None:
        self.problems.add(
            file=doc.file, document=doc.index, line=doc.line, kind=kind, slug=slug, path=path,
            message=message,
        )  # fmt: skip

    def read(self, doc: _Document) -> ManifestEntry | None:
        body = doc.body
        if not isinstance(body, dict):
            self.problem(
                doc, None, None, "",
                f"Each document must be a mapping with {', '.join(_TOP_KEYS)}; got {_what(body)}.",
            )  # fmt: skip
            return None
        bad = _bad_string(body, "")
        if bad:
            self.problem(doc, None, None, *bad)
            return None
        kind = body.get("kind")
        metadata = body.get("metadata")
        slug = metadata.get("slug") if isinstance(metadata, dict) else None
        slug = slug if isinstance(slug, str) else None
        kind_ok = isinstance(kind, str) and kind in kinds()
        shown_kind = kind if kind_ok else None
        if "apiVersion" not in body and ("departments" in body or "users" in body):
            self.problem(
                doc, None, None, "",
                "This looks like the demo's people file (departments and users), which is not a "
                "manifest; `manage.py load_demo` reads it.",
            )  # fmt: skip
            return None
        for key in _unknown_keys(body, _TOP_KEYS):
            self.problem(
                doc, shown_kind, slug, _key_text(key),
                f"Unknown key {_key_text(key)!r}; a document has {', '.join(_TOP_KEYS)}.",
            )  # fmt: skip
        if body.get("apiVersion") != API_VERSION:
            got = body.get("apiVersion")
            self.problem(
                doc, shown_kind, slug, "apiVersion",
                f"Expected apiVersion {API_VERSION!r}"
                + (f", got {got!r}." if "apiVersion" in body else ", which is missing."),
            )  # fmt: skip
        if not kind_ok:
            self.problem(
                doc, None, slug, "kind",
                (f"Unknown kind {kind!r}" if "kind" in body else "kind is missing")
                + f"; use one of {', '.join(kinds())}.",
            )  # fmt: skip
        name = self._metadata(doc, shown_kind, slug, metadata)
        spec_body = body.get("spec")
        if not isinstance(spec_body, dict):
            self.problem(
                doc, shown_kind, slug, "spec",
                "spec is missing."
                if spec_body is None
                else f"spec must be a mapping, got {_what(spec_body)}.",
            )  # fmt: skip
        if not kind_ok or slug is None:
            return None
        entry = ManifestEntry(doc=doc, kind=str(kind), slug=slug, name=name, spec={})
        if isinstance(spec_body, dict):
            self._spec(entry, spec_body)
        return entry

    def _metadata(
        self, doc: _Document, kind: str | None, slug: str | None, metadata: Any
    ) -> str | None:
        if not isinstance(metadata, dict):
            self.problem(
                doc, kind, None, "metadata",
                "metadata is missing; give a slug and a name."
                if metadata is None else f"metadata must be a mapping, got {_what(metadata)}.",
            )  # fmt: skip
            return None
        for key in _unknown_keys(metadata, _METADATA_KEYS):
            self.problem(
                doc, kind, slug, f"metadata.{_key_text(key)}",
                f"Unknown key {_key_text(key)!r}; metadata has slug and name.",
            )  # fmt: skip
        for key in _METADATA_KEYS:
            if key not in metadata:
                self.problem(doc, kind, slug, f"metadata.{key}", f"metadata.{key} is required.")
            elif not isinstance(metadata[key], str):
                self.problem(
                    doc, kind, slug, f"metadata.{key}",
                    f"Expected text, got {_what(metadata[key])}.",
                )  # fmt: skip
        name = metadata.get("name")
        return name if isinstance(name, str) else None

    def _spec(self, entry: ManifestEntry, body: dict[Any, Any]) -> None:
        fields = SPECS[entry.kind] if entry.kind in SPECS else _REGISTERED[entry.kind].spec
        for key in _unknown_keys(body, fields):
            self.problem(
                entry.doc, entry.kind, entry.slug, f"spec.{_key_text(key)}",
                f"Unknown key {_key_text(key)!r}. The keys of a {entry.kind} spec are "
                f"{', '.join(fields)}.",
            )  # fmt: skip
        for key, (type_, default) in fields.items():
            path = f"spec.{key}"
            if key not in body:
                if default is REQUIRED:
                    self.problem(entry.doc, entry.kind, entry.slug, path, f"{key} is required.")
                    continue
                entry.spec[key] = _default(type_, default)
                continue
            entry.spec[key] = self._value(entry, path, type_, body[key])

    def _value(self, entry: ManifestEntry, path: str, type_: str, value: Any) -> Any:
        """Check one value's type and return it in snapshot form (None when it is wrong)."""

        def fail(message: str) -> None:
            self.problem(entry.doc, entry.kind, entry.slug, path, message)

        if type_ == "text":
            if isinstance(value, str):
                return value
            hint = "; put it in quotes" if isinstance(value, int | float | date) else ""
            fail(f"Expected text, got {_what(value)}{hint}.")
        elif type_ in ("text_or_null", "owner"):
            if value is None or isinstance(value, str):
                return value
            fail(f"Expected text or null, got {_what(value)}.")
        elif type_ == "text_list":
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return list(value)
            fail(f"Expected a list of text, got {_what(value)}.")
        elif type_ == "int_or_null":
            if value is None or (isinstance(value, int) and not isinstance(value, bool)):
                return value
            fail(f"Expected a whole number or null, got {_what(value)}.")
        elif type_ == "int":
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            fail(f"Expected a whole number, got {_what(value)}.")
        elif type_ == "bool":
            if isinstance(value, bool):
                return value
            fail(f"Expected true or false, got {_what(value)}.")
        elif type_ == "number":
            if isinstance(value, int | float) and not isinstance(value, bool):
                if isinstance(value, float) and not math.isfinite(value):
                    fail("Numbers must be finite.")
                    return None
                return value
            hint = "; write it without quotes" if isinstance(value, str) else ""
            fail(f"Expected a number, got {_what(value)}{hint}.")
        elif type_ == "autonomy":
            if isinstance(value, str) and value.upper() in {f"L{n}" for n in AutonomyLevel.values}:
                return int(value[1:])
            if (
                isinstance(value, int)
                and not isinstance(value, bool)
                and value in AutonomyLevel.values
            ):
                return value
            fail(f"Expected an autonomy level L0-L4 (or 0-4), got {value!r}.")
        elif type_ == "preview_format":
            if isinstance(value, str) and value in ("", *PreviewFormat.values):
                return value
            shown = f"{value!r}" if isinstance(value, str) else _what(value)
            fail(
                f"Unknown preview format {shown}; use {', '.join(PreviewFormat.values)}, or '' "
                "when the agent supplies none."
            )
        elif type_ == "object":
            if not isinstance(value, dict):
                fail(f"Expected a mapping, got {_what(value)}.")
                return None
            error = _check_json(value, path)
            if error:
                self.problem(entry.doc, entry.kind, entry.slug, *error)
                return None
            return value
        elif type_ == "datetime":
            if value is None:
                return None
            try:
                return iso(_as_datetime(value))
            except (ValueError, TypeError, OverflowError):
                fail(f"Expected a date and time such as 2026-06-30T00:00:00Z, got {value!r}.")
        elif type_ == "path_block":
            return self._block(entry, path, value, _PATH_BLOCK)
        elif type_ == "shutdown_block":
            block = self._block(entry, path, value, _SHUTDOWN_BLOCK)
            if block is not None:
                secret = block.pop("webhook_secret")  # _KEEP when left out, None when not text
                if isinstance(secret, str):
                    entry.refs["shutdown_webhook_secret"] = secret
                if not block["webhook"]:  # as the snapshot has it: only when set
                    del block["webhook"]
            return block
        elif type_ == "grants":
            return self._list_of(entry, path, value, _GRANT, "tool")
        elif type_ == "bindings":
            return self._list_of(entry, path, value, _BINDING, "store")
        return None

    def _block(
        self, entry: ManifestEntry, path: str, value: Any, shape: dict[str, tuple[str, Any]]
    ) -> dict[str, Any] | None:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            self.problem(
                entry.doc, entry.kind, entry.slug, path, f"Expected a mapping, got {_what(value)}."
            )
            return None
        for key in _unknown_keys(value, shape):
            self.problem(
                entry.doc, entry.kind, entry.slug, f"{path}.{_key_text(key)}",
                f"Unknown key {_key_text(key)!r}; use {', '.join(shape)}.",
            )  # fmt: skip
        result: dict[str, Any] = {}
        for key, (type_, default) in shape.items():
            if key not in value:
                if default is REQUIRED:
                    self.problem(
                        entry.doc, entry.kind, entry.slug, f"{path}.{key}", f"{key} is required."
                    )
                    continue
                result[key] = _copy(default)
            else:
                result[key] = self._value(entry, f"{path}.{key}", type_, value[key])
        return result

    def _list_of(
        self,
        entry: ManifestEntry,
        path: str,
        value: Any,
        shape: dict[str, tuple[str, Any]],
        key: str,
    ) -> list[dict[str, Any]]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(
                entry.doc, entry.kind, entry.slug, path, f"Expected a list, got {_what(value)}."
            )
            return []
        items: list[dict[str, Any]] = []
        seen: set[str] = set()
        for i, item in enumerate(value):
            checked = self._block(entry, f"{path}[{i}]", item, shape)
            if checked is None:
                continue
            name = checked.get(key)
            if isinstance(name, str):
                if name in seen:
                    self.problem(
                        entry.doc, entry.kind, entry.slug, f"{path}[{i}].{key}",
                        f"{name!r} is listed more than once.",
                    )  # fmt: skip
                seen.add(name)
            checked["_path"] = f"{path}[{i}]"
            items.append(checked)
        return sorted(items, key=lambda item: str(item.get(key)))


def _default(type_: str, default: Any) -> Any:
    if type_ in ("path_block", "shutdown_block"):
        return {key: value for key, (_, value) in _PATH_BLOCK.items()}
    return default if default is _KEEP else _copy(default)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


# --- checks against the model and the database ------------------------------------------------

_AGENT_MODEL_FIELDS = {
    "mission": "spec.mission",
    "business_process": "spec.business_process",
    "status": "spec.status",
    "autonomy_level": "spec.autonomy_level",
    "environments": "spec.environments",
    "model_family": "spec.model_family",
    "default_model": "spec.default_model",
    "providers": "spec.providers",
    "failure_posture": "spec.failure_posture",
    "tags": "spec.tags",
    "knowledge_base_version": "spec.knowledge_base_version",
    "parameters": "spec.parameters",
    "run_token_ttl_seconds": "spec.run_token_ttl_seconds",
    "delegates_to": "spec.delegates_to",
    "instructions": "spec.instructions",
}
_TOOL_MODEL_FIELDS = {
    key: f"spec.{key}"
    for key in (
        "description", "risk_class", "actions", "capabilities", "prohibitions",
        "rate_limit_per_minute", "cost_per_call_usd", "approval_required", "reversible",
        "rollback_hint",
        "preview_format", "blast_radius", "systems", "downstream_tools", "audit_event",
        "input_schema", "output_schema",
    )
}  # fmt: skip
_STORE_MODEL_FIELDS = {
    key: f"spec.{key}" for key in ("description", "store_class", "retention_days")
}


def _model_values(entry: ManifestEntry) -> dict[str, tuple[Any, str]]:
    """The entry's plain model fields, each with the manifest path it came from."""
    values: dict[str, tuple[Any, str]] = {
        "name": (entry.name, "metadata.name"),
        "slug": (entry.slug, "metadata.slug"),
    }
    spec = entry.spec
    if entry.kind == KIND_AGENT:
        for model_field, path in _AGENT_MODEL_FIELDS.items():
            values[model_field] = (spec.get(model_field), path)
        for block, parts in (("shutdown", _SHUTDOWN_BLOCK), ("rollback", _PATH_BLOCK)):
            for part in parts:
                value = (spec.get(block) or {}).get(part, "")
                values[f"{block}_{part}"] = (value, f"spec.{block}.{part}")
        if "shutdown_webhook_secret" in entry.refs:
            values["shutdown_webhook_secret"] = (
                entry.refs["shutdown_webhook_secret"],
                "spec.shutdown.webhook_secret",
            )
        else:
            del values["shutdown_webhook_secret"]  # kept as it is
    else:
        mapping = _TOOL_MODEL_FIELDS if entry.kind == KIND_TOOL else _STORE_MODEL_FIELDS
        for model_field, path in mapping.items():
            values[model_field] = (spec.get(model_field), path)
        if entry.kind == KIND_TOOL:
            # As the service stores it; None (skipped) when it is wrong, which is reported by
            # _check_cost_per_call in the service's own words.
            values["cost_per_call_usd"] = (_cost_per_call(entry), "spec.cost_per_call_usd")
    return values


def _cost_per_call(entry: ManifestEntry) -> Decimal | None:
    """A Tool's cost per call as a Decimal of the number written (``Decimal(str(0.1))`` is
    exactly 0.1, where ``Decimal(0.1)`` is not), parsed as the service parses it; None when the
    value is of the wrong type or out of range."""
    value = entry.spec.get("cost_per_call_usd")
    if value is None:
        return None
    try:
        return services.cost_per_call(Decimal(str(value)))
    except ApplicationError:
        return None


def _check_cost_per_call(entry: ManifestEntry, reader: _Reader) -> None:
    """What the service refuses of a cost per call (negative, too large), reported at its key."""
    value = entry.spec.get("cost_per_call_usd")
    if value is None:  # missing takes the default; a wrong type was reported already
        return
    try:
        services.cost_per_call(Decimal(str(value)))
    except ApplicationError as exc:
        for message in (exc.details or {}).get("cost_per_call_usd", [exc.message]):
            reader.problem(entry.doc, entry.kind, entry.slug, "spec.cost_per_call_usd", message)


def _check_model_fields(entry: ManifestEntry, reader: _Reader) -> None:
    """Run the model's own field validators (lengths, choices, JSON Schema, tags, ...)."""
    model = _MODELS[entry.kind]
    values = _model_values(entry)
    instance = model(**{name: value for name, (value, _) in values.items() if value is not None})
    # None means the type was wrong (already reported) or the field is nullable and empty.
    skip = [
        f.name
        for f in model._meta.get_fields()
        if f.name not in values or values[f.name][0] is None
    ]
    try:
        instance.clean_fields(exclude=skip)
    except ValidationError as exc:
        for name, messages in exc.message_dict.items():
            path = values[name][1] if name in values else f"spec.{name}"
            for message in messages:
                reader.problem(entry.doc, entry.kind, entry.slug, path, message)


def _check_shutdown_webhook(entry: ManifestEntry, reader: _Reader) -> None:
    """What the service checks of the safe-state webhook, reported with its path: an http(s)
    URL, and a signing secret given here or already set on the agent."""

    def fail(path: str, message: str) -> None:
        reader.problem(entry.doc, entry.kind, entry.slug, path, message)

    url = (entry.spec.get("shutdown") or {}).get("webhook")
    secret = entry.refs.get("shutdown_webhook_secret")  # None: left out, the current one kept
    if isinstance(secret, str) and secret:
        try:
            validate_webhook_secret(secret)
        except ValidationError as exc:
            fail("spec.shutdown.webhook_secret", exc.messages[0])
    if not isinstance(url, str) or not url:
        return
    try:
        URLValidator()(url)  # the model's own check, reported already if it fails
    except ValidationError:
        pass
    else:
        try:
            validate_webhook_url(url)  # and http(s) only
        except ValidationError as exc:
            fail("spec.shutdown.webhook", exc.messages[0])
    kept = Agent.objects.filter(slug=entry.slug).exclude(shutdown_webhook_secret="")
    if secret == "" or (secret is None and not kept.exists()):
        fail(
            "spec.shutdown.webhook_secret",
            "Set a signing secret for the safe-state webhook: give webhook_secret here, or set "
            "it on the agent's page first (left out, the current one is kept).",
        )


def _check_grant_fields(entry: ManifestEntry, grant: dict[str, Any], reader: _Reader) -> None:
    """The grant model's own validators (actions, environments, constraints)."""
    values = {key: grant.get(key) for key in ("actions", "environments", "constraints")}
    probe = ToolGrant(**{key: value for key, value in values.items() if value is not None})
    skip = ["agent", "tool", "expires_at", *[key for key, value in values.items() if value is None]]
    try:
        probe.clean_fields(exclude=skip)
    except ValidationError as exc:
        for name, messages in exc.message_dict.items():
            for message in messages:
                reader.problem(
                    entry.doc, entry.kind, entry.slug, f"{grant['_path']}.{name}", message
                )


class _Catalogue:
    """What the file and the database hold, for resolving references by slug."""

    def __init__(self, actor: User, entries: list[ManifestEntry]) -> None:
        self.file_tools = {e.slug: e for e in entries if e.kind == KIND_TOOL}
        self.file_stores = {e.slug: e for e in entries if e.kind == KIND_MEMORY_STORE}
        agents = [e for e in entries if e.kind == KIND_AGENT]
        tool_slugs = {g.get("tool") for e in agents for g in e.spec.get("tools") or []}
        tool_slugs |= {s for e in self.file_tools.values() for s in _downstream_of(e)}
        store_slugs = {m.get("store") for e in agents for m in e.spec.get("memory") or []}
        tool_slugs = {s for s in tool_slugs if isinstance(s, str)}
        store_slugs = {s for s in store_slugs if isinstance(s, str)}
        self.db_tools = {
            t.slug: t
            for t in Tool.objects.for_user(actor).filter(slug__in=tool_slugs - set(self.file_tools))
        }
        self.db_stores = {
            s.slug: s
            for s in MemoryStore.objects.for_user(actor).filter(
                slug__in=store_slugs - set(self.file_stores)
            )
        }
        usernames = {e.spec.get("owner") for e in entries if isinstance(e.spec.get("owner"), str)}
        self.users = {u.username: u for u in User.objects.filter(username__in=usernames)}
        self.departments = {d.slug: d for d in Department.objects.all()}
        self.teams = {t.slug: t for t in Team.objects.select_related("department")}
        self.data_classes = set(DataClass.objects.values_list("slug", flat=True))

    def tool_actions(self, slug: str) -> list[str] | None:
        if slug in self.file_tools:
            actions = self.file_tools[slug].spec.get("actions")
            return actions if isinstance(actions, list) else None
        tool = self.db_tools.get(slug)
        return list(tool.actions) if tool else None

    def has_tool(self, slug: str) -> bool:
        return slug in self.file_tools or slug in self.db_tools

    def store_class(self, slug: str) -> str | None:
        if slug in self.file_stores:
            return self.file_stores[slug].spec.get("store_class")
        store = self.db_stores.get(slug)
        return store.store_class if store else None


def _check_references(entry: ManifestEntry, catalogue: _Catalogue, reader: _Reader) -> None:
    spec = entry.spec

    def fail(path: str, message: str) -> None:
        reader.problem(entry.doc, entry.kind, entry.slug, path, message)

    owner = spec.get("owner")
    if isinstance(owner, str):
        if owner in catalogue.users:
            entry.refs["owner"] = catalogue.users[owner]
        else:
            fail(
                "spec.owner", f"No user {owner!r}. Use an existing username, or null for no owner."
            )
    elif owner is None:
        entry.refs["owner"] = None

    if entry.kind in (KIND_TOOL, KIND_MEMORY_STORE):
        unknown = [dc for dc in spec.get("data_classes") or [] if dc not in catalogue.data_classes]
        if unknown:
            fail(
                "spec.data_classes",
                f"Unknown data class(es): {', '.join(unknown)}. Known: "
                f"{', '.join(sorted(catalogue.data_classes))}.",
            )
        if entry.kind == KIND_TOOL:
            _check_downstream_tools(entry, catalogue, fail)
        return

    department = catalogue.departments.get(spec.get("department") or "")
    if isinstance(spec.get("department"), str) and department is None:
        fail(
            "spec.department",
            f"No department {spec['department']!r}. Known: "
            f"{', '.join(sorted(catalogue.departments)) or 'none yet'}.",
        )
    entry.refs["department"] = department
    team_slug = spec.get("team")
    entry.refs["team"] = None
    if isinstance(team_slug, str):
        team = catalogue.teams.get(team_slug)
        if team is None:
            fail("spec.team", f"No team {team_slug!r}.")
        elif department is not None and team.department_id != department.pk:
            fail("spec.team", f"Team {team_slug!r} is not in department {department.slug!r}.")
        entry.refs["team"] = team

    agent_envs = spec.get("environments") if isinstance(spec.get("environments"), list) else None
    for grant in spec.get("tools") or []:
        path = grant["_path"]
        tool_slug = grant.get("tool")
        if not isinstance(tool_slug, str):
            continue
        actions = catalogue.tool_actions(tool_slug)
        if actions is None and tool_slug not in catalogue.file_tools:
            fail(
                f"{path}.tool",
                f"No tool {tool_slug!r}: define it in this file or register it first.",
            )
        elif actions is not None and isinstance(grant.get("actions"), list):
            extra = [a for a in grant["actions"] if a not in actions]
            if extra:
                fail(
                    f"{path}.actions",
                    f"Tool {tool_slug!r} has no action(s) {', '.join(extra)}; it offers "
                    f"{', '.join(actions)}.",
                )
        envs = grant.get("environments")
        if isinstance(envs, list):
            if not envs:
                fail(f"{path}.environments", "Grant the tool in at least one environment.")
            elif agent_envs is not None:
                outside = [e for e in envs if e not in agent_envs]
                if outside:
                    fail(
                        f"{path}.environments",
                        f"The agent may not run in {', '.join(outside)}; it runs in "
                        f"{', '.join(agent_envs) or 'no environment'}. Add the environment to "
                        "spec.environments or narrow the grant.",
                    )
        _check_grant_fields(entry, grant, reader)

    for binding in spec.get("memory") or []:
        path = binding["_path"]
        store_slug = binding.get("store")
        access = binding.get("access")
        if isinstance(access, str) and access not in MemoryAccess.values:
            fail(f"{path}.access", f"Access must be one of {', '.join(MemoryAccess.values)}.")
        if not isinstance(store_slug, str):
            continue
        store_class = catalogue.store_class(store_slug)
        if store_class is None and store_slug not in catalogue.file_stores:
            fail(
                f"{path}.store",
                f"No memory store {store_slug!r}: define it in this file or register it first.",
            )
        elif store_class == MemoryClass.FORBIDDEN and access == MemoryAccess.READ_WRITE:
            fail(f"{path}.access", f"{store_slug!r} is a forbidden store: agents may only read it.")


def _downstream_of(entry: ManifestEntry) -> list[str]:
    """The tools a Tool entry sets off (nothing when the value was of the wrong type)."""
    wanted = entry.spec.get("downstream_tools")
    return [slug for slug in wanted if isinstance(slug, str)] if isinstance(wanted, list) else []


def _check_downstream_tools(
    entry: ManifestEntry, catalogue: _Catalogue, fail: Callable[[str, str], None]
) -> None:
    """What the service checks of one tool, for the whole input at once: each downstream tool
    is defined in the input or registered, listed once, and not the tool itself."""
    wanted = _downstream_of(entry)
    path = "spec.downstream_tools"
    if entry.slug in wanted:
        fail(path, f"{entry.slug!r} cannot set itself off; list the other tools a call starts.")
    if repeated := sorted({slug for slug in wanted if wanted.count(slug) > 1}):
        fail(path, f"List each tool once: {', '.join(repeated)} appears more than once.")
    unknown = [
        slug for slug in dict.fromkeys(wanted)
        if slug != entry.slug and not catalogue.has_tool(slug)
    ]  # fmt: skip
    if unknown:
        fail(
            path,
            f"No tool {', '.join(repr(s) for s in unknown)}: define it in this file or register "
            "it first.",
        )


# --- plan and apply --------------------------------------------------------------------------


def _strip(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in item.items() if k != "_path"} for item in items]


def _desired(entry: ManifestEntry, current: dict[str, Any] | None, actor: User) -> dict[str, Any]:
    """The spec as it will read after applying, to compare with the snapshot of now."""
    desired = dict(entry.spec)
    if entry.kind in _REGISTERED:
        return desired
    if desired.get("owner") is _KEEP:
        desired["owner"] = current["owner"] if current is not None else actor.get_username()
    if entry.kind == KIND_AGENT:
        desired["tools"] = _strip(desired.get("tools") or [])
        desired["memory"] = _strip(desired.get("memory") or [])
    else:
        desired["data_classes"] = sorted(desired.get("data_classes") or [])
    if entry.kind == KIND_TOOL:
        cost = _cost_per_call(entry)  # checked already: never None here
        desired["cost_per_call_usd"] = usd_number(cost if cost is not None else 0)
    return desired


def _current(entry: ManifestEntry) -> tuple[Model | None, dict[str, Any] | None]:
    if entry.kind in _REGISTERED:
        return _REGISTERED[entry.kind].current(entry.slug)
    if entry.kind == KIND_AGENT:
        agent = (
            Agent.objects.select_related("owner", "department", "team")
            .filter(slug=entry.slug)
            .first()
        )
        return agent, agent_spec(agent) if agent else None
    if entry.kind == KIND_TOOL:
        tool = Tool.objects.select_related("owner").filter(slug=entry.slug).first()
        return tool, tool_spec(tool) if tool else None
    store = MemoryStore.objects.select_related("owner").filter(slug=entry.slug).first()
    return store, memory_store_spec(store) if store else None


def _plan(entry: ManifestEntry, actor: User) -> tuple[PlannedChange, Model | None]:
    instance, current = _current(entry)
    if instance is None or current is None:
        return PlannedChange(entry.kind, entry.slug, CREATE, []), None
    desired = _desired(entry, current, actor)
    # A new webhook secret changes the shutdown block, though neither plan nor export shows it.
    new_secret = isinstance(instance, Agent) and entry.refs.get("shutdown_webhook_secret") not in (
        None,
        instance.shutdown_webhook_secret,
    )
    changed = [
        key
        for key in desired
        if desired[key] != current.get(key) or (key == "shutdown" and new_secret)
    ]
    if entry.name != getattr(instance, "name", entry.name):
        changed.insert(0, "name")
    return PlannedChange(
        entry.kind, entry.slug, UPDATE if changed else UNCHANGED, changed
    ), instance


def _apply_order(entries: list[ManifestEntry]) -> list[ManifestEntry]:
    """Kinds in their order. Among tools, one that another tool of the input sets off goes
    first, so the service finds every downstream tool registered; tools that set each other
    off keep the file's order, and the links to tools not yet written wait (see ``_run``)."""
    order = kinds()
    ordered = sorted(entries, key=lambda e: order.index(e.kind))
    pending = [e for e in ordered if e.kind == KIND_TOOL]
    in_input = {e.slug for e in pending}
    placed: set[str] = set()
    tools: list[ManifestEntry] = []
    while pending:
        ready = [
            e for e in pending
            if all(s in placed or s not in in_input or s == e.slug for s in _downstream_of(e))
        ]  # fmt: skip
        ready = ready or pending[:1]  # a cycle: break it at the first tool in the file
        tools.extend(ready)
        placed.update(e.slug for e in ready)
        pending = [e for e in pending if e.slug not in placed]
    return tools + [e for e in ordered if e.kind != KIND_TOOL]


def _apply_entry(entry: ManifestEntry, instance: Model | None, actor: User) -> Tool | None:
    """Write one document through the services. Returns a tool whose links to downstream tools
    wait for tools of the input that are written after it (tools that set each other off)."""
    if entry.kind in _REGISTERED:
        _REGISTERED[entry.kind].apply(actor, entry, instance)
        return None
    spec = entry.spec
    data: dict[str, Any] = {"name": entry.name}
    if instance is None:
        data["slug"] = entry.slug
    if "owner" in entry.refs:
        data["owner"] = entry.refs["owner"]
    elif instance is None:
        data["owner"] = actor

    if entry.kind == KIND_TOOL:
        data.update({key: spec[key] for key in _TOOL_MODEL_FIELDS})
        # A Decimal of the number as written, so 0.1 stays exactly 0.1 (the service rounds it).
        data["cost_per_call_usd"] = Decimal(str(spec["cost_per_call_usd"]))
        data["data_classes"] = spec.get("data_classes") or []
        wanted = data["downstream_tools"]
        registered = set(
            Tool.objects.for_user(actor).filter(slug__in=wanted).values_list("slug", flat=True)
        )
        waiting = [slug for slug in wanted if slug not in registered]
        if waiting:
            data["downstream_tools"] = [slug for slug in wanted if slug in registered]
        if isinstance(instance, Tool):
            tool = services.tool_update(actor=actor, tool=instance, data=data)
        else:
            tool = services.tool_create(actor=actor, data=data)
        return tool if waiting else None
    if entry.kind == KIND_MEMORY_STORE:
        data.update({key: spec[key] for key in _STORE_MODEL_FIELDS})
        data["data_classes"] = spec.get("data_classes") or []
        if isinstance(instance, MemoryStore):
            services.memory_store_update(actor=actor, store=instance, data=data)
        else:
            services.memory_store_create(actor=actor, data=data)
        return None

    for model_field, (value, _) in _model_values(entry).items():
        if model_field not in ("name", "slug"):
            data[model_field] = value
    data["department"] = entry.refs["department"]
    data["team"] = entry.refs.get("team")
    grants = [
        {
            "tool": Tool.objects.get(slug=g["tool"]),
            "actions": g["actions"],
            "environments": g["environments"],
            "constraints": g["constraints"],
            "expires_at": _as_datetime(g["expires_at"]) if g["expires_at"] else None,
        }
        for g in spec.get("tools") or []
    ]
    memory = [
        {"store": MemoryStore.objects.get(slug=m["store"]), "access": m["access"]}
        for m in spec.get("memory") or []
    ]
    services.agent_apply(
        actor=actor, agent=instance if isinstance(instance, Agent) else None, data=data,
        grants=grants, memory=memory,
    )  # fmt: skip
    return None


def _refused(entry: ManifestEntry, exc: ApplicationError) -> ManifestError:
    """A service's refusal, placed at the document that caused it."""
    problem = {
        "document": entry.doc.index, "kind": entry.kind, "slug": entry.slug, "path": "",
        "message": exc.message, "line": entry.doc.line, "file": entry.doc.file,
    }  # fmt: skip
    error = ManifestError([problem], code=exc.code)
    error.http_status = exc.http_status
    return error


def _check_visibility(entry: ManifestEntry, actor: User, reader: _Reader) -> None:
    """An existing object the actor cannot see is not described, only refused."""
    objects: Any = _MODELS[entry.kind]._default_manager
    if objects.filter(slug=entry.slug).exists() and not (
        objects.for_user(actor).filter(slug=entry.slug).exists()
    ):
        reader.problem(
            entry.doc, entry.kind, entry.slug, "metadata.slug",
            f"The {entry.kind} slug {entry.slug!r} is already taken outside your scope.",
        )  # fmt: skip


def _read_all(
    actor: User, sources: Sequence[tuple[str, str]], problems: _Problems
) -> list[ManifestEntry]:
    documents = _load(sources, problems)
    reader = _Reader(problems)
    entries = [entry for doc in documents if (entry := reader.read(doc)) is not None]

    seen: dict[tuple[str, str], ManifestEntry] = {}
    for entry in entries:
        key = (entry.kind, entry.slug)
        if key in seen:
            first = seen[key].doc
            where = f"{first.file} " if first.file and first.file != entry.doc.file else ""
            reader.problem(
                entry.doc, entry.kind, entry.slug, "metadata.slug",
                f"{entry.kind} {entry.slug!r} is defined twice; first in {where}document "
                f"{first.index}.",
            )  # fmt: skip
        else:
            seen[key] = entry
    if not documents and not len(problems):
        problems.add(message="The manifest holds no documents.")
    if not entries:
        return entries

    # Every check runs on every document (values of the wrong type were set to None and are
    # skipped), so one pass reports everything that is wrong with the file.
    catalogue = _Catalogue(actor, entries)
    context = ManifestContext(
        actor=actor,
        file_slugs={kind: {e.slug for e in entries if e.kind == kind} for kind in kinds()},
    )
    for entry in entries:
        registered = _REGISTERED.get(entry.kind)
        if registered is not None:
            for path, message in registered.check(entry, context):
                reader.problem(entry.doc, entry.kind, entry.slug, path, message)
            if registered.hidden(actor, entry.slug):
                reader.problem(
                    entry.doc, entry.kind, entry.slug, "metadata.slug",
                    f"The {entry.kind} slug {entry.slug!r} is already taken outside your scope.",
                )  # fmt: skip
            continue
        _check_model_fields(entry, reader)
        if entry.kind == KIND_AGENT:
            _check_shutdown_webhook(entry, reader)
        if entry.kind == KIND_TOOL:
            _check_cost_per_call(entry, reader)
        _check_references(entry, catalogue, reader)
        _check_visibility(entry, actor, reader)
    return entries


def _run(
    actor: User, sources: Sequence[tuple[str, str]], dry_run: bool, *, plan_only: bool = False
) -> ApplyResult:
    """Read and check everything, plan, then apply through the services in one transaction.

    A dry run really applies and then rolls back, so it also reports what only the services
    can tell (permissions, rules across objects); ``plan_only`` stops after the plan.
    """
    problems = _Problems()
    with transaction.atomic():
        entries = _read_all(actor, sources, problems)
        if len(problems):
            raise ManifestError(problems.items)
        ordered = _apply_order(entries)
        plans = {id(entry): _plan(entry, actor) for entry in ordered}
        waiting: list[tuple[ManifestEntry, Tool]] = []
        for entry in [] if plan_only else ordered:
            change, instance = plans[id(entry)]
            if change.action == UNCHANGED:
                continue
            try:
                tool = _apply_entry(entry, instance, actor)
            except ApplicationError as exc:
                raise _refused(entry, exc) from exc
            if tool is not None:
                waiting.append((entry, tool))
        for entry, tool in waiting:  # every tool of the input is written now
            try:
                services.tool_update(
                    actor=actor, tool=tool, data={"downstream_tools": _downstream_of(entry)}
                )
            except ApplicationError as exc:
                raise _refused(entry, exc) from exc
        if dry_run or plan_only:
            transaction.set_rollback(True)
    # Report in the file's order, which is how a person reads the plan.
    changes = [plans[id(entry)][0] for entry in entries]
    return ApplyResult(changes=changes, applied=not (dry_run or plan_only))


def manifest_apply(*, actor: User, text: str, dry_run: bool = False) -> ApplyResult:
    """Validate a whole manifest, then apply it in one transaction (or only plan: ``dry_run``).

    Raises :class:`ManifestError` listing every problem; nothing is written then.
    """
    return _run(actor, [("", text)], dry_run)


def manifest_apply_files(
    *, actor: User, files: Sequence[tuple[str, str]], dry_run: bool = False
) -> ApplyResult:
    """Like :func:`manifest_apply` for several files (name, text) applied as one."""
    return _run(actor, files, dry_run)


def manifest_plan(*, actor: User, files: Sequence[tuple[str, str]]) -> ApplyResult:
    """Check the files and say what applying them would change, without calling the services
    (cheaper than a dry run, which also tries the writes)."""
    return _run(actor, files, dry_run=True, plan_only=True)


# --- export ----------------------------------------------------------------------------------

# JSON Schema keywords in the order people write them; other keys follow alphabetically.
_SCHEMA_KEY_ORDER = [
    "$schema", "$id", "$ref", "title", "description", "type", "format", "enum", "const",
    "default", "examples", "minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum",
    "multipleOf", "minLength", "maxLength", "pattern", "minItems", "maxItems", "uniqueItems",
    "items", "prefixItems", "contains", "minProperties", "maxProperties", "required",
    "properties", "patternProperties", "additionalProperties", "propertyNames", "dependentRequired",
    "dependentSchemas", "allOf", "anyOf", "oneOf", "not", "if", "then", "else", "$defs",
    "definitions",
]  # fmt: skip
_SCHEMA_RANK = {key: rank for rank, key in enumerate(_SCHEMA_KEY_ORDER)}
_SUBSCHEMA = {
    "items", "contains", "additionalProperties", "propertyNames", "not", "if", "then", "else",
    "unevaluatedItems", "unevaluatedProperties",
}  # fmt: skip
_SCHEMA_MAPS = {"properties", "patternProperties", "dependentSchemas", "$defs", "definitions"}
_SCHEMA_LISTS = {"allOf", "anyOf", "oneOf", "prefixItems"}


def _ordered_json(value: Any) -> Any:
    """Plain JSON with keys in alphabetical order, whatever order the database kept."""
    if isinstance(value, dict):
        return {key: _ordered_json(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_ordered_json(item) for item in value]
    return value


def _ordered_schema(schema: Any) -> Any:
    """A JSON Schema with keywords in their usual order, so exports read well and never depend
    on the database (PostgreSQL's jsonb reorders keys; SQLite keeps them)."""
    if not isinstance(schema, dict):
        return _ordered_json(schema)
    result: dict[str, Any] = {}
    for key in sorted(schema, key=lambda k: (_SCHEMA_RANK.get(k, len(_SCHEMA_RANK)), k)):
        value = schema[key]
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            result[key] = {name: _ordered_schema(value[name]) for name in sorted(value)}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            result[key] = [_ordered_schema(item) for item in value]
        elif key in _SUBSCHEMA:
            result[key] = _ordered_schema(value)
        else:
            result[key] = _ordered_json(value)
    return result


class ManifestDumper(yaml.SafeDumper):
    """Block style, literal blocks for multi-line text, and never anchors or aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


def _represent_list(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.SequenceNode:
    """Short lists of plain values on one line (``environments: [dev, prod]``), the rest as
    blocks; the choice depends only on the content, so the output stays byte-stable."""
    plain = all(
        item is None
        or isinstance(item, bool | int | float)
        or (isinstance(item, str) and "\n" not in item)
        for item in value
    )
    short = sum(len(str(item)) + 2 for item in value) <= 60
    return dumper.represent_sequence(
        "tag:yaml.org,2002:seq", value, flow_style=bool(plain and short)
    )


ManifestDumper.add_representer(str, _represent_str)
ManifestDumper.add_representer(list, _represent_list)


def dump_documents(documents: list[dict[str, Any]]) -> str:
    if not documents:
        return ""
    return yaml.dump_all(
        documents, Dumper=ManifestDumper, sort_keys=False, allow_unicode=True,
        default_flow_style=False, width=100, explicit_start=True,
    )  # fmt: skip


def _document(kind: str, slug: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"slug": slug, "name": name},
        "spec": spec,
    }


def manifest_export(*, user: Any) -> str:
    """Every tool, memory store and agent the user may see, then every object of the registered
    kinds (policies, budgets) they may see, as one multi-document manifest."""
    documents = []
    tools = Tool.objects.for_user(user).select_related("owner").prefetch_related("data_classes")
    for tool in tools.order_by("slug"):
        spec = tool_spec(tool)
        spec["input_schema"] = _ordered_schema(spec["input_schema"])
        spec["output_schema"] = _ordered_schema(spec["output_schema"])
        documents.append(_document(KIND_TOOL, tool.slug, tool.name, spec))
    stores = (
        MemoryStore.objects.for_user(user).select_related("owner").prefetch_related("data_classes")
    )
    for store in stores.order_by("slug"):
        documents.append(
            _document(KIND_MEMORY_STORE, store.slug, store.name, memory_store_spec(store))
        )
    agents = Agent.objects.for_user(user).select_related("owner", "department", "team")
    for agent in agents.order_by("slug"):
        spec = agent_spec(agent)
        spec["parameters"] = _ordered_json(spec["parameters"])
        for grant in spec["tools"]:
            grant["constraints"] = _ordered_json(grant["constraints"])
        documents.append(_document(KIND_AGENT, agent.slug, agent.name, spec))
    for registered in _REGISTERED.values():
        for slug, name, spec in registered.export(user):
            documents.append(_document(registered.kind, slug, name, spec))
    return dump_documents(documents)
