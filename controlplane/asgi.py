"""ASGI entry point: HTTP goes to Django, websockets to the Channels routes."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import re_path  # noqa: E402

from apps.common.asgi import exact_paths  # noqa: E402
from apps.runtime.api import asgi as decision_endpoint  # noqa: E402
from apps.traces import receiver as traces_endpoint  # noqa: E402

from .routing import agent_websocket_urlpatterns, websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        # The agents' decision endpoint and the OTLP receiver skip Django's handler.
        "http": exact_paths(
            {
                decision_endpoint.PATH: decision_endpoint.DecisionEndpoint(),
                # OTLP/HTTP exports: apps/traces/receiver.py.
                traces_endpoint.PATH: traces_endpoint.TracesEndpoint(),
            },
            django_asgi_app,
        ),
        "websocket": URLRouter(
            [
                *agent_websocket_urlpatterns,
                # Everything else is a console page's socket: same origin, the session's user.
                re_path(
                    r"",
                    AllowedHostsOriginValidator(
                        AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
                    ),
                ),
            ]
        ),
    }
)
