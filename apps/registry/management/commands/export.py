"""``manage.py export``: the registry as one manifest, byte-stable, to a file or stdout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from apps.registry.manifests import manifest_export

from ..actor import command_actor


class Command(BaseCommand):
    help = "Write every tool, memory store and agent the user may see as a YAML manifest."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("-o", "--output", metavar="FILE", help="Write here (default: stdout).")
        parser.add_argument(
            "--as", dest="as_user", metavar="USERNAME",
            help="Export what this user may see (default: the only admin).",
        )  # fmt: skip

    def handle(self, *args: Any, **options: Any) -> None:
        text = manifest_export(user=command_actor(options["as_user"]))
        if options["output"]:
            Path(options["output"]).write_bytes(text.encode("utf-8"))
        else:
            self.stdout.write(text, ending="")
