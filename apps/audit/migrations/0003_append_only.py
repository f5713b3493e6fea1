"""UPDATE and DELETE on the audit tables are refused by the database itself.

PostgreSQL: a row trigger raising SQLSTATE 23001 (restrict_violation, an IntegrityError in
Django) with a message that says why. TRUNCATE is deliberately not refused: the test runner
empties every table with it between transactional tests. It is a privilege of its own: in
production the application's role should not own the tables nor hold TRUNCATE (see
docs/audit.md); whoever owns them can also drop the trigger, which is why the chain exists.
SQLite (the embedded demo): the same with ``RAISE(ABORT)``. Note that ``manage.py flush`` deletes
rows on SQLite, so it is refused too: reset the demo by removing its database file.

A later migration that makes Django rebuild one of these tables on SQLite (most ``AlterField``
do) drops its triggers; such a migration must create them again. ``verify_audit`` and the
chain page report a missing or disabled trigger.
"""

from typing import Any

from django.db import migrations

TABLES = ("audit_auditevent", "audit_auditverification")

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION tether_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit records are append-only: % on % is refused', TG_OP, TG_TABLE_NAME
    USING ERRCODE = 'restrict_violation',
          HINT = 'Tether only ever inserts audit records; a correction is a new event.';
END;
$$;
"""
PG_TRIGGER = """
CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
FOR EACH ROW EXECUTE FUNCTION tether_audit_append_only();
"""
SQLITE_TRIGGER = """
CREATE TRIGGER {table}_no_{verb} BEFORE {op} ON {table}
BEGIN SELECT RAISE(ABORT, 'audit records are append-only: {op} on {table} is refused'); END;
"""


class RunSQLOn(migrations.RunSQL):
    """RunSQL on one database vendor only (the statements are that vendor's dialect)."""

    def __init__(self, vendor: str, sql: list[str], reverse_sql: list[str]) -> None:
        self.vendor = vendor
        super().__init__(sql, reverse_sql)

    def deconstruct(self) -> Any:
        name, args, kwargs = super().deconstruct()
        kwargs["vendor"] = self.vendor
        return name, args, kwargs

    def database_forwards(self, app_label: str, schema_editor: Any, *args: Any) -> None:
        if schema_editor.connection.vendor == self.vendor:
            super().database_forwards(app_label, schema_editor, *args)

    def database_backwards(self, app_label: str, schema_editor: Any, *args: Any) -> None:
        if schema_editor.connection.vendor == self.vendor:
            super().database_backwards(app_label, schema_editor, *args)


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_hash_chain")]

    operations = [
        RunSQLOn(
            "postgresql",
            [PG_FUNCTION, *[PG_TRIGGER.format(table=t) for t in TABLES]],
            [
                *[f"DROP TRIGGER IF EXISTS {t}_append_only ON {t};" for t in TABLES],
                "DROP FUNCTION IF EXISTS tether_audit_append_only();",
            ],
        ),
        RunSQLOn(
            "sqlite",
            [
                SQLITE_TRIGGER.format(table=t, op=op, verb=op.lower())
                for t in TABLES
                for op in ("UPDATE", "DELETE")
            ],
            [
                f"DROP TRIGGER IF EXISTS {t}_no_{verb};"
                for t in TABLES
                for verb in ("update", "delete")
            ],
        ),
    ]
