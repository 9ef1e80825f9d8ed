"""Assembly of a calendar from GitHub's yearly windows: days, per-year totals and streaks."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime

from nadzu_common.contributions import ContributionCalendar, ContributionDay, YearTotal

from .github import WindowCalendar
from .span import Span
from .streaks import compute_streaks


def zero_window(login: str, window: Span) -> WindowCalendar:
    """Build a window of zero days, for years in which GitHub lists no contributions."""
    days = [ContributionDay(date=day, count=0, level=0) for day in window.dates()]
    return WindowCalendar(login=login, days=days, contribution_years=[])


def build_calendar(
    span: Span, windows: list[WindowCalendar], today: date, fetched_at: datetime
) -> ContributionCalendar:
    """Merge the windows of `span` into one calendar.

    Only days inside the span count, and a day GitHub left out counts as zero, so totals and streaks cover
    exactly the span whatever week boundaries GitHub's calendar used.
    """
    by_date: dict[date, ContributionDay] = {}
    for window in windows:
        for day in window.days:
            if span.first <= day.date <= span.last:
                by_date[day.date] = day

    days = [by_date.get(day) or ContributionDay(date=day, count=0, level=0) for day in span.dates()]

    year_totals: dict[int, int] = defaultdict(int)
    for day in days:
        year_totals[day.date.year] += day.count
    years = [YearTotal(year=year, total=total) for year, total in sorted(year_totals.items())]

    # GitHub's spelling of the login, from the newest window (the one fetched for sure).
    login = windows[-1].login
    return ContributionCalendar(
        username=login,
        **{"from": span.first, "to": span.last},
        total=sum(day.count for day in days),
        days=days,
        years=years,
        streaks=compute_streaks(days, today),
        fetched_at=fetched_at,
        cached=False,
    )
