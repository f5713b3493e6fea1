"""``manage.py load_demo_approvals``: a few pending approval requests of demo agents."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from apps.approvals.demo import demo_approvals_load
from apps.registry.management.actor import command_actor


class Command(BaseCommand):
    help = "Have a few demo agents ask for gated steps once, so the approvals inbox has content."

    def handle(self, *args: Any, **options: Any) -> None:
        opened = demo_approvals_load(actor=command_actor(None))
        if opened:
            self.stdout.write(f"Opened {opened} demo approval request(s): see /approvals/.")
        else:
            self.stdout.write("Approval requests exist already; none added.")
