"""Back-pressure for the OTLP receiver: a per-process bound on exports in flight.

An export is decoded and stored in the request's thread; each one holds a database connection
and the CPU for tens of milliseconds. When more than ``OTLP_MAX_IN_FLIGHT`` are already being
worked on in this process, one more would only queue behind them (and take a connection that
the console needs): it is answered ``429 Too Many Requests`` with ``Retry-After`` instead, which
stock OTLP exporters retry after backing off. Nothing is dropped silently: the exporter keeps
the batch and sends it again. The bound is per process, so it scales with the web workers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings


class InFlight:
    """A counter of exports in progress in this process, bounded by ``OTLP_MAX_IN_FLIGHT``
    (0: unbounded)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def try_acquire(self) -> bool:
        """Take a slot if one is free; the caller gives it back with :meth:`release`."""
        limit = settings.OTLP_MAX_IN_FLIGHT
        with self._lock:
            if limit > 0 and self.count >= limit:
                return False
            self.count += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.count -= 1

    @contextmanager
    def slot(self) -> Iterator[bool]:
        """Yields whether a slot was free (and holds it until the block ends)."""
        admitted = self.try_acquire()
        try:
            yield admitted
        finally:
            if admitted:
                self.release()


exports = InFlight()
