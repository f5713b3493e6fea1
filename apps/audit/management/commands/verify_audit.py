"""``manage.py verify_audit``: recompute the audit hash chain; name the first broken link.

Exits 0 and prints ``OK`` with the count and the head hash when the chain is intact; otherwise
names the first broken event and what is wrong with it, and exits 1. The result is recorded
(the chain page shows it, and an intact result is a checkpoint for the next run) unless
``--no-record`` is given.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.audit import selectors
from apps.audit.constants import CHAIN_CHUNK_SIZE
from apps.audit.services import audit_chain_verify


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = "Recompute the audit log's hash chain and report the first broken link, if any."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--since-id",
            type=_positive,
            metavar="ID",
            help="Start at this event id (its predecessor's hash anchors the walk).",
        )
        parser.add_argument(
            "--chunk-size",
            type=_positive,
            default=CHAIN_CHUNK_SIZE,
            metavar="N",
            help=f"Events read per query (default {CHAIN_CHUNK_SIZE}).",
        )
        parser.add_argument(
            "--no-record",
            action="store_true",
            help="Only read: do not record this verification.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report, _ = audit_chain_verify(
            actor=None,
            since_id=options["since_id"],
            chunk_size=options["chunk_size"],
            record=not options["no_record"],
        )
        for table, state in selectors.append_only_guards().items():
            if state != "enabled":
                self.stderr.write(
                    self.style.WARNING(f"warning: the append-only trigger on {table} is {state}.")
                )
        if report.broken is not None:
            broken = report.broken
            raise CommandError(
                f"BROKEN at event {broken.event_id} (seq {broken.seq}, {broken.kind}): "
                f"{broken.message} {report.checked} event(s) before it verified.",
                returncode=1,
            )
        scope = f" from event {report.since_id}" if report.since_id else ""
        if report.head_seq == 0:
            self.stdout.write(self.style.SUCCESS("OK: the audit log is empty."))
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"OK: {report.checked} event(s) verified{scope}; the chain holds "
                f"{report.head_seq} event(s). Head: event {report.head_id} (seq "
                f"{report.head_seq}) hash {report.head_hash}"
            )
        )
