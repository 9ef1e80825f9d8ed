"""Validation of the query: the login, the span of days, and its split into GitHub's yearly windows."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from nadzu_common.contributions import FieldError

from .errors import InvalidDateRange, InvalidUsername

# GitHub logins: letters, digits and single hyphens between them, 1 to 39 characters.
_LOGIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$")
_YEAR = re.compile(r"^\d{4}$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

MAX_SPAN_YEARS = 20
# Git lets commits carry any date, so GitHub can show contributions from before its own launch.
MIN_YEAR = 1970
# GitHub rejects a window whose `to` is more than one year after `from`, so a window runs from a day at
# 00:00:00 to the day before the same date a year later, at 23:59:59.
# The span without `year`, `from` or `to`: the 365 days ending today.
DEFAULT_SPAN_DAYS = 365


@dataclass(frozen=True)
class Span:
    """Inclusive range of calendar days."""

    first: date
    last: date

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def dates(self) -> list[date]:
        return [self.first + timedelta(days=offset) for offset in range(self.days)]

    def windows(self) -> list[Span]:
        """Split into consecutive windows of at most one year each, oldest first."""
        windows = []
        index = 0
        start = self.first
        while start <= self.last:
            index += 1
            following = _add_years(self.first, index)
            windows.append(Span(start, min(following - timedelta(days=1), self.last)))
            start = following
        return windows


def validate_username(username: str) -> str:
    if not _LOGIN.match(username):
        raise InvalidUsername(
            f"{username[:60]!r} is not a valid GitHub login: use letters, digits and single hyphens between "
            "them, at most 39 characters.",
            errors=[FieldError(field="username", code="invalid", message="not a valid GitHub login")],
        )
    return username


def _invalid(field: str, code: str, message: str) -> InvalidDateRange:
    return InvalidDateRange(message, errors=[FieldError(field=field, code=code, message=message)])


def _parse_date(field: str, value: str) -> date:
    if not _ISO_DATE.match(value):
        message = f"{field}={value[:40]!r} is not a date in the form YYYY-MM-DD."
        raise _invalid(field, "invalid_format", message)
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _invalid(field, "invalid_date", f"{field}={value!r} is not a calendar date.") from None


def _add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        # 29 February in a year without one.
        return day.replace(year=day.year + years, day=28)


def resolve_span(year: str | None, from_date: str | None, to_date: str | None, today: date) -> Span:
    """Turn the query parameters into a span, or raise `InvalidDateRange` saying which value is wrong.

    `year` is that calendar year, cut at today for the current year. `from`/`to` is any span of at most
    20 years ending today or earlier. Neither is the 365 days ending today.
    """
    if year is not None and (from_date is not None or to_date is not None):
        raise _invalid("year", "conflict", "Use either year or from/to, not both.")

    if year is not None:
        if not _YEAR.match(year):
            raise _invalid("year", "invalid_format", f"year={year[:20]!r} is not a four-digit year.")
        number = int(year)
        if not MIN_YEAR <= number <= today.year:
            raise _invalid("year", "out_of_range", f"year={number} is outside {MIN_YEAR}..{today.year}.")
        return Span(date(number, 1, 1), min(date(number, 12, 31), today))

    if from_date is None and to_date is None:
        return Span(today - timedelta(days=DEFAULT_SPAN_DAYS - 1), today)
    if from_date is None or to_date is None:
        missing = "from" if from_date is None else "to"
        raise _invalid(missing, "missing", f"{missing} is missing: give both from and to, or neither.")

    first = _parse_date("from", from_date)
    last = _parse_date("to", to_date)
    if first > last:
        raise _invalid("from", "after_to", f"from={first} is after to={last}.")
    if last > today:
        raise _invalid("to", "in_future", f"to={last} is after today ({today}, UTC).")
    if first.year < MIN_YEAR:
        raise _invalid("from", "out_of_range", f"from={first} is before {MIN_YEAR}.")
    if last >= _add_years(first, MAX_SPAN_YEARS):
        message = f"The span from {first} to {last} exceeds {MAX_SPAN_YEARS} years."
        raise _invalid("to", "span_too_long", message)
    return Span(first, last)
