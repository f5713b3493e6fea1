"""The audit log becomes a hash chain: every event gets ``seq``, ``prev_hash`` and ``hash``.

Existing rows are chained in ``id`` order (their ``seq`` is 1, 2, 3, ... in that order), hashed
with the same function the writer uses (``apps.audit.chain``), so ``verify_audit`` accepts
them. On PostgreSQL the table is locked against writers while the backfill runs.
"""

from typing import Any

from django.db import migrations, models

from apps.audit.chain import canonical_record, record_hash
from apps.audit.constants import CHAIN_CHUNK_SIZE, GENESIS_HASH


def chain_existing_events(apps: Any, schema_editor: Any) -> None:
    AuditEvent = apps.get_model("audit", "AuditEvent")
    connection = schema_editor.connection
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("LOCK TABLE audit_auditevent IN SHARE ROW EXCLUSIVE MODE")
    prev_hash, seq, last_id = GENESIS_HASH, 0, 0
    while True:
        page = list(AuditEvent.objects.filter(id__gt=last_id).order_by("id")[:CHAIN_CHUNK_SIZE])
        if not page:
            return
        for event in page:
            seq += 1
            event.seq = seq
            event.prev_hash = prev_hash
            event.hash = prev_hash = record_hash(canonical_record(event, prev_hash=prev_hash))
        AuditEvent.objects.bulk_update(page, ["seq", "prev_hash", "hash"])
        last_id = page[-1].id


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="seq",
            field=models.BigIntegerField(editable=False, null=True),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="prev_hash",
            field=models.CharField(default="", editable=False, max_length=64),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="auditevent",
            name="hash",
            field=models.CharField(default="", editable=False, max_length=64),
            preserve_default=False,
        ),
        migrations.RunPython(chain_existing_events, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="auditevent",
            name="seq",
            field=models.BigIntegerField(editable=False, unique=True),
        ),
        migrations.CreateModel(
            name="AuditVerification",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("started_at", models.DateTimeField(db_index=True)),
                ("finished_at", models.DateTimeField()),
                (
                    "actor_type",
                    models.CharField(
                        choices=[("user", "User"), ("agent", "Agent"), ("system", "System")],
                        max_length=16,
                    ),
                ),
                ("actor_id", models.CharField(blank=True, max_length=64)),
                ("actor_name", models.CharField(max_length=200)),
                ("since_id", models.BigIntegerField(blank=True, null=True)),
                ("ok", models.BooleanField()),
                ("events_checked", models.BigIntegerField()),
                ("head_seq", models.BigIntegerField(blank=True, null=True)),
                ("head_event_id", models.BigIntegerField(blank=True, null=True)),
                ("head_hash", models.CharField(blank=True, max_length=64)),
                (
                    "broken_kind",
                    models.CharField(
                        blank=True,
                        choices=[
                            ("content", "Content hash mismatch"),
                            ("link", "prev_hash link broken"),
                            ("gap", "Missing event (gap in seq)"),
                            ("checkpoint", "Differs from an earlier verification"),
                        ],
                        max_length=16,
                    ),
                ),
                ("broken_event_id", models.BigIntegerField(blank=True, null=True)),
                ("broken_seq", models.BigIntegerField(blank=True, null=True)),
                ("detail", models.TextField(blank=True)),
            ],
            options={"ordering": ["-id"]},
        ),
    ]
