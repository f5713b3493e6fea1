"""A console chart: a plotly figure computed by a selector, with the table it was drawn from
(its table view and its CSV), drawn by templates/partials/chart.html and static/js/charts.js."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Chart:
    """One chart: a plotly figure, and the table it was drawn from (its view and its CSV)."""

    key: str
    title: str
    unit: str
    columns: list[str]
    rows: list[list[Any]]
    figure: dict[str, Any] = field(default_factory=dict)
    empty: str = "No spend in this period."
    note: str = ""
    # Per row, the slug of the agent it is about (its costs page is one click away), or "".
    agent_slugs: list[str] = field(default_factory=list)

    @property
    def table(self) -> list[tuple[str, list[Any]]]:
        """(agent slug or "", row) for each row: what the table view draws."""
        slugs = self.agent_slugs or [""] * len(self.rows)
        return list(zip(slugs, self.rows, strict=True))


def figure(
    traces: list[dict[str, Any]], *, x_title: str, y_title: str, legend: bool = True
) -> dict[str, Any]:
    """The chart's card heading is its title (with the unit); the axes say their units too."""
    return {
        "data": traces,
        "layout": {
            "xaxis": {"title": {"text": x_title}, "automargin": True},
            "yaxis": {"title": {"text": y_title}, "tickprefix": "$" if "US dollars" in y_title else "", "rangemode": "tozero", "automargin": True},
            "showlegend": legend,
            "legend": {"orientation": "h", "y": -0.25},
            "margin": {"t": 12, "r": 16, "b": 16, "l": 16},
            "height": 360,
        },
    }  # fmt: skip
