"""``manage.py load_demo_costs``: ninety days of demo spend for the finance console."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from apps.costs.demo import demo_costs_load
from apps.registry.management.actor import command_actor


class Command(BaseCommand):
    help = "Store 90 days of priced model calls for the demo agents, so /costs/ has history."

    def handle(self, *args: Any, **options: Any) -> None:
        made = demo_costs_load(actor=command_actor(None))
        if made:
            self.stdout.write(f"Stored 90 days of demo spend ({made} runs): see /costs/.")
        else:
            self.stdout.write(
                "Spend is recorded already (or no demo agent runs in prod); none added."
            )
