"""What the durable budget ledger says a budget has used, to rebuild a lost hot counter.

Redis holds the hot budget counters and keeps nothing on disk; PostgreSQL holds every amount
charged (``BudgetLedgerEntry``, usage reconciliations included). When a counter is missing
from the store — Redis restarted empty, a key was evicted, or a process-local store is new —
the counter store seeds it from here before it charges anything (counters.py).
"""

from __future__ import annotations

import operator
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from decimal import Decimal
from functools import reduce

from django.db.models import Case, CharField, F, Max, Q, Sum, Value, When

from .models import BudgetLedgerEntry

Period = tuple[int, str]  # (budget id, period key)


@dataclass(frozen=True)
class LedgerState:
    """One budget period as the ledger has it: the amount used, and for a scope budget the
    targets (tools) of the decisions that charged it."""

    total: Decimal
    members: tuple[str, ...] = ()


def ledger_state(
    periods: Iterable[Period], *, distinct: Collection[Period] = ()
) -> dict[Period, LedgerState]:
    """Sum the ledger of every ``periods`` entry in one query.

    For the ``distinct`` ones (scope budgets) the members are the targets of the decisions
    whose ledger rows charged that budget and period with an amount above zero. Only those
    need the join to the decision table; the others group on a constant.
    """
    wanted = sorted(set(periods))
    if not wanted:
        return {}
    where = reduce(operator.or_, (Q(budget_id=b, period_key=p) for b, p in wanted))
    distinct_budgets = {b for b, _ in distinct}
    member = (
        Case(
            When(budget_id__in=distinct_budgets, then=F("decision__target")),
            default=Value(""),
            output_field=CharField(),
        )
        if distinct_budgets
        else Value("", output_field=CharField())
    )
    rows = (
        BudgetLedgerEntry.objects.filter(where)
        .annotate(member=member)
        .values("budget_id", "period_key", "member")
        .annotate(total=Sum("amount"), top=Max("amount"))
        .order_by()
    )
    totals: dict[Period, Decimal] = {p: Decimal(0) for p in wanted}
    members: dict[Period, list[str]] = {p: [] for p in wanted}
    for row in rows:
        period = (row["budget_id"], row["period_key"])
        totals[period] += row["total"] or Decimal(0)
        if row["member"] and (row["top"] or 0) > 0:
            members[period].append(row["member"])
    return {p: LedgerState(totals[p], tuple(sorted(members[p]))) for p in wanted}
