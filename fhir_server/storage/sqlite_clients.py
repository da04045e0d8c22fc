"""ClientStore in the SQLite data file: tables `oauth_client` and `oauth_assertion`, made by
the file's schema migrations (sqlite_schema.py). Token requests are rare, so every call runs
on one thread of its own, in a transaction; the file is opened at the first call, so the
store also serves `fhir-server client` and apps whose lifespan does not run."""

import sqlite3
import time
from pathlib import Path

from ..resources.instants import now_instant
from .clients import ClientExists, RegisteredClient
from .sqlite import _transaction
from .sqlite_schema import migrate
from .sqlite_side import SideStore

_COLUMNS = "id, scope, jwks, jwks_url, registered"


class SqliteClientStore(SideStore):
    def __init__(self, path: Path) -> None:
        super().__init__(path, "sqlite-clients")

    def _prepare(self, db: sqlite3.Connection) -> None:
        with _transaction(db):
            migrate(db, self.path)

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
