from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from apps.drift.demo import demo_drift_load
from apps.registry.management.actor import command_actor


class Command(BaseCommand):
    help = "Three weeks of demo runs with a knowledge-base refresh that moved the approval rate."

    def handle(self, *args: Any, **options: Any) -> None:
        made = demo_drift_load(actor=command_actor(None))
        if made:
            self.stdout.write(f"Wrote {made} demo runs and ran the drift job: see /drift/.")
        else:
            self.stdout.write(
                "Drift demo data is there already (or no demo adjudicator); none added."
            )
