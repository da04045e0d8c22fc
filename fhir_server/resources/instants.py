"""FHIR instants and (partial) dates: the server's clock, and dates as epoch-millisecond ranges."""

import calendar
import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache

# re.ASCII: \d is then [0-9], not every script's digits ('٢٠٢٦' is not a year).
_DATE = re.compile(
    r"(?P<year>\d{4})(-(?P<month>\d{2})(-(?P<day>\d{2})"
    r"(T(?P<hour>\d{2}):(?P<minute>\d{2})(:(?P<second>\d{2})(?P<fraction>\.\d+)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?",
    re.ASCII,
)


def to_epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


# A batch of writes has one lastUpdated, and jobs share their times: each parsed once.
@lru_cache(maxsize=4096)
def parse_instant_ms(value: str) -> int:
    """A stored FHIR instant/dateTime as epoch ms (its lower bound if partial)."""
    if len(value) >= 20 and value[10] == "T":  # a full instant: fromisoformat is far cheaper
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            return to_epoch_ms(moment)
    return parse_date_range(value)[0]


def parse_date_range(value: str) -> tuple[int, int]:
    """The half-open range [start, end) in epoch ms that a (partial) FHIR date covers."""
    match = _DATE.fullmatch(value)
    if not match:
        raise ValueError(f"'{value}' is not a FHIR date (YYYY, YYYY-MM, YYYY-MM-DD or a dateTime)")
    g = match.groupdict()
    year = int(g["year"])
    if g["month"] is None:
        start = datetime(year, 1, 1, tzinfo=UTC)
        return to_epoch_ms(start), to_epoch_ms(datetime(year + 1, 1, 1, tzinfo=UTC))
    month = int(g["month"])
    if g["day"] is None:
        start = datetime(year, month, 1, tzinfo=UTC)
        days = calendar.monthrange(year, month)[1]
        return to_epoch_ms(start), to_epoch_ms(start + timedelta(days=days))
    day = int(g["day"])
    tz = g["tz"]
    offset = timedelta(0)
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        offset = sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
    if g["hour"] is None:
        start = datetime(year, month, day, tzinfo=UTC)
        return to_epoch_ms(start), to_epoch_ms(start + timedelta(days=1))
    hour, minute = int(g["hour"]), int(g["minute"])
    second = int(g["second"] or 0)
    fraction = g["fraction"] or ""
    micro = int((fraction[1:] + "000000")[:6]) if fraction else 0
    start = datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC) - offset
    if g["second"] is None:
        precision = timedelta(minutes=1)
    elif not fraction:
        precision = timedelta(seconds=1)
    else:
        precision = timedelta(milliseconds=1)
    return to_epoch_ms(start), max(to_epoch_ms(start + precision), to_epoch_ms(start) + 1)


def now_instant() -> str:
    """The server's clock as a FHIR instant with milliseconds, in UTC."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def instant_of_ms(epoch_ms: int) -> str:
    """Epoch ms in now_instant's fixed-width form, so instants the stores keep as text
    compare as strings."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
