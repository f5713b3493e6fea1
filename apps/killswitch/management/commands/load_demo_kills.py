"""``manage.py load_demo_kills``: one automatic kill of a looping demo run."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from apps.killswitch.demo import demo_kills_load
from apps.registry.management.actor import command_actor


class Command(BaseCommand):
    help = "Stop one demo run with the kill switch, so its pages and incident have content."

    def handle(self, *args: Any, **options: Any) -> None:
        if demo_kills_load(actor=command_actor(None)):
            self.stdout.write("Stopped one looping demo run: see /kill/.")
        else:
            self.stdout.write("A kill switch exists already (or no demo agent fits); none added.")
