"""Failing fast for any JobStore: driver errors become StoreUnavailable, every call a deadline.

Handlers then see one exception whatever the backend, and a hung database costs a request
at most `store_timeout` seconds instead of a worker.
"""

import asyncio
import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from .base import StoreUnavailable

T = TypeVar("T")
S = TypeVar("S")

# Setting up and tearing down may legitimately take longer (index builds): no deadline there.
_UNTIMED = frozenset({"open", "close", "defer_upkeep", "restore_upkeep"})


def unavailable_on(*errors: type[BaseException]) -> Callable[[type[T]], type[T]]:
    """Class decorator for a backend: the listed (driver) errors, raised by any public
    coroutine method, leave it as StoreUnavailable."""

    def decorate(cls: type[T]) -> type[T]:
        for name, member in list(vars(cls).items()):
            if not name.startswith("_") and inspect.iscoroutinefunction(member):
                setattr(cls, name, _translating(member, errors))
        return cls

    return decorate


def _translating(method: Any, errors: tuple[type[BaseException], ...]) -> Any:
    @functools.wraps(method)
    async def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return await method(*args, **kwargs)
        except errors as exc:
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc

    return call


def with_deadline(store: S, seconds: float) -> S:
    """The same store, each storage call cut off after `seconds` with StoreUnavailable."""
    return _DeadlineStore(store, seconds)  # type: ignore[return-value]


class _DeadlineStore:
    """Forwards every attribute; coroutine methods run under asyncio.timeout, except those
    the backend's class lists in SYNCHRONOUS_METHODS."""

    def __init__(self, store: Any, seconds: float) -> None:
        self._store = store
        self._seconds = seconds
        # A method that never awaits cannot be cut off by asyncio.timeout, which would only
        # cost a timer per call; read from the class, so a wrapper around the store is timed.
        self._synchronous: frozenset[str] = getattr(type(store), "SYNCHRONOUS_METHODS", frozenset())

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name in self._synchronous:
            self.__dict__[name] = attr  # looked up once, not per request
            return attr
        if name in _UNTIMED or not inspect.iscoroutinefunction(attr):
            return attr
        seconds = self._seconds

        @functools.wraps(attr)
        async def call(*args: Any, **kwargs: Any) -> Any:
            try:
                async with asyncio.timeout(seconds):
                    return await attr(*args, **kwargs)
            except TimeoutError as exc:
                raise StoreUnavailable(f"no answer within {seconds:g} s") from exc

        self.__dict__[name] = call  # built once per method, not per request
        return call
