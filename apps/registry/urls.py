"""Console URLs of the registry.

The home page is named plainly ``home`` (``LOGIN_REDIRECT_URL``); everything else lives in the
``registry`` namespace, e.g. ``registry:agent-detail``.
"""

from django.urls import include, path

from . import views

NAMESPACE = "registry"  # not `app_name`: that would namespace `home` too

registry_patterns = [
    path("agents/", views.agent_list, name="agent-list"),
    path("agents/new/", views.agent_create, name="agent-create"),
    path("agents/<slug:slug>/", views.agent_detail, name="agent-detail"),
    path("agents/<slug:slug>/edit/", views.agent_edit, name="agent-edit"),
    path("agents/<slug:slug>/grants/new/", views.grant_form, name="grant-create"),
    path("agents/<slug:slug>/grants/<slug:tool_slug>/", views.grant_form, name="grant-edit"),
    path(
        "agents/<slug:slug>/grants/<slug:tool_slug>/remove/",
        views.grant_remove,
        name="grant-remove",
    ),
    path("agents/<slug:slug>/memory/new/", views.memory_binding_create, name="binding-create"),
    path(
        "agents/<slug:slug>/memory/<slug:store_slug>/remove/",
        views.memory_binding_remove,
        name="binding-remove",
    ),
    path("agents/<slug:slug>/versions/", views.agent_versions, name="agent-versions"),
    path("agents/<slug:slug>/versions/diff/", views.agent_version_diff, name="agent-diff"),
    path("tools/", views.tool_list, name="tool-list"),
    path("tools/new/", views.tool_create, name="tool-create"),
    path("tools/<slug:slug>/", views.tool_detail, name="tool-detail"),
    path("tools/<slug:slug>/edit/", views.tool_edit, name="tool-edit"),
    path("memory/", views.memory_list, name="memory-list"),
    path("memory/new/", views.memory_create, name="memory-create"),
    path("memory/<slug:slug>/", views.memory_detail, name="memory-detail"),
    path("memory/<slug:slug>/edit/", views.memory_edit, name="memory-edit"),
]

# This module is included without a namespace so that ``home`` stays global; the registry's
# own pages are included below under the ``registry`` namespace.
urlpatterns = [
    path("", views.home, name="home"),
    path("", include((registry_patterns, NAMESPACE))),
]
