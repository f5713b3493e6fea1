from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import AuditEvent, AuditVerification


class ReadOnlyAdmin(admin.ModelAdmin):
    """Read-only: the trail is appended to by services, never edited (a trigger refuses it)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("id", "seq", "occurred_at", "actor_name", "action", "target_repr", "request_id")
    list_filter = ("action", "actor_type")
    search_fields = ("actor_name", "target_repr", "action", "request_id")


@admin.register(AuditVerification)
class AuditVerificationAdmin(ReadOnlyAdmin):
    list_display = (
        "started_at",
        "actor_name",
        "ok",
        "events_checked",
        "head_seq",
        "broken_event_id",
    )
    list_filter = ("ok",)
