"""Spans partitioned by day on PostgreSQL, deduplicated; legal holds; retention sweeps.

On PostgreSQL ``traces_span`` is rebuilt as a table partitioned by range of ``start_time``
(one partition per UTC day, created ahead of time and on demand by apps/traces/partitions.py,
plus a DEFAULT partition so that no span is ever refused for its date), with the primary key
``(id, start_time)`` and ``(trace_id, span_id, start_time)`` unique. The spans already stored
are copied over (into a partition per day they cover, the rest into DEFAULT; duplicates kept
once). Django's state is the same on every database: ``id`` is the model's primary key.

On SQLite (the embedded default) the same model changes are applied to the plain table.

The foreign keys of ``Span`` lose their database constraints and their own indexes (the
composite indexes lead with ``agent`` and ``run``), and its JSON columns are text on
PostgreSQL: see the model's docstring and apps/traces/fields.py.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

import apps.traces.fields

# Days of existing spans that get a partition of their own when the table is rebuilt (the most
# recent ones); older days are copied into the DEFAULT partition, which retention empties.
OLD_DAYS_PARTITIONED = 400
LZ4_COLUMNS = ("arguments", "result", "attributes", "resource", "events")


def span_state_operations():
    return [
        migrations.RemoveIndex(model_name="span", name="span_trace"),
        migrations.AlterField(
            model_name="span",
            name="agent",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="spans",
                to="registry.agent",
            ),
        ),
        migrations.AlterField(
            model_name="span",
            name="credential",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                help_text="The credential that sent the span: provenance, whatever agent it names.",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="runtime.agentcredential",
            ),
        ),
        migrations.AlterField(
            model_name="span",
            name="ingest_key",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                help_text="The ingest key that sent the span, when no agent credential did.",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="traces.ingestkey",
            ),
        ),
        migrations.AlterField(
            model_name="span",
            name="run",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="spans",
                to="runtime.run",
            ),
        ),
        *[
            migrations.AlterField(
                model_name="span",
                name=name,
                field=apps.traces.fields.JSONTextField(blank=True, default=default),
            )
            for name, default in (("attributes", dict), ("resource", dict), ("events", list))
        ],
        migrations.RemoveIndex(model_name="span", name="span_run_start"),
        migrations.AddIndex(
            model_name="span",
            index=models.Index(
                condition=models.Q(("run__isnull", False)),
                fields=["run", "start_time"],
                name="span_run_start",
            ),
        ),
        migrations.AddConstraint(
            model_name="span",
            constraint=models.UniqueConstraint(
                fields=("trace_id", "span_id", "start_time"), name="span_unique_per_trace"
            ),
        ),
    ]


class NotOnPostgreSQL(migrations.SeparateDatabaseAndState):
    """Its database operations run everywhere but on PostgreSQL (which rebuilds the table)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


