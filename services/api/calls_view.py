"""The run's calls page: filters from the query string, a page of records, the summary
cards and the calls-per-second / concurrent-calls charts. Pure (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from callmeter_storage.calls import STATUSES, CallFilter

from .query_string import choice, number, text
from .svg import Chart, Series, line_chart

PER_PAGE = (25, 50, 100, 500)


@dataclass(frozen=True)
class CallQuery:
    """What the calls page shows; every field comes from the query string."""

    status: str = ""
    outcome: str = ""
    group: str = ""
    sip_code: str = ""
    page: int = 1
    per_page: int = 50

    @classmethod
    def parse(cls, params: dict[str, str]) -> CallQuery:
        """Unknown or malformed values fall back to their default (a page never fails)."""
        code = params.get("sip_code", "")
        return cls(
            status=choice(params, "status", STATUSES),
            outcome=text(params, "outcome", 40),
            group=text(params, "group", 40),
            sip_code=code if code.isdigit() and len(code) == 3 else "",
            page=number(params, "page", 1),
            per_page=number(params, "per_page", 50, allowed=PER_PAGE),
        )

    def filter(self) -> CallFilter:
        return CallFilter(
            status=self.status or None,
            outcome=self.outcome or None,
            group=self.group or None,
            sip_code=int(self.sip_code) if self.sip_code else None,
        )

    def params(self, **override: Any) -> dict[str, Any]:
        values = {
            "status": self.status,
            "outcome": self.outcome,
            "group": self.group,
            "sip_code": self.sip_code,
            "per_page": self.per_page,
            "page": self.page,
            **override,
        }
        return {k: v for k, v in values.items() if v not in ("", None)}

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page


def pages(total: int, per_page: int) -> int:
    return max(1, -(-total // per_page))


def charts(series: dict[str, Any]) -> list[str]:
    """Calls per second attempted / established / failed, and concurrent calls."""
    t = series["t"]
    rates = Chart(
        "Calls per second",
        "calls/s",
        [
            Series(name, list(zip(t, series[key], strict=True)))
            for key, name in (
                ("attempted", "attempted"),
                ("established", "established"),
                ("failed", "failed"),
            )
        ],
        y_min=0,
    )
    concurrent = Chart(
        "Concurrent calls",
        "",
        [Series("in progress", list(zip(t, series["concurrent"], strict=True)))],
        y_min=0,
    )
    return [line_chart(rates), line_chart(concurrent)]
