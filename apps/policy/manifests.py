"""``kind: Policy`` in manifests: admin Cedar policies as YAML, applied through the policy
services (admins only, checked against Tether's Cedar schema, versioned, audited).

```yaml
apiVersion: tether/v1
kind: Policy
metadata: {slug: no-prod-deletes, name: No deletes in prod}
spec:
  description: Nothing deletes in production without a person.
  enabled: true
  text: |
    forbid (principal, action == Action::"tool.invoke", resource)
    when { context.environment == "prod" && context.tool_action == "delete" };
```

Registered with the registry's manifests from ``PolicyConfig.ready`` (the registry may not
import this app). Policies are applied after agents; a policy that changes text writes a new
version with the comment "Applied from a manifest".
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError

from apps.accounts.models import User
from apps.common.errors import ApplicationError
from apps.registry.manifests import (
    REQUIRED,
    ManifestContext,
    ManifestEntry,
    ManifestKind,
    register_kind,
)

from . import services
from .models import Policy
from .selectors import can_read_policies

KIND_POLICY = "Policy"
COMMENT = "Applied from a manifest"

POLICY_SPEC: dict[str, tuple[str, Any]] = {
    "description": ("text", ""),
    "enabled": ("bool", True),
    "text": ("text", REQUIRED),
}


def policy_spec(policy: Policy) -> dict[str, Any]:
    return {"description": policy.description, "enabled": policy.enabled, "text": policy.text}


def _current(slug: str) -> tuple[Policy | None, dict[str, Any] | None]:
    policy = Policy.objects.filter(slug=slug).first()
    return policy, policy_spec(policy) if policy else None


def _hidden(actor: User, slug: str) -> bool:
    return Policy.objects.filter(slug=slug).exists() and not can_read_policies(actor)


def _check(entry: ManifestEntry, context: ManifestContext) -> list[tuple[str, str]]:
    """The model's validators (slug, lengths) and the Cedar text, every problem at once."""
    problems: list[tuple[str, str]] = []
    spec = entry.spec
    probe = Policy(
        name=entry.name or "", slug=entry.slug, description=spec.get("description") or "",
        text=spec.get("text") or "",
    )  # fmt: skip
    paths = {"name": "metadata.name", "slug": "metadata.slug"}
    try:
        probe.clean_fields(exclude=["created_by", "updated_by", "enabled"])
    except ValidationError as exc:
        for field, messages in exc.message_dict.items():
            problems.extend((paths.get(field, f"spec.{field}"), m) for m in messages)
    if isinstance(spec.get("text"), str) and not any(p[0] == "spec.text" for p in problems):
        try:
            services.policy_check_text(spec["text"], slug=entry.slug)
        except ApplicationError as exc:
            problems.extend(("spec.text", str(m)) for m in exc.details.get("text", [exc.message]))
    return problems


def _apply(actor: User, entry: ManifestEntry, instance: Any) -> None:
    data = {
        "name": entry.name or "",
        "description": entry.spec["description"],
        "text": entry.spec["text"],
        "enabled": entry.spec["enabled"],
    }
    if isinstance(instance, Policy):
        services.policy_update(actor=actor, policy=instance, data=data, comment=COMMENT)
    else:
        services.policy_create(actor=actor, data={**data, "slug": entry.slug, "comment": COMMENT})


def _export(user: Any) -> list[tuple[str, str, dict[str, Any]]]:
    if not can_read_policies(user):
        return []
    return [(p.slug, p.name, policy_spec(p)) for p in Policy.objects.order_by("slug")]


def register() -> None:
    register_kind(
        ManifestKind(
            kind=KIND_POLICY, spec=POLICY_SPEC, current=_current, hidden=_hidden, check=_check,
            apply=_apply, export=_export, api_view="policy-api:policy-detail",
        )
    )  # fmt: skip