# Column for column the model's fields (Django's PostgreSQL types; the JSON as text, see
# apps/traces/fields.py); payloads compressed with lz4 where the server has it (faster than
# pglz by far on the ingest path).
COLUMNS = """
    id bigint NOT NULL,
    trace_id varchar(32) NOT NULL,
    span_id varchar(16) NOT NULL,
    parent_span_id varchar(16) NOT NULL,
    name varchar(300) NOT NULL,
    kind varchar(16) NOT NULL,
    agent_name varchar(200) NOT NULL,
    run_ref varchar(64) NOT NULL,
    environment varchar(32) NOT NULL,
    service_name varchar(200) NOT NULL,
    scope_name varchar(200) NOT NULL,
    model varchar(200) NOT NULL,
    provider varchar(200) NOT NULL,
    input_tokens integer CONSTRAINT traces_span_input_tokens_check CHECK (input_tokens >= 0),
    output_tokens integer CONSTRAINT traces_span_output_tokens_check CHECK (output_tokens >= 0),
    cached_tokens integer CONSTRAINT traces_span_cached_tokens_check CHECK (cached_tokens >= 0),
    reasoning_tokens integer
        CONSTRAINT traces_span_reasoning_tokens_check CHECK (reasoning_tokens >= 0),
    tool_name varchar(200) NOT NULL,
    arguments text {lz4} NOT NULL,
    result text {lz4} NOT NULL,
    status varchar(8) NOT NULL,
    status_message varchar(2000) NOT NULL,
    start_time timestamp with time zone NOT NULL,
    end_time timestamp with time zone NOT NULL,
    duration_ns bigint NOT NULL,
    conversation_id varchar(200) NOT NULL,
    attributes text {lz4} NOT NULL,
    resource text {lz4} NOT NULL,
    events text {lz4} NOT NULL,
    received_at timestamp with time zone NOT NULL,
    agent_id bigint,
    credential_id bigint,
    run_id uuid,
    ingest_key_id bigint
"""
NAMES = (
    "id, trace_id, span_id, parent_span_id, name, kind, agent_name, run_ref, environment, "
    "service_name, scope_name, model, provider, input_tokens, output_tokens, cached_tokens, "
    "reasoning_tokens, tool_name, arguments, result, status, status_message, start_time, "
    "end_time, duration_ns, conversation_id, attributes, resource, events, received_at, "
    "agent_id, credential_id, run_id, ingest_key_id"
)


def _has_lz4(cursor) -> bool:
    cursor.execute(
        "SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression'"
        " AND 'lz4' = ANY(enumvals)"
    )
    return cursor.fetchone() is not None


def partition_spans(apps, schema_editor):
    """Rebuild traces_span as a partitioned table (PostgreSQL only)."""
    if schema_editor.connection.vendor != "postgresql":
        return

    def run(sql: str) -> None:
        schema_editor.execute(sql, None)  # no parameters: % is SQL's (format's %I, %L)

    with schema_editor.connection.cursor() as cursor:
        lz4 = "COMPRESSION lz4" if _has_lz4(cursor) else ""
    run("ALTER TABLE traces_span RENAME TO traces_span_unpartitioned")
    run("ALTER INDEX traces_span_pkey RENAME TO traces_span_unpartitioned_pkey")
    run("DROP INDEX IF EXISTS span_agent_start, span_run_start, span_trace")
    run(
        f"CREATE TABLE traces_span ({COLUMNS.format(lz4=lz4)},"
        " CONSTRAINT traces_span_pkey PRIMARY KEY (id, start_time),"
        " CONSTRAINT span_unique_per_trace UNIQUE (trace_id, span_id, start_time)"
        ") PARTITION BY RANGE (start_time)"
    )
    run("CREATE INDEX span_agent_start ON traces_span (agent_id, start_time DESC)")
    run("CREATE INDEX span_run_start ON traces_span (run_id, start_time) WHERE run_id IS NOT NULL")
    run("CREATE TABLE traces_span_default PARTITION OF traces_span DEFAULT")
    # A partition for each day the old table holds (the most recent ones), named as
    # apps/traces/partitions.py names them: traces_span_pYYYYMMDD, bounds in UTC.
    run(
        f"""
        DO $$
        DECLARE day date;
        BEGIN
            FOR day IN
                SELECT DISTINCT (start_time AT TIME ZONE 'UTC')::date AS d
                FROM traces_span_unpartitioned ORDER BY d DESC LIMIT {OLD_DAYS_PARTITIONED}
            LOOP
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF traces_span FOR VALUES FROM (%L) TO (%L)',
                    'traces_span_p' || to_char(day, 'YYYYMMDD'),
                    day::timestamp AT TIME ZONE 'UTC',
                    (day + 1)::timestamp AT TIME ZONE 'UTC'
                );
            END LOOP;
        END $$
        """
    )
    forth = NAMES.replace(
        "attributes, resource, events", "attributes::text, resource::text, events::text"
    )
    run(
        f"INSERT INTO traces_span ({NAMES}) SELECT {forth} FROM traces_span_unpartitioned"
        " ORDER BY id ON CONFLICT DO NOTHING"
    )
    run("DROP TABLE traces_span_unpartitioned")  # and its identity sequence
    # Partitioned tables cannot have identity columns before PostgreSQL 17: a sequence owned
    # by the column gives the same ids (Django finds it with pg_get_serial_sequence).
    run("CREATE SEQUENCE traces_span_id_seq OWNED BY traces_span.id")
    run(
        "SELECT setval('traces_span_id_seq', COALESCE((SELECT max(id) FROM traces_span), 0) + 1,"
        " false)"
    )
    run("ALTER TABLE traces_span ALTER COLUMN id SET DEFAULT nextval('traces_span_id_seq')")


