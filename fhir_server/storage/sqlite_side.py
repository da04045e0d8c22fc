"""SideStore: a small store in the SQLite data file beside the job stores (the OAuth clients,
the REST-hook delivery states). Its calls are few, so each runs on a thread of the store's
own, in a transaction; the file is opened at the first call (so the store also serves
commands and apps whose lifespan does not run), kept private as the job stores keep it."""

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from ..secrets_file import existing_private_file, private_dir, private_file
from .base import StoreUnavailable
from .sqlite import _connect, _transaction, _wal_on

T = TypeVar("T")


class SideStore:
    def __init__(self, path: Path, thread_name: str) -> None:
        self.path = Path(path)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)
        self._db: sqlite3.Connection | None = None

    def _prepare(self, db: sqlite3.Connection) -> None:
        """Bring the file to what the store needs, at the first call."""

    def _connection(self) -> sqlite3.Connection:
        """The connection, on the store's thread; opened and prepared at the first call. The
        file holds every owner's jobs: private."""
        if self._db is None:
            private_dir(self.path.parent)
            private_file(self.path)
            for suffix in ("-wal", "-shm"):
                existing_private_file(self.path.with_name(self.path.name + suffix))
            db = _connect(self.path)
            _wal_on(db)
            self._prepare(db)
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

    async def close(self) -> None:
        def shut() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await asyncio.get_running_loop().run_in_executor(self._thread, shut)
        self._thread.shutdown()
