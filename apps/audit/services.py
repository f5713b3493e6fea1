"""The audit trail's single writer. Call it inside the transaction of the change it records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from apps.common.request_context import get_request_id

from .models import ActorType, AuditEvent


@dataclass(frozen=True)
class Actor:
    """Who did it: a person, an agent or Tether itself. ``name`` is frozen into the record."""

    type: str
    id: str
    name: str

    @classmethod
    def system(cls, name: str = "tether") -> Actor:
        return cls(type=ActorType.SYSTEM, id="", name=name)

    @classmethod
    def user(cls, user: Any) -> Actor:
        return cls(type=ActorType.USER, id=str(user.pk), name=user.get_username())


def _jsonable(value: Any) -> Any:
    """Round-trip through Django's encoder so dates, decimals and UUIDs store as JSON."""
    import json

    if value is None:
        return None
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def audit_record(
    *,
    actor: Actor,
    action: str,
    target_type: str,
    target_id: str | int,
    target_repr: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    message: str = "",
) -> AuditEvent:
    return AuditEvent.objects.create(
        occurred_at=timezone.now(),
        actor_type=actor.type,
        actor_id=actor.id,
        actor_name=actor.name[:200],
        request_id=get_request_id(),
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        target_repr=target_repr[:300],
        before=_jsonable(before),
        after=_jsonable(after),
        message=message,
    )