def unpartition_spans(apps, schema_editor):
    """Back to one plain table as migration 0003 left it (PostgreSQL only)."""
    if schema_editor.connection.vendor != "postgresql":
        return

    def run(sql: str) -> None:
        schema_editor.execute(sql, None)

    run("ALTER TABLE traces_span RENAME TO traces_span_partitioned")
    run("ALTER INDEX traces_span_pkey RENAME TO traces_span_partitioned_pkey")
    run("ALTER INDEX span_agent_start RENAME TO span_agent_start_partitioned")
    run("ALTER INDEX span_run_start RENAME TO span_run_start_partitioned")
    run("ALTER TABLE traces_span_partitioned ALTER COLUMN id DROP DEFAULT")
    run("ALTER SEQUENCE traces_span_id_seq RENAME TO traces_span_partitioned_id_seq")
    # The model as it was before this migration (these operations run on that state).
    schema_editor.create_model(apps.get_model("traces", "Span"))
    back = NAMES.replace(
        "attributes, resource, events", "attributes::jsonb, resource::jsonb, events::jsonb"
    )
    run(
        f"INSERT INTO traces_span ({NAMES}) OVERRIDING SYSTEM VALUE"
        f" SELECT {back} FROM traces_span_partitioned"
    )
    run("DROP TABLE traces_span_partitioned CASCADE")
    run(
        "SELECT setval(pg_get_serial_sequence('traces_span', 'id'),"
        " COALESCE((SELECT max(id) FROM traces_span), 0) + 1, false)"
    )


class Migration(migrations.Migration):
    dependencies = [
        ("registry", "0005_run_token_ttl_and_delegation"),
        ("runtime", "0005_decision_seal"),
        ("traces", "0003_traces"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=span_state_operations(),
            database_operations=[
                NotOnPostgreSQL(database_operations=span_state_operations()),
                migrations.RunPython(partition_spans, unpartition_spans),
            ],
        ),
        migrations.CreateModel(
            name="LegalHold",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("trace_id", models.CharField(blank=True, max_length=32)),
                ("reason", models.TextField()),
                ("placed_by_name", models.CharField(max_length=200)),
                ("placed_at", models.DateTimeField()),
                ("released_at", models.DateTimeField(blank=True, null=True)),
                ("released_by_name", models.CharField(blank=True, max_length=200)),
                ("release_reason", models.TextField(blank=True)),
                ("swept_at", models.DateTimeField(blank=True, null=True)),
                (
                    "placed_by",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "released_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "run",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="legal_holds",
                        to="runtime.run",
                    ),
                ),
            ],
            options={
                "ordering": ["-placed_at", "-pk"],
                "indexes": [
                    models.Index(
                        condition=models.Q(("released_at__isnull", True)),
                        fields=["released_at"],
                        name="legal_hold_active",
                    )
                ],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(
                            ("run__isnull", False),
                            models.Q(("trace_id", ""), _negated=True),
                            _connector="OR",
                        ),
                        name="legal_hold_names_a_run_or_trace",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="RetentionSweep",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("environments", models.CharField(max_length=64, unique=True)),
                ("swept_before", models.DateTimeField()),
                ("updated_at", models.DateTimeField()),
            ],
        ),
    ]
