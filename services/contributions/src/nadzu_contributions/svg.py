"""The contribution heatmap as SVG: weeks as columns, weekdays as rows, one panel per year of the span."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from xml.sax.saxutils import escape

from nadzu_common.contributions import ContributionCalendar, ContributionDay, SvgTheme

CELL = 10
GAP = 3
STEP = CELL + GAP
LEFT = 32
PANEL_HEADER = 34
LEGEND_HEIGHT = 30
MARGIN = 10
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# A span up to this long is drawn as one panel, like GitHub's profile calendar (53 or 54 weeks).
SINGLE_PANEL_MAX_DAYS = 371


@dataclass(frozen=True)
class _Palette:
    background: str
    text: str
    # Fill colours of levels 0 to 4.
    levels: tuple[str, str, str, str, str]


# GitHub's own palettes.
LIGHT = _Palette("#ffffff", "#57606a", ("#ebedf0", "#9be9a8", "#40c463", "#30a14e", "#216e39"))
DARK = _Palette("#0d1117", "#8b949e", ("#161b22", "#0e4429", "#006d32", "#26a641", "#39d353"))


@dataclass(frozen=True)
class _Panel:
    label: str | None
    days: list[ContributionDay]


def _palette_css(palette: _Palette) -> str:
    rules = [f".bg{{fill:{palette.background}}}", f"text{{fill:{palette.text}}}"]
    rules += [f".l{level}{{fill:{color}}}" for level, color in enumerate(palette.levels)]
    return "".join(rules)


def _style(theme: SvgTheme) -> str:
    css = "text{font:10px -apple-system,BlinkMacSystemFont,'Segoe UI',Helvetica,Arial,sans-serif}"
    css += "rect.day{shape-rendering:geometricPrecision;rx:2px;ry:2px}"
    if theme == "dark":
        return css + _palette_css(DARK)
    css += _palette_css(LIGHT)
    if theme == "auto":
        css += f"@media (prefers-color-scheme: dark){{{_palette_css(DARK)}}}"
    return css


def _panels(calendar: ContributionCalendar) -> list[_Panel]:
    if len(calendar.days) <= SINGLE_PANEL_MAX_DAYS:
        return [_Panel(label=None, days=calendar.days)]
    by_year: dict[int, list[ContributionDay]] = {}
    for day in calendar.days:
        by_year.setdefault(day.date.year, []).append(day)
    return [_Panel(label=str(year), days=days) for year, days in by_year.items()]


def _week_start(day: date) -> date:
    """Return the Sunday on or before `day`, because GitHub's weeks start on Sunday."""
    return day - timedelta(days=(day.weekday() + 1) % 7)


def _weeks(panel: _Panel) -> int:
    return (_week_start(panel.days[-1].date) - _week_start(panel.days[0].date)).days // 7 + 1


def _draw_panel(panel: _Panel, top: int) -> list[str]:
    parts = []
    first_sunday = _week_start(panel.days[0].date)
    grid_top = top + PANEL_HEADER

    if panel.label:
        parts.append(f'<text x="{MARGIN}" y="{top + 12}" font-weight="bold">{escape(panel.label)}</text>')

    last_label_column = -10
    for day in panel.days:
        if day.date.day != 1 and day is not panel.days[0]:
            continue
        column = (_week_start(day.date) - first_sunday).days // 7
        # A month starting a column or two after the previous label would overlap it.
        if column - last_label_column < 3:
            continue
        x = LEFT + column * STEP
        parts.append(f'<text x="{x}" y="{grid_top - 6}">{MONTHS[day.date.month - 1]}</text>')
        last_label_column = column

    for row, name in ((1, "Mon"), (3, "Wed"), (5, "Fri")):
        y = grid_top + row * STEP + CELL - 1
        parts.append(f'<text x="4" y="{y}">{name}</text>')

    for day in panel.days:
        column = (_week_start(day.date) - first_sunday).days // 7
        row = (day.date.weekday() + 1) % 7
        noun = "contribution" if day.count == 1 else "contributions"
        parts.append(
            f'<rect class="day l{day.level}" x="{LEFT + column * STEP}" y="{grid_top + row * STEP}" '
            f'width="{CELL}" height="{CELL}" data-date="{day.date.isoformat()}" data-count="{day.count}">'
            f"<title>{day.count} {noun} on {day.date.isoformat()}</title></rect>"
        )
    return parts


def render_svg(calendar: ContributionCalendar, theme: SvgTheme = "light") -> str:
    """Render the calendar as a standalone SVG document with a title and description for screen readers."""
    panels = _panels(calendar)
    panel_height = PANEL_HEADER + 7 * STEP
    weeks = max(_weeks(panel) for panel in panels)
    width = LEFT + weeks * STEP + MARGIN
    height = MARGIN + len(panels) * panel_height + LEGEND_HEIGHT

    noun = "contribution" if calendar.total == 1 else "contributions"
    title = (
        f"{calendar.username}: {calendar.total} {noun} from {calendar.from_date.isoformat()} "
        f"to {calendar.to_date.isoformat()}"
    )
    current = calendar.streaks.current.length
    longest = calendar.streaks.longest.length
    description = (
        f"Heatmap of daily GitHub contributions, one square per day, darker for more. "
        f"Current streak {current} days, longest streak {longest} days."
    )

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-labelledby="title desc">',
        f'<title id="title">{escape(title)}</title>',
        f'<desc id="desc">{escape(description)}</desc>',
        f"<style>{_style(theme)}</style>",
        f'<rect class="bg" width="{width}" height="{height}"/>',
    ]
    for index, panel in enumerate(panels):
        parts.extend(_draw_panel(panel, MARGIN + index * panel_height))

    legend_y = MARGIN + len(panels) * panel_height + 8
    legend_x = width - MARGIN - 5 * STEP - 60
    parts.append(f'<text x="{legend_x}" y="{legend_y + CELL - 1}">Less</text>')
    for level in range(5):
        x = legend_x + 28 + level * STEP
        parts.append(f'<rect class="day l{level}" x="{x}" y="{legend_y}" width="{CELL}" height="{CELL}"/>')
    parts.append(f'<text x="{legend_x + 28 + 5 * STEP + 2}" y="{legend_y + CELL - 1}">More</text>')
    parts.append(f'<text x="{MARGIN}" y="{legend_y + CELL - 1}">{escape(title)}</text>')
    parts.append("</svg>")
    return "".join(parts)
