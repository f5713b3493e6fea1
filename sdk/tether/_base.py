"""What the sync and async clients share: configuration, reading answers, retry delays, the
failure postures and the fields of a run. Everything here is free of I/O."""

from __future__ import annotations

import json
import logging
import math
import os
import random
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Self, cast
from urllib.parse import quote

import httpx

from ._version import __version__
from .errors import (
    ApiError,
    ApprovalExpired,
    ApprovalRejected,
    ApprovalRequired,
    BadRequest,
    ChangesRequested,
    ConfigurationError,
    Deferred,
    Denied,
    Forbidden,
    ProtocolError,
    RunEnded,
    RunKilled,
    RunTokenRejected,
    TetherUnavailable,
    Unauthorized,
)
from .models import (
    FAILURE_POSTURES,
    READ_ACTIONS,
    Approval,
    Decision,
    Envelope,
    FailurePosture,
    Kill,
)

logger = logging.getLogger("tether")

API_PREFIX = "/api/v1/runtime/"
APPROVALS_PREFIX = "/api/v1/approvals/"
USER_AGENT = f"tether-sdk/{__version__}"
AGENT_KEY_PREFIX = "tth_agent_"
DEFAULT_TTL_SECONDS = 900.0
#: Heartbeats go out at this fraction of the run token's lifetime, so two can fail in a row
#: before the token expires.
HEARTBEAT_FRACTION = 1 / 3
MIN_HEARTBEAT_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 10.0
OUTCOME_MAX = 100
#: Waiting on a ``defer`` that names no time, and the most one wait may last.
DEFER_DELAY = 1.0
MAX_DEFER_DELAY = 60.0
#: One long-poll for an approval waits at most this long (Tether allows up to 30 s); waiting
#: longer is done by asking again. Below ``MIN_POLL_SECONDS`` left, the state is read instead.
WAIT_POLL_SECONDS = 25.0
MIN_POLL_SECONDS = 1.0
#: The run's control socket, where Tether pushes a kill (docs/killswitch-agents.md).
CONTROL_PATH = "/ws/agents/runs/{run_id}/control/"
#: Its close codes that end it for good: no valid run token, not this run's, killed.
CLOSE_NOT_AUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_KILLED = 4410
#: The most closing the control socket waits for Tether's side of the close.
CONTROL_CLOSE_SECONDS = 1.0
#: Reconnecting waits about ``backoff * 2**attempt`` too, but never less than this.
MIN_CONTROL_BACKOFF = 0.25
KILLED_REASON = "A kill switch stopped this run."
_OFF = frozenset({"0", "false", "no", "off"})
_ON = frozenset({"", "1", "true", "yes", "on"})

# The run governed functions ask: set by ``client.run(...)`` for the block it wraps.
current_run: ContextVar[RunBase | None] = ContextVar("tether_current_run", default=None)


def resolve_config(url: str | None, agent_key: str | None) -> tuple[str, str]:
    """The URL and agent key from the arguments, else ``TETHER_URL`` / ``TETHER_AGENT_KEY``."""
    url = url or os.environ.get("TETHER_URL", "")
    agent_key = agent_key or os.environ.get("TETHER_AGENT_KEY", "")
    if not url:
        raise ConfigurationError("no Tether URL: pass url= or set TETHER_URL")
    if not url.startswith(("http://", "https://")):
        raise ConfigurationError(f"the Tether URL should start with http:// or https://: {url!r}")
    if not agent_key:
        raise ConfigurationError("no agent key: pass agent_key= or set TETHER_AGENT_KEY")
    if not agent_key.startswith(AGENT_KEY_PREFIX):
        raise ConfigurationError(
            f"the agent key should start with {AGENT_KEY_PREFIX!r}; "
            "issue one on the agent's page in Tether (a personal token will not do)"
        )
    return url.rstrip("/"), agent_key


def check_settings(timeout: float, retries: int, backoff: float, defer_timeout: float) -> None:
    if defer_timeout < 0:
        raise ConfigurationError("defer_timeout cannot be negative")
    if timeout <= 0:
        raise ConfigurationError("timeout must be positive")
    if retries < 0:
        raise ConfigurationError("retries cannot be negative")
    if backoff < 0:
        raise ConfigurationError("backoff cannot be negative")


