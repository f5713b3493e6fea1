"""The kill pushed to the agents: each killed run's connected SDK is told to abort at once.

Every run has a control group; the agent's control socket (consumers.AgentControlConsumer,
``/ws/agents/runs/<id>/control/``) joins its run's group. Once a kill is committed,
:func:`push_killed` sends ``run.killed`` to the group of every run the switch stopped. The
message is the fast path only: the socket also reads its run again every
``CONTROL_RECHECK_SECONDS``, so a message the channel layer loses (or a Redis that is away)
delays the abort by that much, never forever. Protocol: docs/killswitch-agents.md.
"""

from __future__ import annotations

import logging
from typing import Any

from apps.common.broadcast import group_send
from apps.runtime.constants import RunState
from apps.runtime.models import Run

from .models import KillSwitch

logger = logging.getLogger(__name__)

#: How often a control socket reads its run again, whatever the channel layer says.
CONTROL_RECHECK_SECONDS = 2.0
#: The most the push may wait on the channel layer (it runs after the kill's commit).
PUSH_TIMEOUT_SECONDS = 2.0
KILLED_MESSAGE = "run.killed"


def control_group(run_id: Any) -> str:
    """The channel group of one run's control sockets."""
    return f"run-control.{run_id}"


def kill_notice(kill: KillSwitch) -> dict[str, Any]:
    """What an agent is told about the kill that stopped its run."""
    return {
        "kill_switch": kill.pk,
        "scope": kill.scope,
        "target": kill.target_name,
        "reason": kill.reason,
        "engaged_by": kill.engaged_by_name,
        "automatic": kill.automatic,
        "engaged_at": kill.engaged_at.isoformat(),
    }


def push_killed(kill_id: int) -> None:
    """Tell every connected SDK of a run this switch killed to abort now. Raises when the
    channel layer fails (the caller logs it); the sockets' re-read still finds the kill."""
    kill = (
        KillSwitch.objects.select_related("run", "agent", "team", "department")
        .filter(pk=kill_id)
        .first()
    )
    if kill is None:
        return
    run_ids = list(kill.runs.values_list("pk", flat=True))
    if not run_ids:
        return
    message = {"type": KILLED_MESSAGE, **kill_notice(kill)}
    group_send([control_group(run_id) for run_id in run_ids], message, timeout=PUSH_TIMEOUT_SECONDS)
    logger.info("kill switch %s: pushed to the control groups of %d runs", kill_id, len(run_ids))


def run_status(run_id: Any) -> dict[str, Any]:
    """What a control socket tells its agent about the run now: ``{"type": "state", "state":
    ...}`` or, for a run a switch killed, ``{"type": "killed", ...kill_notice}``. A run killed
    by no switch (its credential was revoked) is told its state, like any other ended run."""
    state = Run.objects.filter(pk=run_id).values_list("state", flat=True).first()
    if state is None:
        return {"type": "state", "state": "gone"}
    if state == RunState.KILLED:
        kill = (
            KillSwitch.objects.filter(runs=run_id)
            .select_related("run", "agent", "team", "department")
            .order_by("-engaged_at")
            .first()
        )
        if kill is not None:
            return {"type": "killed", **kill_notice(kill)}
    return {"type": "state", "state": state}
