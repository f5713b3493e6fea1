"""The demo organisation: people from ``docs/examples/people.yaml``, then the manifests beside
it, then ``docs/examples/changes/*.yaml`` in order (so some agents have several versions).

Loading is idempotent. People, departments, teams and roles are only ever added when missing;
the manifests are applied only when the registry is not already in the state the demo ends in,
so a second run writes nothing, not even an audit event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction

from apps.accounts.constants import Role
from apps.accounts.models import Department, RoleAssignment, Team, User
from apps.accounts.services import role_assign
from apps.audit.services import Actor, audit_record
from apps.common.errors import ApplicationError

from .manifests import (
    UNCHANGED,
    ApplyResult,
    dump_documents,
    manifest_apply_files,
    manifest_plan,
)

PEOPLE_FILE = "people.yaml"


def demo_directory() -> Path:
    return Path(settings.BASE_DIR) / "docs" / "examples"


@dataclass(frozen=True)
class DemoLogin:
    username: str
    full_name: str
    roles: list[str]


@dataclass
class DemoResult:
    password: str
    logins: list[DemoLogin]
    created: dict[str, int] = field(default_factory=dict)  # departments, teams, users, roles
    applied: list[tuple[str, ApplyResult]] = field(default_factory=list)  # (what, result)

    @property
    def changed_anything(self) -> bool:
        return any(self.created.values()) or bool(self.applied)


# --- people.yaml -----------------------------------------------------------------------------


def _fail(message: str) -> None:
    raise ApplicationError(f"{PEOPLE_FILE}: {message}")


def _mapping(value: Any, where: str, allowed: set[str], required: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        _fail(f"{where} must be a mapping.")
    unknown = sorted(str(k) for k in value if k not in allowed)
    if unknown:
        _fail(f"{where}: unknown key(s) {', '.join(unknown)}; use {', '.join(sorted(allowed))}.")
    missing = sorted(required - set(value))
    if missing:
        _fail(f"{where}: missing {', '.join(missing)}.")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        _fail(f"{where} must be text.")
    return value


def read_people(path: Path) -> dict[str, Any]:
    """people.yaml, checked: password, departments (with teams) and users (with roles)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    people = _mapping(data, "the file", {"password", "departments", "users"}, {"password", "users"})
    _text(people["password"], "password")
    for i, dept in enumerate(people.get("departments") or []):
        where = f"departments[{i}]"
        _mapping(dept, where, {"slug", "name", "description", "teams"}, {"slug", "name"})
        for j, team in enumerate(dept.get("teams") or []):
            _mapping(team, f"{where}.teams[{j}]", {"slug", "name"}, {"slug", "name"})
    roles = set(Role.values)
    for i, user in enumerate(people["users"] or []):
        where = f"users[{i}]"
        allowed = {"username", "first_name", "last_name", "email", "superuser", "roles"}
        _mapping(user, where, allowed, {"username"})
        for j, role in enumerate(user.get("roles") or []):
            _mapping(role, f"{where}.roles[{j}]", {"role", "department", "team"}, {"role"})
            if role["role"] not in roles:
                _fail(f"{where}.roles[{j}]: unknown role {role['role']!r}; use {', '.join(roles)}.")
    return people


def _ensure_structure(people: dict[str, Any], created: dict[str, int]) -> None:
    system = Actor.system("load_demo")
    for dept_data in people.get("departments") or []:
        dept = Department.objects.filter(slug=dept_data["slug"]).first()
        if dept is None:
            dept = Department(
                slug=dept_data["slug"], name=dept_data["name"],
                description=dept_data.get("description", ""),
            )  # fmt: skip
            _clean(dept, f"department {dept_data['slug']}")
            dept.save()
            created["departments"] += 1
            audit_record(
                actor=system, action="accounts.department.created", target_type="department",
                target_id=dept.pk, target_repr=dept.slug, after={"name": dept.name},
            )  # fmt: skip
        for team_data in dept_data.get("teams") or []:
            if Team.objects.filter(slug=team_data["slug"]).exists():
                continue
            team = Team(department=dept, slug=team_data["slug"], name=team_data["name"])
            _clean(team, f"team {team_data['slug']}")
            team.save()
            created["teams"] += 1
            audit_record(
                actor=system, action="accounts.team.created", target_type="team",
                target_id=team.pk, target_repr=team.slug,
                after={"name": team.name, "department": dept.slug},
            )  # fmt: skip


