"""Span validation, window splitting, streaks, rate-limit headers and the SVG, without any server."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta

import pytest

from nadzu_common.contributions import ContributionDay
from nadzu_contributions.calendar import build_calendar
from nadzu_contributions.errors import InvalidDateRange, InvalidUsername
from nadzu_contributions.github import WindowCalendar, rate_limit_wait
from nadzu_contributions.span import Span, resolve_span, validate_username
from nadzu_contributions.streaks import compute_streaks
from nadzu_contributions.svg import DARK, LIGHT, render_svg

TODAY = date(2025, 3, 15)
SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize("login", ["a", "octocat", "Octo-Cat", "a1-b2-c3", "x" * 39, "9lives"])
def test_username_valid(login: str) -> None:
    assert validate_username(login) == login


@pytest.mark.parametrize("login", ["", "-abc", "abc-", "a--b", "x" * 40, "a_b", "a.b", "ü", "a b", "../x"])
def test_username_invalid(login: str) -> None:
    with pytest.raises(InvalidUsername):
        validate_username(login)


def test_span_default_is_365_days_ending_today() -> None:
    span = resolve_span(None, None, None, TODAY)
    assert span.last == TODAY
    assert span.days == 365


def test_span_year_cut_at_today() -> None:
    assert resolve_span("2024", None, None, TODAY) == Span(date(2024, 1, 1), date(2024, 12, 31))
    assert resolve_span("2025", None, None, TODAY) == Span(date(2025, 1, 1), TODAY)


def test_span_twenty_years_accepted() -> None:
    span = resolve_span(None, "2005-03-16", "2025-03-15", TODAY)
    assert span.first == date(2005, 3, 16)


@pytest.mark.parametrize(
    ("year", "first", "last", "field", "code"),
    [
        ("abcd", None, None, "year", "invalid_format"),
        ("25", None, None, "year", "invalid_format"),
        ("1969", None, None, "year", "out_of_range"),
        ("2026", None, None, "year", "out_of_range"),
        ("2024", "2024-01-01", "2024-02-01", "year", "conflict"),
        (None, "2024-01-01", None, "to", "missing"),
        (None, None, "2024-01-01", "from", "missing"),
        (None, "2024-02-30", "2024-03-01", "from", "invalid_date"),
        (None, "2024/01/01", "2024-03-01", "from", "invalid_format"),
        (None, "2024-03-02", "2024-03-01", "from", "after_to"),
        (None, "2025-01-01", "2025-03-16", "to", "in_future"),
        (None, "2005-03-15", "2025-03-15", "to", "span_too_long"),
    ],
)
def test_span_invalid(year: str | None, first: str | None, last: str | None, field: str, code: str) -> None:
    with pytest.raises(InvalidDateRange) as caught:
        resolve_span(year, first, last, TODAY)
    assert caught.value.errors[0].field == field
    assert caught.value.errors[0].code == code


def test_windows_cover_span_within_a_year() -> None:
    span = Span(date(2005, 3, 16), date(2025, 3, 15))
    windows = span.windows()
    assert windows[0].first == span.first
    assert windows[-1].last == span.last
    for earlier, later in itertools.pairwise(windows):
        assert later.first == earlier.last + timedelta(days=1)
    assert all(window.days <= 366 for window in windows)
    assert len(windows) == 20


def test_windows_single_for_one_year() -> None:
    assert len(resolve_span(None, None, None, TODAY).windows()) == 1
    assert len(Span(date(2024, 1, 1), date(2024, 12, 31)).windows()) == 1
    assert len(Span(date(2024, 1, 1), date(2025, 1, 1)).windows()) == 2
    assert Span(date(2024, 2, 29), date(2025, 3, 1)).windows()[0].last == date(2025, 2, 27)


def _days(first: date, counts: list[int]) -> list[ContributionDay]:
    return [
        ContributionDay(date=first + timedelta(days=index), count=count, level=min(count, 4))
        for index, count in enumerate(counts)
    ]


def test_streaks_across_new_year() -> None:
    days = _days(date(2023, 12, 28), [0, 1, 2, 3, 1, 1, 0, 5, 0])
    streaks = compute_streaks(days, today=date(2030, 1, 1))
    assert streaks.longest.length == 5
    assert streaks.longest.start == date(2023, 12, 29)
    assert streaks.longest.end == date(2024, 1, 2)
    assert streaks.current.length == 0
    assert streaks.current.start is None


def test_streaks_today_without_contributions() -> None:
    days = _days(TODAY - timedelta(days=4), [0, 1, 1, 1, 0])
    streaks = compute_streaks(days, today=TODAY)
    assert streaks.current.length == 3
    assert streaks.current.end == TODAY - timedelta(days=1)


def test_streaks_past_day_without_contributions_breaks() -> None:
    yesterday = TODAY - timedelta(days=1)
    days = _days(yesterday - timedelta(days=4), [0, 1, 1, 1, 0])
    streaks = compute_streaks(days, today=TODAY)
    assert streaks.current.length == 0
    assert streaks.longest.length == 3


def test_streaks_longest_prefers_recent_tie() -> None:
    days = _days(date(2024, 1, 1), [1, 1, 0, 1, 1, 0])
    streaks = compute_streaks(days, today=TODAY)
    assert streaks.longest.start == date(2024, 1, 4)


def test_streaks_empty() -> None:
    streaks = compute_streaks([], today=TODAY)
    assert streaks.current.length == 0
    assert streaks.longest.length == 0


def test_rate_limit_wait_headers() -> None:
    assert rate_limit_wait({"retry-after": "42"}) == 42
    assert rate_limit_wait({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1100"}, now=1000) == 100
    assert rate_limit_wait({"x-ratelimit-remaining": "12"}) is None
    assert rate_limit_wait({}) is None


def _calendar(span: Span) -> object:
    days = [ContributionDay(date=day, count=day.day % 5, level=day.day % 5) for day in span.dates()]
    window = WindowCalendar(login="Octo-Cat", days=days, contribution_years=[2024])
    return build_calendar(span, [window], TODAY, datetime(2025, 3, 15, tzinfo=UTC))


def test_build_calendar_counts_only_span_days() -> None:
    span = Span(date(2024, 12, 30), date(2025, 1, 2))
    outside = ContributionDay(date=date(2024, 12, 29), count=50, level=4)
    inside = ContributionDay(date=date(2024, 12, 31), count=3, level=2)
    window = WindowCalendar(login="Octo-Cat", days=[outside, inside], contribution_years=[2024])
    calendar = build_calendar(span, [window], TODAY, datetime(2025, 3, 15, tzinfo=UTC))
    assert [day.date for day in calendar.days] == span.dates()
    assert calendar.total == 3
    assert [(year.year, year.total) for year in calendar.years] == [(2024, 3), (2025, 0)]


def test_svg_one_year_grid() -> None:
    calendar = _calendar(Span(date(2024, 3, 16), date(2025, 3, 15)))
    root = ET.fromstring(render_svg(calendar))  # type: ignore[arg-type]
    assert root.get("role") == "img"
    title = root.find(f"{SVG}title")
    assert title is not None
    assert "Octo-Cat" in (title.text or "")
    cells = [rect for rect in root.iter(f"{SVG}rect") if rect.get("data-date")]
    assert len(cells) == 365
    columns = {rect.get("x") for rect in cells}
    rows = {rect.get("y") for rect in cells}
    assert len(columns) == 53
    assert len(rows) == 7
    labels = [text.text for text in root.iter(f"{SVG}text")]
    assert "Mon" in labels
    assert "Jan" in labels


def test_svg_themes() -> None:
    calendar = _calendar(Span(date(2024, 3, 16), date(2025, 3, 15)))
    light = render_svg(calendar, "light")  # type: ignore[arg-type]
    dark = render_svg(calendar, "dark")  # type: ignore[arg-type]
    auto = render_svg(calendar, "auto")  # type: ignore[arg-type]
    assert LIGHT.levels[4] in light
    assert DARK.levels[4] not in light
    assert DARK.levels[4] in dark
    assert "prefers-color-scheme: dark" in auto


def test_svg_multi_year_panels() -> None:
    calendar = _calendar(Span(date(2020, 1, 1), date(2024, 12, 31)))
    root = ET.fromstring(render_svg(calendar))  # type: ignore[arg-type]
    labels = [text.text for text in root.iter(f"{SVG}text")]
    for year in ("2020", "2021", "2022", "2023", "2024"):
        assert year in labels
    cells = [rect for rect in root.iter(f"{SVG}rect") if rect.get("data-date")]
    assert len(cells) == 1827
