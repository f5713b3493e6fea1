"""Personas (owner, other owner, approver, finance, admin, auditor, outsider) in two departments."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from apps.accounts.models import Department, Team, User

from .factories import make_department, make_team, make_user


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    """Real hashing costs ~0.3 s per user; tests are not about hashing strength."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def plain_static_storage(settings) -> None:
    """Templates call {% static %}; the hashed-manifest storage would need collectstatic first.

    The browser tests' live server answers /static/ itself through the finders (pytest-django
    wraps it in StaticFilesHandler), so a fresh clone needs no collectstatic for them either.
    """
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def no_frozen_memory_from_earlier_tests() -> None:
    """The frozen-stores table is per process; a rolled-back test's switch must not linger."""
    from apps.killswitch.freeze import forget_freeze

    forget_freeze()


@pytest.fixture(autouse=True)
def no_cost_tables_from_earlier_tests() -> None:
    """The costs app keeps agents' departments and this month's spend per process."""
    from apps.costs.rollups import forget_attributions, forget_month_spend

    forget_attributions()
    forget_month_spend()


@pytest.fixture(autouse=True)
def no_tool_costs_from_earlier_tests() -> None:
    """The tool-costs table is per process too; a rolled-back test's tools must not linger."""
    from apps.registry.tool_costs import forget_tool_costs

    forget_tool_costs()


@pytest.fixture(autouse=True)
def default_data_classes(request: pytest.FixtureRequest) -> None:
    """The data classes a migration creates. Transactional tests flush the database when they
    end, so put them back for every test that uses the database, whatever ran before it."""
    if not {"db", "transactional_db", "live_server"} & set(request.fixturenames) and not (
        request.node.get_closest_marker("django_db")
    ):
        return
    request.getfixturevalue("transactional_db" if _is_transactional(request) else "db")
    from apps.registry.constants import DEFAULT_DATA_CLASSES
    from apps.registry.models import DataClass

    for rank, (slug, name, description) in enumerate(DEFAULT_DATA_CLASSES):
        DataClass.objects.get_or_create(
            slug=slug, defaults={"name": name, "description": description, "sensitivity": rank}
        )


def _is_transactional(request: pytest.FixtureRequest) -> bool:
    marker = request.node.get_closest_marker("django_db")
    return bool(
        "transactional_db" in request.fixturenames
        or "live_server" in request.fixturenames
        or (marker and marker.kwargs.get("transaction"))
    )


@dataclass
class Org:
    claims: Department
    claims_ops: Team
    payments: Department
    owner: User  # owner in claims
    other_owner: User  # owner in payments
    approver: User  # approver in claims
    finance: User  # finance, organisation-wide
    admin: User
    auditor: User  # auditor, organisation-wide
    outsider: User  # no role at all


@pytest.fixture
def org(db: None) -> Org:
    claims = make_department("claims", name="Claims")
    claims_ops = make_team(claims, "claims-ops", name="Claims Ops")
    payments = make_department("payments", name="Payments")
    return Org(
        claims=claims,
        claims_ops=claims_ops,
        payments=payments,
        owner=make_user("alice", ("owner", claims)),
        other_owner=make_user("bob", ("owner", payments)),
        approver=make_user("carol", ("approver", claims)),
        finance=make_user("fiona", ("finance", None)),
        admin=make_user("ada", ("admin", None)),
        auditor=make_user("audrey", ("auditor", None)),
        outsider=make_user("oscar"),
    )
