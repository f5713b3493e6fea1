"""The hash chain: each event hashes its canonical JSON with the previous event's hash."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from itertools import pairwise

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from apps.audit.chain import canonical_bytes, canonical_record, format_time, record_hash
from apps.audit.constants import GENESIS_HASH, HASHED_FIELDS
from apps.audit.models import AuditEvent
from apps.audit.selectors import chain_verify
from apps.common.request_context import set_request_id

from .conftest import record

pytestmark = pytest.mark.django_db


def test_the_first_event_chains_from_the_genesis_value_and_each_next_from_the_one_before():
    first, second, third = record(3)
    assert (first.seq, second.seq, third.seq) == (1, 2, 3)
    assert first.prev_hash == GENESIS_HASH == "0" * 64
    assert second.prev_hash == first.hash
    assert third.prev_hash == second.hash
    assert first.id < second.id < third.id
    assert len({first.hash, second.hash, third.hash}) == 3


def test_the_hash_is_sha256_over_the_documented_canonical_json():
    set_request_id("req-canonical-1")
    event = record(
        1,
        action="registry.agent.updated",
        before={"name": "Ünïcode ✓", "n": 2, "nested": {"b": 1, "a": [1, 2.5]}},
        after={"name": "x"},
        message="Renamed",
    )[0]
    event.refresh_from_db()
    # Written out by hand: sorted keys, no whitespace, UTF-8 as is, the fixed time format.
    expected = {
        "action": "registry.agent.updated",
        "actor_id": "",
        "actor_name": "tests",
        "actor_type": "system",
        "after": {"name": "x"},
        "before": {"n": 2, "name": "Ünïcode ✓", "nested": {"a": [1, 2.5], "b": 1}},
        "id": event.id,
        "message": "Renamed",
        "occurred_at": event.occurred_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "prev_hash": GENESIS_HASH,
        "request_id": "req-canonical-1",
        "seq": 1,
        "target_id": "0",
        "target_repr": "thing-0",
        "target_type": "thing",
    }
    text = json.dumps(expected, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_bytes(canonical_record(event)) == text.encode("utf-8")
    assert '"name":"Ünïcode ✓"' in text
    assert event.hash == hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert set(canonical_record(event)) == {*HASHED_FIELDS, "prev_hash"}


def test_times_are_hashed_in_utc_with_microseconds():
    moment = datetime(2026, 3, 1, 9, 5, 7, 42, tzinfo=UTC)
    assert format_time(moment) == "2026-03-01T09:05:07.000042Z"
    with pytest.raises(ValueError):
        format_time(datetime(2026, 3, 1))


@pytest.mark.parametrize(
    "value",
    [
        {"big": 1e20, "integral": 3.0, "tiny": 1.5e-300, "max": 1.7976931348623157e308},
        {"decimal_text": "1.10", "neg": -0.0, "list": [1.0, 2, "3"]},
        {"unicode": 'naïve ✓ \u2028 "quoted" \\ back', "empty": {}, "none": None},
    ],
)
def test_json_that_the_database_normalises_still_hashes_the_same_when_read_back(value):
    written = record(1, before=value)[0]
    stored = AuditEvent.objects.get(pk=written.pk)
    assert record_hash(canonical_record(stored)) == written.hash == stored.hash


def test_chain_verify_accepts_an_intact_chain_and_reports_its_head():
    events = record(5)
    report = chain_verify()
    assert report.ok
    assert (report.checked, report.head_seq, report.head_id) == (5, 5, events[-1].id)
    assert report.head_hash == events[-1].hash


def test_an_empty_log_verifies_with_the_genesis_head():
    report = chain_verify()
    assert report.ok and report.checked == 0 and report.head_hash == GENESIS_HASH


def test_chain_verify_reads_in_pages_of_the_chunk_size(django_assert_max_num_queries):
    record(7)
    with django_assert_max_num_queries(2 + 4 + 1):  # head, checkpoint, 4 pages of 2, the end
        report = chain_verify(chunk_size=2)
    assert report.ok and report.checked == 7


def test_a_rolled_back_write_leaves_no_gap_in_seq():
    record(1)
    with pytest.raises(RuntimeError), transaction.atomic():
        record(1)
        raise RuntimeError("the change failed after it was audited")
    third = record(1)[0]
    assert third.seq == 2
    assert chain_verify().ok


def test_two_events_can_never_share_a_seq():
    """The backstop should a writer ever chain from a stale head: it fails, never forks."""
    event = record(1)[0]
    twin = AuditEvent(
        **{f: getattr(event, f) for f in HASHED_FIELDS if f != "id"},
        prev_hash=event.prev_hash,
        hash=event.hash,
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        twin.save(force_insert=True)


@pytest.mark.django_db(transaction=True)
def test_the_migration_chains_existing_events_in_id_order():
    executor = MigrationExecutor(connection)
    executor.migrate([("audit", "0001_initial")])
    old_apps = executor.loader.project_state([("audit", "0001_initial")]).apps
    OldEvent = old_apps.get_model("audit", "AuditEvent")
    when = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    for n in range(5):
        OldEvent.objects.create(
            occurred_at=when, actor_type="user", actor_id="1", actor_name="alice",
            action="registry.agent.updated", target_type="agent", target_id=str(n),
            target_repr=f"agent-{n}", before={"n": n, "x": 1.0}, after={"n": n + 1},
        )  # fmt: skip
    OldEvent.objects.filter(target_id="2").delete()  # ids 1, 2, 4, 5, 6: not contiguous
    OldEvent.objects.create(
        occurred_at=when, actor_type="system", actor_name="tether", action="late",
        target_type="agent", target_id="9", target_repr="agent-9",
    )  # fmt: skip
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    events = list(AuditEvent.objects.order_by("id"))
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in pairwise(events))
    report = chain_verify()
    assert report.ok and report.checked == 5
    assert record(1)[0].seq == 6  # the writer continues the backfilled chain
    assert chain_verify().ok
