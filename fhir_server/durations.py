"""Durations written the way operators type them: 30s, 30m, 12h, 7d, 2w."""

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator

# re.ASCII: digits are 0-9 only (\d would take '٧', isdigit() even '²').
_DURATION = re.compile(r"(?P<amount>\d+)\s*(?P<unit>[smhdw])", re.ASCII)
_SECONDS = re.compile(r"\d+(\.\d*)?|\.\d+", re.ASCII)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """`7d` → 7 days; ValueError names the accepted forms."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(f"'{text}' is not a duration; use a number and s, m, h, d or w (e.g. 7d)")
    return timedelta(**{_UNITS[match["unit"]]: int(match["amount"])})


def _shorthand(value: Any) -> Any:
    """Shorthand becomes a timedelta, bare text numbers are seconds (as environment variables
    and CLI options arrive); anything else (ISO 8601 `P7D`) goes to pydantic."""
    if isinstance(value, str) and _DURATION.fullmatch(value.strip().lower()):
        return parse_duration(value)
    if isinstance(value, str) and _SECONDS.fullmatch(value.strip()):
        return float(value)
    return value


Duration = Annotated[timedelta, BeforeValidator(_shorthand)]
