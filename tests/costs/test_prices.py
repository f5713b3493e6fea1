"""Model prices: the maintained catalogue, an admin's negotiated rates with effective dates, and
unknown models charged at the worst case, never as free."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.costs.models import ModelPrice
from apps.costs.prices import PriceSource, forget_prices, model_cost

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_prices():
    forget_prices()
    yield
    forget_prices()


def test_a_known_model_is_priced_from_the_catalogue():
    # gpt-4o in the package's snapshot: $2.50 in, $10 out, $1.25 cached input, per million.
    cost = model_cost(
        model="gpt-4o", provider="openai", input_tokens=1_000_000, output_tokens=100_000
    )
    assert (cost.usd, cost.source, cost.priced) == (Decimal("3.500000"), "catalogue", True)
    cached = model_cost(
        model="gpt-4o", provider="openai", input_tokens=1_000_000, cached_tokens=1_000_000
    )
    assert cached.usd == Decimal("1.250000")


def test_an_override_takes_over_from_its_date_and_the_newest_in_force_wins():
    now = timezone.now()
    ModelPrice.objects.create(
        model="gpt-4o", provider="openai", effective_from=now - timedelta(days=30),
        input_per_mtok=Decimal("2"), output_per_mtok=Decimal("8"),
    )  # fmt: skip
    ModelPrice.objects.create(
        model="gpt-4o", provider="openai", effective_from=now + timedelta(days=1),
        input_per_mtok=Decimal("1"), output_per_mtok=Decimal("4"),
    )  # fmt: skip
    forget_prices()

    today = model_cost(
        model="gpt-4o", provider="openai", input_tokens=1_000_000, output_tokens=1_000_000
    )
    tomorrow = model_cost(
        model="gpt-4o", provider="openai", input_tokens=1_000_000, output_tokens=1_000_000,
        at=now + timedelta(days=2),
    )  # fmt: skip
    before = model_cost(
        model="gpt-4o", provider="openai", input_tokens=1_000_000, at=now - timedelta(days=60)
    )
    assert (today.usd, today.source) == (Decimal("10.000000"), PriceSource.OVERRIDE)
    assert tomorrow.usd == Decimal("5.000000")
    assert before.source == PriceSource.CATALOGUE  # no override was in force yet


def test_an_override_for_any_provider_applies_and_cached_input_defaults_to_input():
    ModelPrice.objects.create(
        model="house-model", effective_from=timezone.now() - timedelta(days=1),
        input_per_mtok=Decimal("4"), output_per_mtok=Decimal("12"),
    )  # fmt: skip
    forget_prices()
    cost = model_cost(
        model="house-model", provider="azure", input_tokens=500_000, cached_tokens=250_000
    )
    assert (cost.usd, cost.source) == (Decimal("2.000000"), PriceSource.OVERRIDE)


def test_an_unknown_model_is_unpriced_and_charged_the_worst_case(settings):
    settings.TETHER_UNPRICED_INPUT_PER_MTOK = 100
    settings.TETHER_UNPRICED_OUTPUT_PER_MTOK = 400
    cost = model_cost(model="made-up-model-9000", input_tokens=10_000, output_tokens=1_000)
    assert (cost.usd, cost.source, cost.priced) == (Decimal("1.400000"), "unpriced", False)
    assert model_cost(model="", input_tokens=1).priced is False


def test_nonsense_token_counts_never_make_a_negative_or_inflated_cost():
    cost = model_cost(
        model="gpt-4o", provider="openai", input_tokens=-5, output_tokens=-1, cached_tokens=99
    )
    assert cost.usd == Decimal("0.000000")


def test_prices_cannot_be_negative():
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        ModelPrice.objects.create(
            model="x", effective_from=timezone.now(), input_per_mtok=Decimal("-1"),
            output_per_mtok=Decimal("1"),
        )  # fmt: skip


def test_an_admin_sets_a_negotiated_price_audited_and_used_at_once(org):
    from apps.audit.models import AuditEvent
    from apps.common.errors import ApplicationError, Conflict, NotPermitted
    from apps.costs.services import model_price_set

    when = timezone.now() - timedelta(hours=1)
    model_price_set(
        actor=org.admin, model="gpt-4o", provider="openai", effective_from=when,
        input_per_mtok="2", output_per_mtok="8", note="Enterprise agreement 2026",
    )  # fmt: skip
    forget_prices()  # on_commit does not run in this test's transaction

    cost = model_cost(model="gpt-4o", provider="openai", input_tokens=1_000_000)
    assert (cost.usd, cost.source) == (Decimal("2.000000"), "override")
    event = AuditEvent.objects.get(action="costs.price.set")
    assert event.actor_name == org.admin.username and event.after["input_per_mtok"] == "2.000000"

    with pytest.raises(NotPermitted):
        model_price_set(actor=org.finance, model="gpt-4o", effective_from=when,
                        input_per_mtok="1", output_per_mtok="1")  # fmt: skip
    for bad in ("-1", "cheap", "NaN", "1e30"):
        with pytest.raises(ApplicationError, match="input_per_mtok"):
            model_price_set(actor=org.admin, model="m", effective_from=when,
                            input_per_mtok=bad, output_per_mtok="1")  # fmt: skip
    with pytest.raises(Conflict):
        model_price_set(actor=org.admin, model="gpt-4o", provider="openai", effective_from=when,
                        input_per_mtok="3", output_per_mtok="9")  # fmt: skip
