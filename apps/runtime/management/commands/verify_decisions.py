"""``manage.py verify_decisions``: recompute every sealed block of the decision trail."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.runtime.models import Decision
from apps.runtime.sealing import decisions_seal, decisions_verify


class Command(BaseCommand):
    help = (
        "Recompute the sealed blocks of the decision trail against their audit events; name the "
        "first block that no longer matches (exit status 1)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--seal", action="store_true", help="Seal what is due first (as the beat task does)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["seal"]:
            decisions_seal()
        check = decisions_verify()
        if not check.ok:
            raise CommandError(f"Decision trail BROKEN at {check.problem}")
        unsealed = Decision.objects.filter(id__gt=check.last_sealed_id).count()
        self.stdout.write(
            f"Decision trail OK: {check.decisions} decisions in {check.seals} seals verified; "
            f"{unsealed} newer decisions not sealed yet."
        )
