"""``/api/v1/`` routes of the registry (mounted by ``controlplane/api_urls.py``)."""

from django.urls import path

from . import views

app_name = "registry-api"

urlpatterns = [
    path("agents/", views.AgentListCreateApi.as_view(), name="agent-list"),
    path("agents/<slug:slug>/", views.AgentDetailUpdateApi.as_view(), name="agent-detail"),
    path("agents/<slug:slug>/tools/", views.AgentToolListApi.as_view(), name="agent-tool-list"),
    path(
        "agents/<slug:slug>/tools/<slug:tool_slug>/",
        views.AgentToolDetailApi.as_view(),
        name="agent-tool-detail",
    ),
    path(
        "agents/<slug:slug>/memory/", views.AgentMemoryListApi.as_view(), name="agent-memory-list"
    ),
    path(
        "agents/<slug:slug>/memory/<slug:store_slug>/",
        views.AgentMemoryDetailApi.as_view(),
        name="agent-memory-detail",
    ),
    path(
        "agents/<slug:slug>/versions/",
        views.AgentVersionListApi.as_view(),
        name="agent-version-list",
    ),
    path(
        "agents/<slug:slug>/versions/<int:number>/",
        views.AgentVersionDetailApi.as_view(),
        name="agent-version-detail",
    ),
    path(
        "agents/<slug:slug>/versions/<int:number>/diff/<int:other>/",
        views.AgentVersionDiffApi.as_view(),
        name="agent-version-diff",
    ),
    path("tools/", views.ToolListCreateApi.as_view(), name="tool-list"),
    path("tools/<slug:slug>/", views.ToolDetailUpdateApi.as_view(), name="tool-detail"),
    path("memory-stores/", views.MemoryStoreListCreateApi.as_view(), name="memory-store-list"),
    path(
        "memory-stores/<slug:slug>/",
        views.MemoryStoreDetailUpdateApi.as_view(),
        name="memory-store-detail",
    ),
    path("data-classes/", views.DataClassListApi.as_view(), name="data-class-list"),
    path("manifests/apply", views.ManifestApplyApi.as_view(), name="manifest-apply"),
    path("manifests/export", views.ManifestExportApi.as_view(), name="manifest-export"),
    path("data-classes/<slug:slug>/", views.DataClassDetailApi.as_view(), name="data-class-detail"),
]
