from __future__ import annotations

from django.db import models

from .constants import BreakKind


class ActorType(models.TextChoices):
    USER = "user", "User"
    AGENT = "agent", "Agent"
    SYSTEM = "system", "System"


class AuditEvent(models.Model):
    """One append-only record of something that changed, and who changed it.

    Rows are only ever inserted (``audit_record`` is the single writer; a database trigger
    refuses UPDATE and DELETE). The actor's name is frozen at write time so the trail reads the
    same after a user is renamed or deleted. No foreign keys: deleting anything elsewhere can
    never cascade here.

    The rows form a hash chain in ``seq`` order (1, 2, 3, ... with no gaps, assigned under a
    lock in commit order): ``hash`` is the SHA-256 of the row's canonical JSON together with
    ``prev_hash``, the hash of the row before it (see ``apps.audit.chain``). ``id`` grows with
    ``seq`` but may skip numbers (a rolled-back transaction spends one), so gaps are judged on
    ``seq``.
    """

    id = models.BigAutoField(primary_key=True)
    occurred_at = models.DateTimeField(db_index=True)
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    actor_id = models.CharField(max_length=64, blank=True)
    actor_name = models.CharField(max_length=200)
    request_id = models.CharField(max_length=64, blank=True)
    action = models.CharField(max_length=100, db_index=True)
    target_type = models.CharField(max_length=100)
    target_id = models.CharField(max_length=64)
    target_repr = models.CharField(max_length=300)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    message = models.TextField(blank=True)
    seq = models.BigIntegerField(unique=True, editable=False)
    prev_hash = models.CharField(max_length=64, editable=False)
    hash = models.CharField(max_length=64, editable=False)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["target_type", "target_id", "-id"])]

    def __str__(self) -> str:
        return f"{self.occurred_at:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.action} {self.target_repr}"


class AuditVerification(models.Model):
    """One run of the chain verification: who ran it, what it covered and what it found.

    Append-only like the events (the same trigger). A successful run is also a checkpoint: its
    head (seq and hash) must still be in the chain at the next run, which catches a tail that
    was cut off or a chain rewritten from some event on -- neither of which breaks a link.
    Not itself an audit event: verifying changes nothing, and a periodic check would otherwise
    grow the very chain it checks (and move its head) every time it ran.
    """

    id = models.BigAutoField(primary_key=True)
    started_at = models.DateTimeField(db_index=True)
    finished_at = models.DateTimeField()
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    actor_id = models.CharField(max_length=64, blank=True)
    actor_name = models.CharField(max_length=200)
    since_id = models.BigIntegerField(null=True, blank=True)
    ok = models.BooleanField()
    events_checked = models.BigIntegerField()
    head_seq = models.BigIntegerField(null=True, blank=True)
    head_event_id = models.BigIntegerField(null=True, blank=True)
    head_hash = models.CharField(max_length=64, blank=True)
    broken_kind = models.CharField(max_length=16, choices=BreakKind.choices, blank=True)
    broken_event_id = models.BigIntegerField(null=True, blank=True)
    broken_seq = models.BigIntegerField(null=True, blank=True)
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        result = "intact" if self.ok else f"broken at event {self.broken_event_id}"
        return f"{self.started_at:%Y-%m-%d %H:%M:%S} {self.actor_name}: {result}"

    @property
    def duration_ms(self) -> float:
        return (self.finished_at - self.started_at).total_seconds() * 1000
