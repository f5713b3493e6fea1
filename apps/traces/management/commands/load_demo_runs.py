"""``manage.py load_demo_runs``: a few finished runs of demo agents, with decisions and spans."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from apps.registry.management.actor import command_actor
from apps.traces.demo import demo_runs_load


class Command(BaseCommand):
    help = "Run a few demo agents once (decisions and spans), so the runs pages have content."

    def handle(self, *args: Any, **options: Any) -> None:
        made = demo_runs_load(actor=command_actor(None))
        if made:
            self.stdout.write(f"Ran {made} demo agent(s): see /runs/.")
        else:
            self.stdout.write("Runs exist already; no demo run added.")