def base_url(url: str) -> str:
    return url + API_PREFIX


def control_url(url: str, run_id: str) -> str:
    """The run's control socket: ws:// for an http:// Tether, wss:// for https://."""
    scheme, _, rest = url.partition("://")
    socket_scheme = "wss" if scheme == "https" else "ws"
    return f"{socket_scheme}://{rest}{CONTROL_PATH.format(run_id=quote(run_id, safe=''))}"


def control_wanted(control: bool | None, custom_transport: bool) -> bool:
    """Whether a run holds its control socket: ``control=`` when given, else not when
    ``TETHER_CONTROL`` says off (0, false, no, off), else unless the client was handed a
    custom HTTP transport (a test's: the socket could not follow it)."""
    if control is not None:
        return bool(control)
    setting = os.environ.get("TETHER_CONTROL", "").strip().lower()
    if setting in _OFF:
        return False
    if setting not in _ON:
        raise ConfigurationError(f"TETHER_CONTROL should be 1 or 0 (on or off), not {setting!r}")
    return not custom_transport


def control_headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def control_refused(run_id: str, status: int) -> bool:
    """The handshake was answered ``status``: True (give up) for a 4xx, a Tether without
    the socket; a 5xx (a proxy while Tether restarts) is retried."""
    if status >= 500:
        return False
    logger.warning(
        "run %s: Tether refused the control socket (HTTP %s); a kill reaches this run at its "
        "next check only",
        run_id,
        status,
    )
    return True


def default_headers() -> dict[str, str]:
    return {"User-Agent": USER_AGENT, "Accept": "application/json"}


def approval_url(url: str, approval_id: str, *, wait: bool) -> str:
    """Absolute, so it leaves the runtime API's base URL the HTTP client was made with."""
    path = f"{url}{APPROVALS_PREFIX}{quote(str(approval_id), safe='')}/"
    return path + "wait/" if wait else path


def approval_wait(value: float | bool) -> tuple[bool, float | None]:
    """``wait_for_approval=`` read as (wait at all?, for at most how many seconds; None: until
    the request is decided, which it is by its deadline at the latest)."""
    if value is True:
        return True, None
    if value is False:
        return False, None
    if isinstance(value, int | float) and math.isfinite(value) and value >= 0:
        return value > 0, float(value)
    raise ConfigurationError(
        f"wait_for_approval takes True, False or a number of seconds, not {value!r}"
    )


