"""One statement on the hot path, run as cheaply as the database allows.

On PostgreSQL the statement is bound server-side and prepared: parsed and planned once per
connection, its parameters sent apart from the SQL instead of quoted into it. Elsewhere (the
embedded SQLite default) it runs through Django's cursor. Errors are Django's either way.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from django.db import connection


def fetch_one(sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
    """Run ``sql`` (``%s`` placeholders) and return its first row, or None."""
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, prepare=True)
        return cursor.fetchone()


def fetch_all(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Run ``sql`` (``%s`` placeholders) and return all its rows; as cheaply as ``fetch_one``."""
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, prepare=True)
        return cursor.fetchall()


@contextmanager
def server_cursor() -> Iterator[Any]:
    """On PostgreSQL a cursor that binds parameters server-side: the statement is sent once
    with its parameters apart (and prepared after a few exports), instead of quoting a few
    hundred values into the SQL text as Django's cursor does. Errors are Django's either way."""
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            yield cursor
        return
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        yield cursor
