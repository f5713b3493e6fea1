"""The REST API, version 1: each app mounts its own ``api/urls.py``.

The agents' runtime API (``api/v1/runtime/``) is mounted first in ``controlplane/urls.py``.
"""

from django.urls import include, path

urlpatterns = [
    path("", include("apps.accounts.api.urls")),
    path("", include("apps.registry.api.urls")),
    path("", include("apps.policy.api.urls")),
    path("", include("apps.runtime.api.people_urls")),
    path("", include("apps.audit.api.urls")),
    path("", include("apps.traces.api.urls")),
    path("", include("apps.costs.api.urls")),
    path("", include("apps.drift.api.urls")),
    path("", include("apps.releases.api.urls")),
]