def wait_deadline(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if not isinstance(timeout, int | float) or not math.isfinite(timeout) or timeout < 0:
        raise ConfigurationError(f"timeout should be a number of seconds or None, not {timeout!r}")
    return time.monotonic() + timeout


def next_poll(deadline: float | None) -> float | None:
    """How long the next long-poll may wait; None: just read the state (almost out of time)."""
    if deadline is None:
        return WAIT_POLL_SECONDS
    remaining = deadline - time.monotonic()
    return min(WAIT_POLL_SECONDS, remaining) if remaining >= MIN_POLL_SECONDS else None


def past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def poll_params(poll: float | None) -> dict[str, str] | None:
    return None if poll is None else {"timeout": f"{poll:.3f}"}


def long_poll_timeout(timeout: float, poll: float | None) -> httpx.Timeout:
    """The client's timeouts, reading given the poll's length on top."""
    return httpx.Timeout(timeout, read=timeout + (poll or 0.0))


def encode(body: Mapping[str, Any]) -> bytes:
    try:
        return json.dumps(body, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise TypeError(f"cannot send this to Tether as JSON: {exc}") from exc


def request_headers(token: str, idempotency_key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    return headers


def new_idempotency_key() -> str:
    """One per governed step, the same on each of its retries: Tether charges the step once."""
    return uuid.uuid4().hex


def retry_delay(backoff: float, attempt: int) -> float:
    """Exponential backoff with jitter: about ``backoff * 2**attempt``, between half and all of
    it, so that many agents retrying after the same outage do not arrive together."""
    ceiling = min(MAX_BACKOFF_SECONDS, backoff * 2.0**attempt)
    return ceiling * (0.5 + random.random() / 2)


def is_retryable(response: httpx.Response) -> bool:
    return response.status_code >= 500


def unavailable(cause: BaseException | None) -> TetherUnavailable:
    decision = Decision(
        id=None,
        disposition="deny",
        reasons=("store_unavailable",),
        reasoning=f"Tether could not be reached: {cause}" if cause else "Tether is unavailable",
        local=True,
    )
    return TetherUnavailable(decision, cause)


def run_ended(state: str | None) -> RunEnded:
    decision = Decision(
        id=None,
        disposition="deny",
        reasons=("run_not_running",),
        reasoning=f"The run is no longer running (state: {state or 'unknown'}).",
        local=True,
    )
    return RunEnded(decision, state)


def run_killed(kill: Kill, decision: Decision | None = None) -> RunKilled:
    """``RunKilled`` for a kill this client learned; a local deny when Tether said none."""
    if decision is None:
        decision = Decision(
            id=None,
            disposition="deny",
            reasons=("run_killed",),
            reasoning=kill.reason,
            local=True,
        )
    return RunKilled(decision, kill)


def read_response(response: httpx.Response) -> dict[str, Any]:
    """The JSON body of a 2xx answer; the matching exception for a 4xx."""
    data: Any
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.is_success:
        if not isinstance(data, dict):
            raise ProtocolError(f"Tether answered {response.status_code} without a JSON object")
        return data
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        code = str(error.get("code") or f"http_{response.status_code}")
        message = str(error.get("message") or response.reason_phrase)
        details = error.get("details") if isinstance(error.get("details"), dict) else {}
    else:
        code, message, details = f"http_{response.status_code}", response.reason_phrase, {}
    status = response.status_code
    if code == "run_not_running":
        state = details.get("state") if details else None
        raise run_ended(str(state) if state else None)
    error_class: type[ApiError] = {401: Unauthorized, 403: Forbidden}.get(status, ApiError)
    if status in (400, 413, 422):
        error_class = BadRequest
    raise error_class(status, code, message, details)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


@dataclass
class RunBase:
    """A run as Tether started it, and the checks it makes; see ``Run`` and ``AsyncRun``.

    ``outcome`` may be set inside the block: it is the outcome label sent when the run
    finishes normally (a failed run sends the exception's class name).
    """

    id: str
    token: str = field(repr=False)
    failure_posture: FailurePosture
    envelope: Envelope
    agent: str = ""
    version: int | None = None
    environment: str = ""
    task: str = ""
    on_behalf_of: str | None = None
    parent_run: str | None = None
    started_at: datetime | None = None
    expires_at: datetime | None = None
    url: str = ""
    state: str = "running"
    outcome: str | None = None
    #: What the run's version says to run with: ``default_model``, ``instructions``,
    #: ``knowledge_base_version``, ``parameters``. A rollback changes it for new runs at once.
    behaviour: dict[str, Any] = field(default_factory=dict)
    #: The kill switch that stopped the run, once the client knows of one (see ``on_kill``).
    kill: Kill | None = field(default=None, init=False)
    _kill_lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )
    _kill_callbacks: list[Callable[[Any], object]] = field(
        default_factory=list, init=False, repr=False, compare=False
    )
    _control_ready: bool = field(default=False, init=False, repr=False, compare=False)

    @classmethod
    def fields_from_start(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        """The constructor's keyword arguments from the answer to ``POST runs/``."""
        run = data.get("run")
        token = data.get("token")
        if not isinstance(run, dict) or not isinstance(run.get("id"), str):
            raise ProtocolError("the started run has no id")
        if not isinstance(token, str) or not token:
            raise ProtocolError("the started run has no token")
        posture = data.get("failure_posture") or "fail_closed"
        if posture not in FAILURE_POSTURES:
            # An unknown posture must not loosen anything.
            logger.warning("unknown failure posture %r; failing closed", posture)
            posture = "fail_closed"
        return {
            "id": run["id"],
            "token": token,
            "failure_posture": cast(FailurePosture, posture),
            "envelope": Envelope.from_json(data.get("envelope")),
            "agent": str(run.get("agent") or ""),
            "version": run["version"] if isinstance(run.get("version"), int) else None,
            "environment": str(run.get("environment") or ""),
            "task": str(run.get("task") or ""),
            "on_behalf_of": run.get("on_behalf_of"),
            "parent_run": run.get("parent_run"),
            "started_at": _parse_time(run.get("started_at")),
            "expires_at": _parse_time(run.get("expires_at")),
            "url": str(run.get("url") or ""),
            "state": str(run.get("state") or "running"),
            "behaviour": dict(data["behaviour"]) if isinstance(data.get("behaviour"), dict) else {},
        }

    @property
    def ended(self) -> bool:
        return self.state != "running"

    @property
    def kill_reason(self) -> str | None:
        """Why the kill switch stopped the run (None while it runs)."""
        return self.kill.reason if self.kill is not None else None

    @property
    def control_connected(self) -> bool:
        """Whether the control socket is open and Tether listens on it for this run's kill."""
        return self._control_ready

    def on_kill(self, callback: Callable[[Self], object]) -> Callable[[Self], object]:
        """Call ``callback(run)`` once when the client learns the run was killed: pushed over
        the control socket, or told by a refused step. Called at once if it is killed
        already. A sync run calls it in the control socket's thread (or the thread whose
        check was refused): keep it short and thread-safe, e.g. set a flag or cancel work.
        Exceptions it raises are logged. Usable as a decorator."""
        with self._kill_lock:
            if self.kill is None:
                self._kill_callbacks.append(callback)
                return callback
        callback(self)
        return callback

    def raise_if_killed(self) -> None:
        """Raise ``RunKilled`` if the run was killed; no request is made. Call it between the
        steps of a long tool body: a sync run cannot be interrupted otherwise."""
        if self.kill is not None:
            raise self._killed_error()

    def _killed_error(self) -> RunKilled:
        return run_killed(self.kill or Kill(reason=KILLED_REASON))

    def _mark_killed(self, kill: Kill) -> bool:
        """Record the kill, flag it and call the ``on_kill`` callbacks, the first time only
        (True then). A later, fuller account (the push names the switch) replaces a bare one."""
        with self._kill_lock:
            known = self.kill
            if known is None or (known.kill_switch is None and kill.kill_switch is not None):
                self.kill = kill
            self.state = "killed"
            callbacks, self._kill_callbacks = self._kill_callbacks, []
        if known is not None:
            return False
        self._flag_killed()
        for callback in callbacks:
            try:
                callback(self)
            except Exception:
                logger.exception("an on_kill callback of run %s failed", self.id)
        return True

    def _flag_killed(self) -> None:
        """Set the run's ``killed`` event and wake what waits on it (``Run``, ``AsyncRun``)."""

    def _after_kill_push(self) -> None:
        """What a pushed kill does beyond a refused step's (``AsyncRun`` cancels its block)."""

    def _on_control(self, raw: str | bytes) -> bool:
        """One message of the control socket; True when it is the last (the run is over)."""
        try:
            data = json.loads(raw)
        except ValueError:
            logger.warning("run %s: unreadable control message %r", self.id, raw[:200])
            return False
        if not isinstance(data, dict):
            return False
        kind = data.get("type")
        if kind == "killed":
            self._mark_killed(Kill.from_json(data))
            self._after_kill_push()
            return True
        if kind == "state":
            state = str(data.get("state") or "")
            if state == "running":
                self._control_ready = True
                return False
            if state and not self.ended:
                self.state = state  # ended some other way: later checks raise RunEnded at once
            return True
        return False  # a pong, or something newer than this client

    def _on_control_closed(self, code: int | None) -> bool:
        """The control socket closed with ``code``; True when reconnecting cannot help."""
        if code == CLOSE_KILLED:  # a killed run's token (its message, if any, came first)
            self._mark_killed(Kill(reason=KILLED_REASON))
            self._after_kill_push()
            return True
        if code in (CLOSE_NOT_AUTHENTICATED, CLOSE_NOT_FOUND):
            logger.info("run %s: the control socket refused its token (%s)", self.id, code)
            return True
        return False

    def heartbeat_interval(self) -> float:
        """A fraction of the token's lifetime, measured on Tether's own clock."""
        ttl = DEFAULT_TTL_SECONDS
        if self.started_at and self.expires_at:
            ttl = (self.expires_at - self.started_at).total_seconds()
        return max(MIN_HEARTBEAT_SECONDS, ttl * HEARTBEAT_FRACTION)

    # -- building requests ------------------------------------------------------------------

    def _path(self, action: str) -> str:
        return f"runs/{self.id}/{action}"

    def _raise_if_ended(self) -> None:
        self.raise_if_killed()
        if self.ended:
            raise run_ended(self.state)

    def _mark_ended(self, error: RunEnded) -> None:
        self.state = error.state or "ended"

    def _after_heartbeat(self, data: Mapping[str, Any]) -> None:
        self.state = str(data.get("state") or self.state)
        self.expires_at = _parse_time(data.get("expires_at")) or self.expires_at

    def _token_rejected(self, error: Unauthorized) -> RunTokenRejected | RunKilled:
        """A 401 for the run token means the run is over; later checks raise at once. Its
        code ``run_killed`` says a kill switch ended it."""
        if error.code == "run_killed":
            self._mark_killed(Kill(reason=KILLED_REASON))
            assert self.kill is not None
            return run_killed(self.kill)
        rejected = RunTokenRejected(run_ended(None).decision, error)
        self._mark_ended(rejected)
        return rejected

    @staticmethod
    def _tool_body(
        name: str,
        arguments: Mapping[str, Any],
        action: str,
        reason: str | None,
        approval: str | None = None,
        preview: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "action": "tool.invoke",
            "tool": name,
            "tool_action": action,
            "arguments": dict(arguments),
        }
        if reason is not None:
            body["reason"] = reason
        if approval is not None:
            body["approval"] = str(approval)
        if preview is not None:
            body["preview"] = dict(preview)
        return body

    @staticmethod
    def _model_body(
        model: str, input_tokens: int, output_tokens: int, cost_usd: float | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "action": "model.call",
            "model": model,
            "estimated_input_tokens": input_tokens,
            "estimated_output_tokens": output_tokens,
        }
        if cost_usd is not None:
            body["estimated_cost_usd"] = cost_usd
        return body

    @staticmethod
    def _memory_body(store: str, write: bool) -> dict[str, Any]:
        return {"action": "memory.write" if write else "memory.read", "store": store}

    @staticmethod
    def _delegate_body(agent: str) -> dict[str, Any]:
        return {"action": "delegate", "agent": agent}

    @staticmethod
    def _usage_body(
        decision: Decision | int,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float | None,
        cached_tokens: int = 0,
        provider: str = "",
    ) -> dict[str, Any] | None:
        decision_id = decision.id if isinstance(decision, Decision) else decision
        if decision_id is None:
            logger.warning("usage not reported: the decision was made locally, Tether never saw it")
            return None
        body: dict[str, Any] = {
            "decision": decision_id,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
        }
        if cost_usd is not None:
            body["cost_usd"] = cost_usd
        if cached_tokens:
            body["cached_tokens"] = cached_tokens
        if provider:
            body["provider"] = provider
        return body

    @staticmethod
    def _metrics_body(metrics: Mapping[str, float]) -> dict[str, Any] | None:
        numbers = {}
        for name, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
                logger.warning("metric %r not reported: %r is not a number", name, value)
                continue
            numbers[str(name)] = float(value)
        return {"metrics": numbers} if numbers else None

    @staticmethod
    def _finish_body(state: str, outcome: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"state": state}
        if outcome:
            body["outcome"] = outcome[:OUTCOME_MAX]
        return body

    # -- reading answers --------------------------------------------------------------------

    @staticmethod
    def _defer_delay(data: Mapping[str, Any], waited: float, limit: float) -> float | None:
        """How long to wait before asking again after a ``defer``, or None to stop waiting
        (not a defer, or waiting more would go past ``limit`` seconds in all)."""
        if data.get("disposition") != "defer":
            return None
        if "approval_expired" in (data.get("reasons") or ()):
            return None  # the same approval stays expired: asking again cannot help
        retry_after = data.get("retry_after")
        delay = float(retry_after) if isinstance(retry_after, int | float) else DEFER_DELAY
        delay = min(max(delay, 0.0), MAX_DEFER_DELAY)
        return delay if waited + delay <= limit else None

    def _settle(self, data: Mapping[str, Any], body: Mapping[str, Any]) -> Decision:
        """Turn Tether's answer into a returned decision or the matching exception."""
        decision = Decision.from_json(data)
        approval = Approval.from_json(decision.approval) if decision.approval else None
        if decision.disposition == "deny":
            if "run_killed" in decision.reasons:
                self._mark_killed(Kill(reason=decision.reasoning or KILLED_REASON))
                assert self.kill is not None
                raise run_killed(self.kill, decision)
            if "run_not_running" in decision.reasons:
                error = RunEnded(decision, None)
                self._mark_ended(error)
                raise error
            for reason, error_class in _APPROVAL_REFUSALS.items():
                if reason in decision.reasons:
                    raise error_class(decision, approval=approval)
            raise Denied(decision)
        if decision.disposition == "ask":
            raise ApprovalRequired(decision, approval=approval)
        if decision.disposition == "defer":
            if "approval_expired" in decision.reasons:  # the gate pauses expired requests
                raise ApprovalExpired(decision, approval=approval)
            raise Deferred(decision)
        return self._complete(decision, body)

    @staticmethod
    def _still_pending(
        asked: ApprovalRequired, approval: Approval, waited: float | None
    ) -> ApprovalRequired:
        """What to raise after a wait that ran out: the step still waits for people."""
        how_long = "" if waited is None else f" after waiting {waited:g} s"
        return ApprovalRequired(
            asked.decision,
            f"approval {approval.id} is still pending{how_long} "
            f"({approval.approvals} of {approval.approvals_required} approvals)",
            approval=approval,
        )

    @staticmethod
    def _approval_to_wait_for(asked: ApprovalRequired) -> str:
        if asked.approval_id is None:
            raise ProtocolError("Tether asked for an approval without naming the request")
        return asked.approval_id

    @staticmethod
    def _complete(decision: Decision, body: Mapping[str, Any]) -> Decision:
        """Fill in what to call with: the asked-about arguments / model unless Tether changed
        them."""
        changes: dict[str, Any] = {}
        if decision.arguments is None and body["action"] == "tool.invoke":
            changes["arguments"] = dict(body["arguments"])
        if decision.model is None and body["action"] == "model.call":
            changes["model"] = body["model"]
        return replace(decision, **changes) if changes else decision

    def _fallback(self, error: TetherUnavailable, body: Mapping[str, Any]) -> Decision:
        """Tether could not be reached: the agent's failure posture decides, never the error.

        ``fail_closed`` raises; ``read_only`` lets tool calls whose action is a read
        (``READ_ACTIONS``) through and nothing else; ``fail_open`` lets everything through.
        Both allowances are logged as warnings. Tether applies the same rules when one of its
        own stores is down.
        """
        action = str(body["action"])
        what = action if action != "tool.invoke" else f"{body['tool']}:{body['tool_action']}"
        posture = self.failure_posture
        is_read = action == "tool.invoke" and body["tool_action"] in READ_ACTIONS
        if posture == "fail_open" or (posture == "read_only" and is_read):
            logger.warning(
                "Tether unreachable (%s); %s allowed by the %s posture of run %s",
                error.cause,
                what,
                posture,
                self.id,
            )
            allowed = Decision(
                id=None,
                disposition="allow",
                reasons=("store_unavailable",),
                reasoning=f"Tether could not be reached; allowed by the {posture} posture.",
                local=True,
            )
            return self._complete(allowed, body)
        logger.warning(
            "Tether unreachable (%s); %s denied (%s posture) in run %s",
            error.cause,
            what,
            posture,
            self.id,
        )
        raise error

    # -- what governed functions call (implemented by Run and AsyncRun) ----------------------

    def _check_tool_sync(
        self, name: str, arguments: dict[str, Any], action: str, wait: float | bool
    ) -> Decision:
        raise NotImplementedError

    def _check_tool_async(
        self, name: str, arguments: dict[str, Any], action: str, wait: float | bool
    ) -> Awaitable[Decision]:
        raise NotImplementedError


# A deny about an approval, by its reason. Expired is its own outcome, never a rejection.
_APPROVAL_REFUSALS: dict[str, type[ApprovalRejected] | type[ApprovalExpired]] = {
    "approval_changes_requested": ChangesRequested,
    "approval_rejected": ApprovalRejected,
    "approval_expired": ApprovalExpired,
}
