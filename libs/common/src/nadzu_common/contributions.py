"""Bodies of the contributions query, `contributions.rpc.get`, and its health probe.

The gateway forwards the HTTP query parameters as the client sent them. Only the contributions service
validates them, so the rules for usernames, dates and spans live in one place.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .messages import Message

CONTRIBUTIONS_GET = "contributions.rpc.get"
CONTRIBUTIONS_HEALTH = "contributions.rpc.health"
CONTRIBUTIONS_QUEUE_GROUP = "contributions"

ReplyFormat = Literal["json", "svg"]
SvgTheme = Literal["light", "dark", "auto"]


class ContributionsQuery(Message):
    """`contributions.rpc.get`: the calendar of one GitHub user over a span of days.

    `username` None means the configured default user. `year`, `from_date` and `to_date` are the raw
    query-string values; the service rejects invalid ones with a 422 problem.
    """

    username: str | None = None
    year: str | None = None
    from_date: str | None = None
    to_date: str | None = None
    format: ReplyFormat = "json"
    theme: SvgTheme = "light"
    request_id: str | None = None


class ContributionDay(BaseModel):
    date: date
    count: int = Field(ge=0)
    level: int = Field(ge=0, le=4, description="GitHub's quartile of the day, 0 for no contributions")


class YearTotal(BaseModel):
    year: int
    total: int = Field(ge=0, description="contributions on the days of this year inside the span")


class Streak(BaseModel):
    length: int = Field(ge=0, description="days")
    start: date | None = None
    end: date | None = None


class Streaks(BaseModel):
    current: Streak
    longest: Streak


class ContributionCalendar(BaseModel):
    """The public JSON body of `GET /api/v1/contributions[/{username}]`."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    username: str
    from_date: date = Field(alias="from")
    to_date: date = Field(alias="to")
    total: int = Field(ge=0)
    days: list[ContributionDay]
    years: list[YearTotal]
    streaks: Streaks
    fetched_at: datetime
    cached: bool


class FieldError(BaseModel):
    field: str | None = None
    code: str
    message: str


class ContributionsProblem(BaseModel):
    """An error the gateway renders as problem details with this status and slug."""

    status: int
    slug: str
    title: str
    detail: str
    errors: list[FieldError] = Field(default_factory=list)
    retry_after: int | None = Field(default=None, description="seconds, sent as `Retry-After`")


class ContributionsReply(Message):
    """Reply to `contributions.rpc.get`: exactly one of `calendar`, `svg` or `problem` is set.

    `max_age` is how many more seconds the data counts as fresh, for `Cache-Control`.
    """

    calendar: ContributionCalendar | None = None
    svg: str | None = None
    max_age: int = 0
    problem: ContributionsProblem | None = None
