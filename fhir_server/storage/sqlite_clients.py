"""ClientStore in the SQLite data file: tables `oauth_client` and `oauth_assertion`, made by
the file's schema migrations (sqlite_schema.py). Token requests are rare, so every call runs
on one thread of its own, in a transaction; the file is opened at the first call, so the
store also serves `fhir-server client` and apps whose lifespan does not run."""

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from ..resources.instants import now_instant
from ..secrets_file import existing_private_file, private_dir, private_file
from .base import StoreUnavailable
from .clients import ClientExists, RegisteredClient
from .sqlite import _connect, _transaction
from .sqlite_schema import migrate

T = TypeVar("T")
_COLUMNS = "id, scope, jwks, jwks_url, registered"


class SqliteClientStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-clients")
        self._db: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        """The connection, on the store's thread; opened (and the file brought to the current
        schema) at the first call. The file holds every owner's jobs: private, as the job
        store keeps it."""
        if self._db is None:
            private_dir(self.path.parent)
            private_file(self.path)
            for suffix in ("-wal", "-shm"):
                existing_private_file(self.path.with_name(self.path.name + suffix))
            db = _connect(self.path)
            db.execute("PRAGMA journal_mode = WAL")
            with _transaction(db):
                migrate(db, self.path)
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

    async def add(self, client: RegisteredClient) -> None:
        def insert(db: sqlite3.Connection) -> None:
            added = db.execute(
                f"INSERT OR IGNORE INTO oauth_client ({_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                (client.id, client.scope, client.jwks, client.jwks_url, now_instant()),
            )
            if added.rowcount != 1:
                raise ClientExists(client.id)

        await self._run(insert)

    async def get(self, client_id: str) -> RegisteredClient | None:
        rows = await self._run(
            lambda db: db.execute(
                f"SELECT {_COLUMNS} FROM oauth_client WHERE id = ?", (client_id,)
            ).fetchall()
        )
        return RegisteredClient(*rows[0]) if rows else None

    async def all(self) -> list[RegisteredClient]:
        rows = await self._run(
            lambda db: db.execute(f"SELECT {_COLUMNS} FROM oauth_client ORDER BY id").fetchall()
        )
        return [RegisteredClient(*row) for row in rows]

    async def remove(self, client_id: str) -> bool:
        def delete(db: sqlite3.Connection) -> bool:
            return db.execute("DELETE FROM oauth_client WHERE id = ?", (client_id,)).rowcount == 1

        return await self._run(delete)

    async def first_use(self, client_id: str, jti: str, expires: float) -> bool:
        def record(db: sqlite3.Connection) -> bool:
            db.execute("DELETE FROM oauth_assertion WHERE expires < ?", (time.time(),))
            # The primary key decides, in one transaction that holds the file's write lock:
            # another worker's use of the same jti is either before or after this one.
            inserted = db.execute(
                "INSERT OR IGNORE INTO oauth_assertion (client, jti, expires) VALUES (?, ?, ?)",
                (client_id, jti, expires),
            )
            return inserted.rowcount == 1

        return await self._run(record)

    async def close(self) -> None:
        def shut() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await asyncio.get_running_loop().run_in_executor(self._thread, shut)
        self._thread.shutdown()
