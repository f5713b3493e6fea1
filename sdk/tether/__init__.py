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
    ApprovalRequired,
    BadRequest,
    ConfigurationError,
    Deferred,
    Denied,
    Forbidden,
    NoActiveRun,
    ProtocolError,
    RunEnded,
    RunTokenRejected,
    TetherError,
    TetherUnavailable,
    Unauthorized,
)
from .governed import active_run, governed_tool
from .models import READ_ACTIONS, Budget, Decision, Disposition, Envelope, FailurePosture

__all__ = [
    "READ_ACTIONS",
    "ApiError",
    "ApprovalRequired",
    "AsyncClient",
    "AsyncRun",
    "BadRequest",
    "Budget",
    "Client",
    "ConfigurationError",
    "Decision",
    "Deferred",
    "Denied",
    "Disposition",
    "Envelope",
    "FailurePosture",
    "Forbidden",
    "NoActiveRun",
    "ProtocolError",
    "Run",
    "RunEnded",
    "RunTokenRejected",
    "TetherError",
    "TetherUnavailable",
    "Unauthorized",
    "__version__",
    "active_run",
    "governed_tool",
]
