"""Model fields of the trace fabric."""

from __future__ import annotations

import json
from typing import Any

from django.db import models


class JSONTextField(models.JSONField):
    """A JSONField whose PostgreSQL column is ``text`` rather than ``jsonb``.

    For span attributes, resources and events: written in bulk, read a span at a time, never
    filtered on. Building ``jsonb`` from a kilobyte and a half of JSON is the largest single
    cost of storing a span in PostgreSQL (more than the row and its indexes together), and
    nothing queries into it; kept as text, the JSON is stored as the ingest encoded it and
    parsed when a span is shown. The Python side is a JSONField's (dicts and lists in, dicts and
    lists out). Key lookups in the ORM (``attributes__x``) are not supported on PostgreSQL; in
    SQL, cast: ``attributes::jsonb ->> 'http.status_code'``. Elsewhere (SQLite) it is a JSONField.
    """

    def db_type(self, connection: Any) -> str | None:
        if connection.vendor == "postgresql":
            return "text"
        return super().db_type(connection)

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        if connection.vendor != "postgresql":
            return super().get_db_prep_value(value, connection, prepared)
        if not prepared:
            value = self.get_prep_value(value)
        return json.dumps(value, cls=self.encoder)
