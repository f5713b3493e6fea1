"""``manage.py load_demo``: the demo organisation (safe to run again: it then changes nothing)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.common.errors import ApplicationError
from apps.registry.demo import demo_load
from apps.registry.manifests import ManifestError, describe_problem

from .apply import format_plan


class Command(BaseCommand):
    help = (
        "Load the demo organisation from docs/examples: people.yaml, the manifests, then "
        "changes/*.yaml in order. Idempotent."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = demo_load()
        except ManifestError as exc:
            for problem in exc.problems:
                self.stderr.write(f"  - {describe_problem(problem)}")
            raise CommandError(exc.message) from exc
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc

        created = ", ".join(f"{n} {what}" for what, n in result.created.items() if n)
        if not result.changed_anything:
            self.stdout.write("The demo organisation is already loaded; nothing changed.")
        else:
            if created:
                self.stdout.write(f"Created {created}.")
            for what, applied in result.applied:
                counts = applied.counts()
                self.stdout.write(
                    f"Applied {what}: {counts['create']} created, {counts['update']} updated, "
                    f"{counts['unchanged']} unchanged."
                )
                if options["verbosity"] > 1:
                    for line in format_plan(applied)[:-1]:
                        self.stdout.write(f"    {line}")

        width = max((len(login.username) for login in result.logins), default=8)
        self.stdout.write("")
        self.stdout.write(f"Demo logins (password for all: {result.password}):")
        for login in result.logins:
            roles = ", ".join(login.roles) or "no role (sees nothing)"
            self.stdout.write(f"  {login.username:<{width}}  {login.full_name:<18}  {roles}")
