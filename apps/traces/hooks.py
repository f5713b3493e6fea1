"""What other apps do with spans as they are stored, inside the ingest's own transaction.

Apps downstream of the trace fabric (costs, drift) keep rollups of spans. They cannot be called
from here by name (they read traces, so traces must not import them), so each registers what it
does when Django starts; the ingest then calls it with exactly the rows it inserted, never a
retried export's duplicates, in the same transaction: a rollup commits with its spans or not at
all.
"""

from __future__ import annotations

from collections.abc import Callable

from .storage import SpanRow

SpansStored = Callable[[list[SpanRow]], None]

_on_stored: list[SpansStored] = []


def on_spans_stored(consumer: SpansStored) -> None:
    """Register ``consumer`` (once, however often this is called for it)."""
    if consumer not in _on_stored:
        _on_stored.append(consumer)


def spans_stored(rows: list[SpanRow]) -> None:
    if rows:
        for consumer in _on_stored:
            consumer(rows)