def _clean(instance: Any, what: str) -> None:
    try:
        instance.full_clean()
    except ValidationError as exc:
        _fail(f"{what}: {'; '.join(exc.messages)}")


def _ensure_users(people: dict[str, Any], created: dict[str, int]) -> list[DemoLogin]:
    password = people["password"]
    logins = []
    for data in people["users"] or []:
        user = User.objects.filter(username=data["username"]).first()
        if user is None:
            user = User(
                username=data["username"], first_name=data.get("first_name", ""),
                last_name=data.get("last_name", ""), email=data.get("email", ""),
            )  # fmt: skip
            try:
                validate_password(password, user)
            except ValidationError as exc:
                _fail(f"the demo password fails for {user.username}: {' '.join(exc.messages)}")
            superuser = bool(data.get("superuser"))
            user = User.objects.create_user(
                username=user.username, password=password, first_name=user.first_name,
                last_name=user.last_name, email=user.email, is_staff=superuser,
                is_superuser=superuser,
            )  # fmt: skip
            created["users"] += 1
        shown = []
        for role in data.get("roles") or []:
            department = team = None
            if role.get("department"):
                department = Department.objects.filter(slug=role["department"]).first()
                if department is None:
                    _fail(f"{user.username}: no department {role['department']!r}.")
            if role.get("team"):
                team = Team.objects.filter(slug=role["team"]).first()
                if team is None:
                    _fail(f"{user.username}: no team {role['team']!r}.")
            exists = RoleAssignment.objects.filter(
                user=user, role=role["role"], department=department, team=team
            ).exists()
            if not exists:  # role_assign audits every call; only call it for a new role
                role_assign(
                    actor=None, user=user, role=role["role"], department=department, team=team
                )
                created["roles"] += 1
            scope = team.name if team else department.name if department else "organisation"
            shown.append(f"{role['role']} ({scope})")
        logins.append(DemoLogin(user.username, user.get_full_name(), shown))
    return logins


def _demo_admin(people: dict[str, Any]) -> User:
    for data in people["users"] or []:
        if any(r["role"] == Role.ADMIN and not r.get("department") and not r.get("team")
               for r in data.get("roles") or []):  # fmt: skip
            return User.objects.get(username=data["username"])
    _fail("no user with the organisation-wide admin role to apply the manifests as.")
    raise AssertionError  # unreachable: _fail raises


# --- manifests -------------------------------------------------------------------------------


def _read(paths: list[Path], root: Path) -> list[tuple[str, str]]:
    return [(str(p.relative_to(root)), p.read_text(encoding="utf-8")) for p in paths]


def _final_state(files: list[tuple[str, str]]) -> str:
    """The manifests with each object as its last file states it: where the demo ends."""
    final: dict[tuple[str, str], Any] = {}
    for _, text in files:
        for doc in yaml.safe_load_all(text):
            if isinstance(doc, dict):
                key = (str(doc.get("kind")), str((doc.get("metadata") or {}).get("slug")))
                final.pop(key, None)  # keep the order of the last statement
                final[key] = doc
    return dump_documents(list(final.values()))


@transaction.atomic
def demo_load(*, directory: Path | None = None) -> DemoResult:
    """Create the demo people and apply the demo manifests, unless they are already there."""
    root = directory or demo_directory()
    people = read_people(root / PEOPLE_FILE)
    created = {"departments": 0, "teams": 0, "users": 0, "roles": 0}
    _ensure_structure(people, created)
    logins = _ensure_users(people, created)
    admin = _demo_admin(people)
    result = DemoResult(password=people["password"], logins=logins, created=created)

    base = _read(sorted(p for p in root.glob("*.yaml") if p.name != PEOPLE_FILE), root)
    changes = [
        (name, [(name, text)]) for name, text in _read(sorted(root.glob("changes/*.yaml")), root)
    ]
    plan = manifest_plan(
        actor=admin, files=[("demo", _final_state(base + [c[1][0] for c in changes]))]
    )
    if all(change.action == UNCHANGED for change in plan.changes):
        return result
    result.applied.append(("base manifests", manifest_apply_files(actor=admin, files=base)))
    for name, files in changes:
        result.applied.append((name, manifest_apply_files(actor=admin, files=files)))
    return result
