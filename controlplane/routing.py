"""Websocket routes. Live run views, the approval inbox and agent control pushes land here."""

from typing import Any

from django.urls import path, re_path

from apps.approvals import live as approvals_live
from apps.approvals.consumers import AgentApprovalConsumer
from apps.killswitch.consumers import AgentControlConsumer
from apps.traces import consumers

websocket_urlpatterns: list[Any] = [
    # The live views of the trace fabric (apps/traces/consumers.py, docs/traces.md).
    path("ws/runs/live/", consumers.FleetConsumer.as_asgi()),
    path("ws/runs/<uuid:run_id>/", consumers.RunConsumer.as_asgi()),
    re_path(r"^ws/traces/(?P<trace_id>[0-9a-f]{32})/$", consumers.TraceConsumer.as_asgi()),
    # The approvals inbox (apps/approvals/live.py).
    path("ws/approvals/inbox/", approvals_live.InboxConsumer.as_asgi()),
]

# Agents' sockets: authenticated by the run token they present, never by a browser's session
# cookie, so they need no Origin check (an SDK sends no Origin) and no session middleware.
agent_websocket_urlpatterns: list[Any] = [
    # An agent following its own approval request (apps/approvals/consumers.py).
    path("ws/agents/approvals/<uuid:approval_id>/", AgentApprovalConsumer.as_asgi()),
    # A run's control socket: the kill switch reaches the agent here (apps/killswitch/consumers.py).
    path("ws/agents/runs/<uuid:run_id>/control/", AgentControlConsumer.as_asgi()),
]
