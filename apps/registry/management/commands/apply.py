"""``manage.py apply -f FILE``: validate a manifest whole, show the plan, apply it (or not)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.registry.manifests import (
    CREATE,
    MAX_MANIFEST_BYTES,
    UPDATE,
    ApplyResult,
    ManifestError,
    describe_problem,
    manifest_apply_files,
)

from ..actor import command_actor

_MARKS = {CREATE: "+", UPDATE: "~"}


def read_manifest_files(names: list[str]) -> list[tuple[str, str]]:
    """Files, directories (their *.yaml and *.yml, in name order) or ``-`` for standard input."""
    paths: list[Path] = []
    sources: list[tuple[str, str]] = []
    for name in names:
        if name == "-":
            sources.append(("<stdin>", sys.stdin.read(MAX_MANIFEST_BYTES + 1)))
            continue
        path = Path(name)
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml")
            )
            if not found:
                raise CommandError(f"{name}: no *.yaml files in this directory.")
            paths.extend(found)
        elif path.is_file():
            paths.append(path)
        else:
            raise CommandError(f"{name}: no such file or directory.")
    for path in paths:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise CommandError(
                f"{path}: {path.stat().st_size / 1024 / 1024:.1f} MiB; a manifest may be at most "
                f"{MAX_MANIFEST_BYTES // 1024 // 1024} MiB."
            )
        try:
            sources.append((str(path), path.read_text(encoding="utf-8")))
        except UnicodeDecodeError as exc:
            raise CommandError(
                f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})."
            ) from exc
    return sources


def format_plan(result: ApplyResult) -> list[str]:
    """``+ create Agent claims-triage``, ``~ update Tool x (fields)``, ``= unchanged ...``."""
    lines = []
    for change in result.changes:
        mark = _MARKS.get(change.action, "=")
        fields = f" ({', '.join(change.fields)})" if change.fields else ""
        lines.append(f"{mark} {change.action} {change.kind} {change.slug}{fields}")
    counts = result.counts()
    summary = (
        f"{counts[CREATE]} to create, {counts[UPDATE]} to update, {counts['unchanged']} unchanged."
    )
    if result.applied:
        lines.append(f"Applied: {summary}")
    else:
        lines.append(f"Plan: {summary} Dry run: nothing was written.")
    return lines


class Command(BaseCommand):
    help = (
        "Apply YAML manifests (kind: Agent, Tool, MemoryStore). The whole input is checked "
        "first and applied in one transaction, or not at all."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "-f", "--filename", dest="files", action="append", required=True, metavar="FILE",
            help="A manifest file, a directory of *.yaml files, or - for standard input. "
            "Repeat to apply several as one.",
        )  # fmt: skip
        parser.add_argument(
            "--dry-run", action="store_true", help="Show what would change; write nothing."
        )
        parser.add_argument(
            "--as", dest="as_user", metavar="USERNAME",
            help="Act as this user (default: the only admin).",
        )  # fmt: skip

    def handle(self, *args: Any, **options: Any) -> None:
        actor = command_actor(options["as_user"])
        sources = read_manifest_files(options["files"])
        try:
            result = manifest_apply_files(actor=actor, files=sources, dry_run=options["dry_run"])
        except ManifestError as exc:
            self.stderr.write(f"{len(exc.problems)} problem(s); nothing was applied:")
            for problem in exc.problems:
                self.stderr.write(f"  - {describe_problem(problem)}")
            raise CommandError(exc.message) from exc
        for line in format_plan(result):
            self.stdout.write(line)
