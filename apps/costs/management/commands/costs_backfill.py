"""``manage.py costs_backfill``: price stored spans and rebuild the cost rollups from them."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.costs.backfill import cost_rollups_rebuild


class Command(BaseCommand):
    help = (
        "Price the spans that have no price yet and rebuild the cost rollups from the spans "
        "(the day rollups from --since, every run and task)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", help="First UTC day to rebuild, YYYY-MM-DD (default: all).")
        parser.add_argument(
            "--reprice",
            action="store_true",
            help="Price every span again (after a negotiated price was set for past days).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        since = None
        if options["since"]:
            try:
                since = date.fromisoformat(options["since"])
            except ValueError:
                raise CommandError("--since takes a day as YYYY-MM-DD, e.g. 2026-11-01.") from None
        result = cost_rollups_rebuild(since=since, reprice=options["reprice"])
        self.stdout.write(
            f"Priced {result.priced} span(s); rebuilt {result.day_rows} day row(s), "
            f"{result.runs} run(s) and {result.tasks} task(s)."
        )
