"""The values Tether answers with: decisions, budgets, approvals, the permission envelope."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, cast, get_args

from .errors import ProtocolError

Disposition = Literal["allow", "deny", "modify", "ask", "defer"]
FailurePosture = Literal["fail_closed", "read_only", "fail_open"]
ApprovalStatus = Literal[
    "pending", "approved", "rejected", "changes_requested", "expired", "cancelled"
]

DISPOSITIONS: frozenset[str] = frozenset(get_args(Disposition))
FAILURE_POSTURES: frozenset[str] = frozenset(get_args(FailurePosture))
APPROVAL_STATUSES: frozenset[str] = frozenset(get_args(ApprovalStatus))

#: Tool actions that the ``read_only`` posture lets through while Tether is unreachable: the
#: same list Tether itself uses when one of its own stores is down.
READ_ACTIONS: frozenset[str] = frozenset(
    {"read", "get", "list", "search", "lookup", "query", "fetch", "view"}
)

Number = int | float


@dataclass(frozen=True)
class Budget:
    """One budget as a decision reports it; ``None`` where Tether sets no number."""

    limit: Number | None
    used: Number | None
    remaining: Number | None
    kind: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> Budget:
        if not isinstance(data, Mapping):
            raise ProtocolError(f"a budget should be an object, not {data!r}")
        return cls(
            limit=_number(data.get("limit")),
            used=_number(data.get("used")),
            remaining=_number(data.get("remaining")),
            kind=str(data["kind"]) if data.get("kind") is not None else None,
        )


@dataclass(frozen=True)
class Decision:
    """Tether's answer to one governed step.

    ``arguments`` are the arguments to call the tool with: the modified ones for ``modify``,
    the ones asked about for ``allow``. ``model`` is the model to call: a cheaper one when a
    budget degraded it. ``local`` is true for a decision this client made itself because
    Tether could not be reached (see failure postures); such a decision has no ``id``.
    """

    id: int | None
    disposition: Disposition
    reasons: tuple[str, ...] = ()
    reasoning: str = ""
    policies: tuple[str, ...] = ()
    budgets: Mapping[str, Budget] = field(default_factory=dict)
    arguments: dict[str, Any] | None = None
    model: str | None = None
    approval: dict[str, Any] | None = None
    retry_after: int | None = None
    local: bool = False

    @property
    def allowed(self) -> bool:
        """True for ``allow`` and ``modify``: the step may go ahead (as modified)."""
        return self.disposition in ("allow", "modify")

    @property
    def approval_id(self) -> str | None:
        """The approval request this decision is about (an ``ask`` names the one to wait for)."""
        value = (self.approval or {}).get("id")
        return str(value) if value else None

    @classmethod
    def from_json(cls, data: Any) -> Decision:
        if not isinstance(data, Mapping):
            raise ProtocolError("a decision should be a JSON object")
        disposition = data.get("disposition")
        if disposition not in DISPOSITIONS:
            raise ProtocolError(f"unknown disposition {disposition!r}")
        decision_id = data.get("id")
        if decision_id is not None and not isinstance(decision_id, int):
            raise ProtocolError(f"a decision id should be an integer, not {decision_id!r}")
        budgets = data.get("budgets") or {}
        arguments = data.get("arguments")
        approval = data.get("approval")
        model = data.get("model")
        retry_after = data.get("retry_after")
        if not isinstance(budgets, Mapping):
            raise ProtocolError("budgets should be an object")
        if arguments is not None and not isinstance(arguments, dict):
            raise ProtocolError("modified arguments should be an object")
        if approval is not None and not isinstance(approval, dict):
            raise ProtocolError("approval should be an object")
        if model is not None and not isinstance(model, str):
            raise ProtocolError("model should be a string")
        return cls(
            id=decision_id,
            disposition=cast(Disposition, disposition),
            reasons=_strings(data.get("reasons"), "reasons"),
            reasoning=str(data.get("reasoning") or ""),
            policies=_strings(data.get("policies"), "policies"),
            budgets={str(name): Budget.from_json(value) for name, value in budgets.items()},
            arguments=arguments,
            model=model,
            approval=approval,
            retry_after=retry_after if isinstance(retry_after, int) else None,
        )


@dataclass(frozen=True)
class Approval:
    """Where one approval request stands, as Tether tells the agent that raised it.

    ``decided`` is false while people have not answered. ``expired`` means nobody answered in
    time, and is never reported as a rejection; ``on_expiry`` says what that does to the step
    (``deny``, or ``pause``: ask again later). ``feedback`` is the approver's reason for a
    rejection or the changes they ask for. An approved request lets one step through, once
    (``used``), if it comes back before ``expires_at``.
    """

    id: str
    status: ApprovalStatus
    decided: bool
    feedback: str = ""
    approvals: int = 0
    approvals_required: int = 1
    expires_at: datetime | None = None
    on_expiry: str = "deny"
    used: bool = False
    url: str = ""

    @property
    def approved(self) -> bool:
        return self.status == "approved"

    @classmethod
    def from_json(cls, data: Any) -> Approval:
        if not isinstance(data, Mapping):
            raise ProtocolError("an approval should be a JSON object")
        approval_id, status = data.get("id"), data.get("status")
        if not isinstance(approval_id, str) or not approval_id:
            raise ProtocolError("the approval has no id")
        if status not in APPROVAL_STATUSES:
            raise ProtocolError(f"unknown approval status {status!r}")
        expires_at = None
        if isinstance(data.get("expires_at"), str):
            try:
                expires_at = datetime.fromisoformat(data["expires_at"])
            except ValueError:
                raise ProtocolError(f"unreadable expires_at {data['expires_at']!r}") from None
        return cls(
            id=approval_id,
            status=cast(ApprovalStatus, status),
            decided=bool(data.get("decided", status != "pending")),
            feedback=str(data.get("feedback") or ""),
            approvals=_count(data.get("approvals"), 0),
            approvals_required=_count(data.get("approvals_required"), 1),
            expires_at=expires_at,
            on_expiry=str(data.get("on_expiry") or "deny"),
            used=bool(data.get("used")),
            url=str(data.get("url") or ""),
        )


@dataclass(frozen=True)
class Kill:
    """The kill switch that stopped a run, as far as the client learned it.

    Pushed over the run's control socket, it names the switch, its scope and target, who
    engaged it (a person's username, or ``tether (...)`` for an automatic trigger) and why.
    Learned from a refused step instead, only ``reason`` is known (Tether's explanation).
    """

    reason: str
    kill_switch: int | None = None
    scope: str = ""
    target: str = ""
    engaged_by: str = ""
    automatic: bool = False
    engaged_at: datetime | None = None

    @classmethod
    def from_json(cls, data: Any) -> Kill:
        if not isinstance(data, Mapping):
            raise ProtocolError("a kill should be a JSON object")
        kill_switch = data.get("kill_switch")
        engaged_at = None
        if isinstance(data.get("engaged_at"), str):
            try:
                engaged_at = datetime.fromisoformat(data["engaged_at"])
            except ValueError:
                engaged_at = None  # informational only: never a reason to miss the kill
        return cls(
            reason=str(data.get("reason") or "A kill switch stopped this run."),
            kill_switch=_count(kill_switch, 0) or None,
            scope=str(data.get("scope") or ""),
            target=str(data.get("target") or ""),
            engaged_by=str(data.get("engaged_by") or ""),
            automatic=bool(data.get("automatic")),
            engaged_at=engaged_at,
        )


@dataclass(frozen=True)
class Envelope:
    """What the run may do at most, from the agent's grants when the run started.

    Tether decides every step anyway; the envelope lets an agent plan (for instance, not
    offer a model the tools it will never be allowed to use).
    """

    tools: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    memory: Mapping[str, str] = field(default_factory=dict)

    def allows_tool(self, tool: str, action: str) -> bool:
        return action in self.tools.get(tool, ())

    @classmethod
    def from_json(cls, data: Any) -> Envelope:
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ProtocolError("the envelope should be an object")
        tools = data.get("tools") or {}
        memory = data.get("memory") or {}
        if not isinstance(tools, Mapping) or not isinstance(memory, Mapping):
            raise ProtocolError("the envelope's tools and memory should be objects")
        return cls(
            tools={str(slug): _actions(entry) for slug, entry in tools.items()},
            memory={str(slug): str(access) for slug, access in memory.items()},
        )


def _actions(entry: Any) -> tuple[str, ...]:
    """A tool's entry is its list of actions, or an object with ``actions`` (and more, such as
    the grant's constraints and expiry)."""
    if isinstance(entry, Mapping):
        entry = entry.get("actions")
    return _strings(entry, "tool actions")


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise ProtocolError(f"{what} should be a list")
    return tuple(str(item) for item in value)


def _count(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _number(value: Any) -> Number | None:
    """Budgets in USD may arrive as decimal strings; counts as integers."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise ProtocolError(f"a budget figure should be a number, not {value!r}")
