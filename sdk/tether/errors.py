"""What the client raises.

Two families. ``Denied`` and its subclasses mean *this step must not happen*: Tether said no,
asked for a person, deferred, ended the run, or could not be reached and the agent's posture
is to fail closed. ``TetherError`` subclasses that are not ``Denied`` mean the client itself
is misused or misconfigured (a bad key, a bad request, no active run). Either way nothing was
allowed: no exception from this package ever stands for an allow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import Approval, Decision, Kill


class TetherError(Exception):
    """Base class of everything this package raises."""


class ConfigurationError(TetherError):
    """The client cannot be built: no URL, no agent key, or a key of the wrong kind."""


class NoActiveRun(TetherError):
    """A governed function was called outside ``client.run(...)``: there is no one to ask."""


class ProtocolError(TetherError):
    """Tether answered something this client cannot read (not JSON, a missing field)."""


class ApiError(TetherError):
    """Tether refused the request itself (a 4xx), in its one error shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details: dict[str, Any] = details or {}


class BadRequest(ApiError):
    """400 / 413 / 422: the body was malformed, too large or failed validation."""


class Unauthorized(ApiError):
    """401: the agent key or run token is missing, malformed, expired or revoked."""


class Forbidden(ApiError):
    """403: the token belongs to another run than the one named."""


class Denied(TetherError):
    """The step must not happen. ``decision`` says why (disposition, reasons, policies)."""

    def __init__(self, decision: Decision, message: str | None = None) -> None:
        self.decision = decision
        super().__init__(message or _describe(decision))

    @property
    def disposition(self) -> str:
        return self.decision.disposition

    @property
    def reasons(self) -> tuple[str, ...]:
        return self.decision.reasons

    @property
    def reasoning(self) -> str:
        return self.decision.reasoning

    @property
    def policies(self) -> tuple[str, ...]:
        return self.decision.policies


class _ApprovalAnswer(Denied):
    """What the approval errors share: the request they are about, as last seen."""

    def __init__(
        self, decision: Decision, message: str | None = None, *, approval: Approval | None = None
    ) -> None:
        self.approval = approval
        super().__init__(decision, message)

    @property
    def approval_id(self) -> str | None:
        """The approval request's id (to wait for it, or to come back with it)."""
        return self.approval.id if self.approval is not None else self.decision.approval_id

    @property
    def feedback(self) -> str:
        """What the approver said: the reason for a rejection, the changes asked for."""
        if self.approval is not None:
            return self.approval.feedback
        return str((self.decision.approval or {}).get("feedback") or "")


class ApprovalRequired(_ApprovalAnswer):
    """Disposition ``ask``: a person must approve this step first; it has not happened.

    ``approval_id`` names the request Tether opened. Wait for its outcome with
    ``run.wait_for_approval(approval_id)`` and come back with ``check_tool(...,
    approval=approval_id)``, or let ``check_tool``/``governed_tool`` do both
    (``wait_for_approval=``). Raised again after such a wait ran out with the request still
    pending; ``approval`` is then its latest state.
    """


class ApprovalRejected(_ApprovalAnswer):
    """A person rejected the step (reason ``approval_rejected``); ``feedback`` says why."""


class ChangesRequested(ApprovalRejected):
    """A person asked for changes instead (reason ``approval_changes_requested``):
    ``feedback`` says which. Ask again with the changed step; it is a new request."""


class ApprovalExpired(_ApprovalAnswer):
    """Nobody answered in time (reason ``approval_expired``), or the approved step came back
    after its approval ran out. Not a rejection: no person said no. ``approval.on_expiry`` is
    ``pause`` when the gate means "ask again later" (a ``defer``; ``retry_after`` seconds)."""

    @property
    def retry_after(self) -> int | None:
        return self.decision.retry_after


class Deferred(Denied):
    """Disposition ``defer``: Tether will not decide now; try again later."""


class RunEnded(Denied):
    """The run is no longer running (finished, failed, killed or expired).

    Raised when Tether answers ``run_not_running``, and from then on by every check of that
    run without asking again: a killed run stays killed.
    """

    def __init__(self, decision: Decision, state: str | None = None) -> None:
        self.state = state
        suffix = f" (state: {state})" if state else ""
        super().__init__(decision, f"the run is no longer running{suffix}")


class RunKilled(RunEnded):
    """A kill switch stopped the run: abort the work, do not retry it.

    Raised by the check that Tether denied with reason ``run_killed`` (or refused with a 401
    of code ``run_killed``), by every check of the run after that or after a kill pushed over
    the control socket, without asking again, and by ``run.raise_if_killed()``. An async
    run's block is cancelled by the push and ends with this instead of ``CancelledError``.
    ``kill`` says which switch, who and why, as far as the client learned it.
    """

    def __init__(self, decision: Decision, kill: Kill) -> None:
        self.kill = kill
        self.state = "killed"
        who = f" by {kill.engaged_by}" if kill.engaged_by else ""
        Denied.__init__(self, decision, f"a kill switch stopped the run{who}: {kill.reason}")

    @property
    def kill_reason(self) -> str:
        return self.kill.reason


class RunTokenRejected(RunEnded, Unauthorized):
    """401 for a run token: it no longer works, so the run is over.

    A run token dies with its run: finished, failed, killed, expired, or minted by a
    credential that was since revoked. Both a ``RunEnded`` (the step must not happen, and
    later checks of the run raise at once) and an ``Unauthorized`` (status, code, message).
    """

    def __init__(self, decision: Decision, error: Unauthorized) -> None:
        # Set what both bases carry; their __init__s take different arguments.
        self.decision = decision
        self.state = None
        self.status = error.status
        self.code = error.code
        self.message = error.message
        self.details = error.details
        Exception.__init__(self, f"the run token no longer works: {error.message}")


class TetherUnavailable(Denied):
    """Tether could not be reached after the retries and the posture is to fail closed.

    The decision is a local ``deny`` with reason ``store_unavailable``; ``cause`` is the last
    connection error or server error.
    """

    def __init__(self, decision: Decision, cause: BaseException | None = None) -> None:
        self.cause = cause
        detail = f": {cause}" if cause else ""
        super().__init__(decision, f"Tether is unavailable{detail}")


def _describe(decision: Decision) -> str:
    reasons = ", ".join(decision.reasons) or "no reason given"
    text = f"{decision.disposition} ({reasons})"
    if decision.reasoning:
        text += f": {decision.reasoning}"
    return text
