"""The chargeback export's two shapes, CSV rows and JSON, for the console and the API alike."""

from __future__ import annotations

from typing import Any

from .dashboard import Chargeback

CHARGEBACK_COLUMNS = [
    "kind", "month", "department", "team", "agent", "business_process", "environment",
    "provider", "model", "priced_from", "calls", "cost_usd",
]  # fmt: skip


def chargeback_rows(report: Chargeback) -> list[list[Any]]:
    """One ``line`` row per line, then its department's ``department_total`` (to the cent)."""
    month = f"{report.month:%Y-%m}"
    rows: list[list[Any]] = []
    for name, total, lines in report.departments:
        for line in lines:
            rows.append([
                "line", month, line.department, line.team, line.agent, line.business_process,
                line.environment, line.provider, line.model, line.source, line.calls,
                line.cost_usd,
            ])  # fmt: skip
        calls = sum(line.calls for line in lines)
        rows.append(["department_total", month, name, *[""] * 7, calls, total])
    return rows


def chargeback_json(report: Chargeback) -> dict[str, Any]:
    return {
        "month": f"{report.month:%Y-%m}",
        "currency": "USD",
        "total_usd": str(report.total),
        "departments": [
            {
                "department": name,
                "total_usd": str(total),
                "lines": [
                    {
                        "team": line.team, "agent": line.agent,
                        "business_process": line.business_process,
                        "environment": line.environment, "provider": line.provider,
                        "model": line.model, "priced_from": line.source, "calls": line.calls,
                        "cost_usd": str(line.cost_usd),
                    }
                    for line in lines
                ],
            }
            for name, total, lines in report.departments
        ],
    }  # fmt: skip
