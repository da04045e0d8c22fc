"""DeliveryStore in the SQLite data file: table `subscription_delivery`. The table is made
(IF NOT EXISTS) at the first call, which comes after the job stores have opened the file: it
holds state derived from the Subscriptions and is never migrated, so it needs no schema
version. Calls are few (one per delivery), so they run on a thread of their own, each in a
transaction."""

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from ..secrets_file import existing_private_file, private_dir, private_file
from .base import StoreUnavailable
from .deliveries import DeliveryState
from .sqlite import _connect, _transaction

T = TypeVar("T")
TABLE = "subscription_delivery"
_COLUMNS = "subscription, position, events, failures, next_attempt, holder, lease_until"


class SqliteDeliveryStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-deliveries")
        self._db: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            private_dir(self.path.parent)
            private_file(self.path)
            for suffix in ("-wal", "-shm"):
                existing_private_file(self.path.with_name(self.path.name + suffix))
            db = _connect(self.path)
            db.execute("PRAGMA journal_mode = WAL")
            db.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (subscription TEXT PRIMARY KEY, "
                "position INTEGER NOT NULL, events INTEGER NOT NULL, failures INTEGER NOT NULL, "
                "next_attempt REAL NOT NULL, holder TEXT, lease_until REAL NOT NULL)"
            )
            self._db = db
        return self._db

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            db = self._connection()
            with _transaction(db):
                return work(db)

        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, call)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def claim(
        self, subscription: str, holder: str, *, now: float, lease: float, start: int
    ) -> DeliveryState | None:
        def take(db: sqlite3.Connection) -> DeliveryState | None:
            db.execute(
                f"INSERT OR IGNORE INTO {TABLE} ({_COLUMNS}) VALUES (?, ?, 0, 0, 0, NULL, 0)",
                (subscription, start),
            )
            taken = db.execute(
                f"UPDATE {TABLE} SET holder = ?, lease_until = ? WHERE subscription = ? "
                "AND (holder IS NULL OR holder = ? OR lease_until < ?)",
                (holder, now + lease, subscription, holder, now),
            )
            if taken.rowcount != 1:
                return None
            row = db.execute(
                f"SELECT {_COLUMNS} FROM {TABLE} WHERE subscription = ?", (subscription,)
            ).fetchone()
            return DeliveryState(*row)

        return await self._run(take)

    async def record(self, state: DeliveryState, *, now: float, lease: float) -> bool:
        def write(db: sqlite3.Connection) -> bool:
            written = db.execute(
                f"UPDATE {TABLE} SET position = ?, events = ?, failures = ?, next_attempt = ?, "
                "lease_until = ? WHERE subscription = ? AND holder = ?",
                (
                    state.position,
                    state.events,
                    state.failures,
                    state.next_attempt,
                    now + lease,
                    state.subscription,
                    state.holder,
                ),
            )
            return written.rowcount == 1

        return await self._run(write)

    async def release(self, subscription: str, holder: str) -> None:
        await self._run(
            lambda db: db.execute(
                f"UPDATE {TABLE} SET holder = NULL, lease_until = 0 "
                "WHERE subscription = ? AND holder = ?",
                (subscription, holder),
            )
        )

    async def remove(self, subscription: str) -> None:
        await self._run(
            lambda db: db.execute(f"DELETE FROM {TABLE} WHERE subscription = ?", (subscription,))
        )

    async def get(self, subscription: str) -> DeliveryState | None:
        row = await self._run(
            lambda db: db.execute(
                f"SELECT {_COLUMNS} FROM {TABLE} WHERE subscription = ?", (subscription,)
            ).fetchone()
        )
        return None if row is None else DeliveryState(*row)

    async def close(self) -> None:
        def shut() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await asyncio.get_running_loop().run_in_executor(self._thread, shut)
        self._thread.shutdown()
