"""Where each REST-hook Subscription's delivery stands, kept beside the resources (whichever
backend: sqlite_deliveries.py, mongo_deliveries.py), so that it survives a restart and every
worker process sees the same.

One record per subscription: the change feed position of the last change its endpoint
acknowledged (a 2xx), the number of notifications acknowledged (the next one's event number
is one more), the consecutive failed attempts and when the next may start. The record is also
a lease: one worker process at a time delivers a subscription (`holder`, until `lease_until`);
a worker that stops without releasing it is replaced once the lease has run out."""

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class DeliveryState:
    subscription: str
    position: int  # the last acknowledged change's feed position
    events: int  # notifications acknowledged since the subscription started
    failures: int = 0  # consecutive failed attempts at the next notification
    next_attempt: float = 0.0  # epoch seconds: not before
    holder: str | None = None  # the worker process that delivers it
    lease_until: float = 0.0  # epoch seconds


class DeliveryStore(Protocol):
    async def claim(
        self, subscription: str, holder: str, *, now: float, lease: float, start: int
    ) -> DeliveryState | None:
        """The subscription's state, leased to `holder` until now + lease; a new record starts
        at feed position `start`. None when another holder's lease is still running."""
        ...

    async def record(self, state: DeliveryState, *, now: float, lease: float) -> bool:
        """Store the state's position, events, failures and next attempt, and renew the lease,
        if `state.holder` still holds it; False when it does not (nothing is written)."""
        ...

    async def release(self, subscription: str, holder: str) -> None:
        """Give up the lease (another worker may take it at once)."""
        ...

    async def remove(self, subscription: str) -> None:
        """Forget the subscription (it was deleted)."""
        ...

    async def get(self, subscription: str) -> DeliveryState | None: ...

    async def close(self) -> None: ...
