"""DeliveryStore in the SQLite data file: table `subscription_delivery`. The table is made
(IF NOT EXISTS) at the first call, which comes after the job stores have opened the file: it
holds state derived from the Subscriptions and is never migrated, so it needs no schema
version. Calls are few (one per delivery), so they run on a thread of their own, each in a
transaction."""

import sqlite3
from pathlib import Path

from .deliveries import DeliveryState
from .sqlite_side import SideStore

TABLE = "subscription_delivery"
_COLUMNS = "subscription, position, events, failures, next_attempt, holder, lease_until"


class SqliteDeliveryStore(SideStore):
    def __init__(self, path: Path) -> None:
        super().__init__(path, "sqlite-deliveries")

    def _prepare(self, db: sqlite3.Connection) -> None:
        db.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (subscription TEXT PRIMARY KEY, "
            "position INTEGER NOT NULL, events INTEGER NOT NULL, failures INTEGER NOT NULL, "
            "next_attempt REAL NOT NULL, holder TEXT, lease_until REAL NOT NULL)"
        )

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
