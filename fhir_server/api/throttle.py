"""Per-owner request rate limits (FHIR_SERVER_RATE_LIMIT), with the `limits` library.

One owner's requests must not crowd out everyone else's: over the configured rates, a
request is refused (429 `throttled`, with Retry-After) before its handler costs anything.
Admins (operators, the services that run jobs) are not limited. The counts are kept in the
process's memory: with several workers each counts on its own, so an owner may make up to
the number of workers times the rate (docs/security.md).
"""

import math
import time

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import SlidingWindowCounterRateLimiter

from ..resources.outcome import FhirError, Issue


class Throttled(FhirError):
    """429: the owner went over a rate; Retry-After says when the window has room again."""

    def __init__(self, rate: RateLimitItem, retry_after: int) -> None:
        message = f"Too many requests: at most {rate} per owner; retry in {retry_after} s"
        super().__init__([Issue("throttled", message)])
        self.headers["Retry-After"] = str(retry_after)


class OwnerRateLimit:
    """The rates (`limits` notation, e.g. "20/second;600/minute") each owner is held to."""

    def __init__(self, rates: str) -> None:
        self.rates = parse_many(rates)
        # A sliding window counter: two counters per owner and rate, however high the rate.
        self.limiter = SlidingWindowCounterRateLimiter(MemoryStorage())

    def refusal(self, owner: str) -> Throttled | None:
        """Count one request of owner's: None if every rate allows it, else the refusal."""
        for rate in self.rates:
            if not self.limiter.hit(rate, owner):
                reset = self.limiter.get_window_stats(rate, owner).reset_time
                return Throttled(rate, max(1, math.ceil(reset - time.time())))
        return None
