"""A JobStore wrapper that injects database faults: down, hung, or slow. Tests only."""

import asyncio
import inspect
from typing import Any

from fhir_server.storage.base import StoreUnavailable


class FaultyStore:
    """Forwards to a real store until told to fail; clearing the fault restores it."""

    def __init__(self, store: Any, slow_methods: frozenset[str] | None = None) -> None:
        self._store = store
        self.down = False
        self.hang = False
        self.delay = 0.0
        self.slow_methods = slow_methods  # where delay applies; None: every method
        self.answered: list[str] = []  # methods the real store has answered, in order

    def clear(self) -> None:
        self.down = self.hang = False
        self.delay = 0.0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                raise StoreUnavailable("injected fault: the database is down")
            if self.hang:
                await asyncio.Event().wait()  # never answers
            if self.delay and (self.slow_methods is None or name in self.slow_methods):
                await asyncio.sleep(self.delay)
            result = await attr(*args, **kwargs)
            self.answered.append(name)
            return result

        return call
