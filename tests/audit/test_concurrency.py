"""Concurrent writers, each on its own connection, still make one unbroken chain.

The advisory lock in ``audit_record`` is what makes this true: without it two transactions
read the same head and the unique ``seq`` refuses one of them.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, transaction

from apps.audit.models import AuditEvent
from apps.audit.selectors import chain_verify
from apps.audit.services import Actor, audit_record

WRITERS = 8
EVENTS_EACH = 15

pytestmark = pytest.mark.django_db(transaction=True)


def test_concurrent_writers_on_separate_connections_make_one_unbroken_chain():
    start = threading.Barrier(WRITERS)

    def writer(n: int) -> None:
        try:
            start.wait()
            for i in range(EVENTS_EACH):
                with transaction.atomic():
                    audit_record(
                        actor=Actor.system(f"writer-{n}"), action="test.concurrent.created",
                        target_type="thing", target_id=f"{n}-{i}", target_repr=f"thing {n}-{i}",
                    )  # fmt: skip
                    # More work in the same transaction after the audit write: the lock is
                    # held to commit, so the others queue here rather than read a stale head.
                    with connection.cursor() as cursor:
                        cursor.execute("SELECT pg_sleep(0.001)")
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        list(pool.map(writer, range(WRITERS)))

    report = chain_verify()
    assert report.ok, report.broken
    assert report.checked == WRITERS * EVENTS_EACH
    rows = list(AuditEvent.objects.order_by("seq").values_list("seq", "id", "occurred_at"))
    assert [seq for seq, _, _ in rows] == list(range(1, WRITERS * EVENTS_EACH + 1))
    ids = [event_id for _, event_id, _ in rows]
    assert ids == sorted(ids), "ids are drawn inside the lock, so they follow the chain"
    times = [when for _, _, when in rows]
    assert times == sorted(times), "times are taken inside the lock too"


def test_writers_that_roll_back_leave_the_chain_contiguous():
    def writer(n: int) -> None:
        try:
            for i in range(10):
                try:
                    with transaction.atomic():
                        audit_record(
                            actor=Actor.system(f"writer-{n}"), action="test.maybe.created",
                            target_type="thing", target_id=f"{n}-{i}", target_repr="thing",
                        )  # fmt: skip
                        if i % 3 == 0:
                            raise RuntimeError("the audited change failed")
                except RuntimeError:
                    pass
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(writer, range(4)))

    report = chain_verify()
    kept = 4 * len([i for i in range(10) if i % 3])
    assert report.ok and report.checked == kept == AuditEvent.objects.count()
