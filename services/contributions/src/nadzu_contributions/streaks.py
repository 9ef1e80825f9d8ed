"""Streaks: runs of consecutive days with at least one contribution."""

from __future__ import annotations

from datetime import date

from nadzu_common.contributions import ContributionDay, Streak, Streaks

_NO_STREAK = Streak(length=0)


def compute_streaks(days: list[ContributionDay], today: date) -> Streaks:
    """Compute the current and the longest streak over `days`, which must be consecutive and sorted.

    The current streak ends at the last day, or at the day before it when the last day is `today` and has
    no contributions yet. Among longest streaks of equal length the most recent wins.
    """
    if not days:
        return Streaks(current=_NO_STREAK, longest=_NO_STREAK)

    longest = _NO_STREAK
    run_start: date | None = None
    for day in days:
        if day.count == 0:
            run_start = None
            continue
        if run_start is None:
            run_start = day.date
        length = (day.date - run_start).days + 1
        if length >= longest.length:
            longest = Streak(length=length, start=run_start, end=day.date)

    current_end_index = len(days) - 1
    if days[-1].date == today and days[-1].count == 0:
        current_end_index -= 1

    current = _NO_STREAK
    index = current_end_index
    while index >= 0 and days[index].count > 0:
        index -= 1
    length = current_end_index - index
    if length > 0:
        current = Streak(length=length, start=days[index + 1].date, end=days[current_end_index].date)
    return Streaks(current=current, longest=longest)
