"""Admin views are read-mostly: registry changes go through the console, API or manifests so
that every change is validated, versioned and audited. Data classes are configured here."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import Agent, AgentVersion, DataClass, MemoryStore, Tool


@admin.register(DataClass)
class DataClassAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "sensitivity", "description")
    prepopulated_fields = {"slug": ("name",)}


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Agent)
class AgentAdmin(ReadOnlyAdmin):
    list_display = ("name", "slug", "owner", "department", "status", "autonomy_level")
    list_filter = ("status", "department")
    search_fields = ("name", "slug")


@admin.register(Tool)
class ToolAdmin(ReadOnlyAdmin):
    list_display = ("name", "slug", "risk_class", "approval_required", "owner")
    list_filter = ("risk_class",)


@admin.register(MemoryStore)
class MemoryStoreAdmin(ReadOnlyAdmin):
    list_display = ("name", "slug", "store_class", "retention_days")


@admin.register(AgentVersion)
class AgentVersionAdmin(ReadOnlyAdmin):
    list_display = ("agent", "number", "created_by_name", "created_at", "change_summary")
