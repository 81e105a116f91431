"""When a collection schedule's next round is due: every N hours, or daily at a time of day.

- every N hours: the first round is due as soon as the schedule is enabled; each later one N hours
  after the due time before it. Slots missed while nothing ticked (beat stopped for a day) are
  skipped, not caught up: the next due time is the first slot after now, so a restarted beat
  starts one round, not a backlog.
- daily at HH:MM: the first HH:MM after now, in the schedule's time zone (the platform's TIME_ZONE),
  so the round keeps its local hour across daylight-saving changes.

Aware datetimes in and out. Plain Python, no Django.
"""
from __future__ import annotations

from datetime import datetime, time, timedelta, tzinfo


class ScheduleError(ValueError):
    """A schedule's timing that gives no due time; the message says why."""


def check_timing(every_hours: int | None, daily_at: time | None) -> None:
    if (every_hours is None) == (daily_at is None):
        raise ScheduleError("give either an interval in hours or a daily time, not both and not neither")
    if every_hours is not None and every_hours < 1:
        raise ScheduleError("the interval is at least one hour")


def next_due(now: datetime, *, every_hours: int | None = None, daily_at: time | None = None,
             previous: datetime | None = None, tz: tzinfo | None = None) -> datetime:
    """The due time that follows `previous` (the one just claimed, None for a schedule that has not
    run), never in the past of `now` except for an interval schedule's first, which is `now`."""
    check_timing(every_hours, daily_at)
    if now.tzinfo is None:
        raise ScheduleError("now must be an aware datetime")
    if every_hours is not None:
        if previous is None:
            return now
        step = timedelta(hours=every_hours)
        missed = max(0, int((now - previous) // step))
        return previous + step * (missed + 1)
    local = now.astimezone(tz or now.tzinfo)
    due = datetime.combine(local.date(), daily_at, tzinfo=local.tzinfo)
    if due <= local:
        due = datetime.combine(local.date() + timedelta(days=1), daily_at, tzinfo=local.tzinfo)
    return due
