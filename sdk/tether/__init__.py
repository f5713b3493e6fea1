"""Tether's Python client: an agent asks Tether before every governed step.

    client = tether.Client()                      # TETHER_URL, TETHER_AGENT_KEY
    with client.run("Triage claim 4711") as run:
        decision = run.check_tool("crm-lookup", {"id": "c-42"}, action="read")

See docs/sdk.md in the Tether repository.
"""

from ._version import __version__
from .aio import AsyncClient, AsyncRun
from .client import Client, Run
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
    NoActiveRun,
    ProtocolError,
    RunEnded,
    RunKilled,
    RunTokenRejected,
    TetherError,
    TetherUnavailable,
    Unauthorized,
)
from .governed import active_run, governed_tool
from .models import (
    READ_ACTIONS,
    Approval,
    ApprovalStatus,
    Budget,
    Decision,
    Disposition,
    Envelope,
    FailurePosture,
    Kill,
)

__all__ = [
    "READ_ACTIONS",
    "ApiError",
    "Approval",
    "ApprovalExpired",
    "ApprovalRejected",
    "ApprovalRequired",
    "ApprovalStatus",
    "AsyncClient",
    "AsyncRun",
    "BadRequest",
    "Budget",
    "ChangesRequested",
    "Client",
    "ConfigurationError",
    "Decision",
    "Deferred",
    "Denied",
    "Disposition",
    "Envelope",
    "FailurePosture",
    "Forbidden",
    "Kill",
    "NoActiveRun",
    "ProtocolError",
    "Run",
    "RunEnded",
    "RunKilled",
    "RunTokenRejected",
    "TetherError",
    "TetherUnavailable",
    "Unauthorized",
    "__version__",
    "active_run",
    "governed_tool",
]
