"""Decision seals, and a trigger that keeps the decision trail and its seals append-only."""

from django.db import migrations, models

APPEND_ONLY = ("runtime_decision", "runtime_decisionseal")


def refuse_changes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        """
        CREATE OR REPLACE FUNCTION tether_runtime_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END $$;
        """,
        None,  # no parameters: the % above are PL/pgSQL's, not placeholders
    )
    for table in APPEND_ONLY:
        schema_editor.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION tether_runtime_append_only()"
        )


def allow_changes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in APPEND_ONLY:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
    schema_editor.execute("DROP FUNCTION IF EXISTS tether_runtime_append_only()")


class Migration(migrations.Migration):
    dependencies = [
        ("runtime", "0004_hot_path_keys"),
    ]

    operations = [
        migrations.CreateModel(
            name="DecisionSeal",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("sealed_at", models.DateTimeField(auto_now_add=True)),
                ("first_decision_id", models.BigIntegerField()),
                ("last_decision_id", models.BigIntegerField(unique=True)),
                ("count", models.PositiveIntegerField()),
                ("prev_digest", models.CharField(max_length=64)),
                ("digest", models.CharField(max_length=64)),
            ],
            options={"ordering": ["id"]},
        ),
        migrations.RunPython(refuse_changes, allow_changes),
    ]
