"""ClientStore in MongoDB: collections `oauth_client` (a document per client, its id as _id)
and `oauth_assertion` (a document per used assertion; a unique index on client and jti
refuses a replay at any worker). Their indexes are made at the first call."""

from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

from ..resources.instants import now_instant
from .clients import ClientExists, RegisteredClient
from .guard import unavailable_on
from .mongo import TRANSIENT_ERRORS

CLIENTS = "oauth_client"
ASSERTIONS = "oauth_assertion"


def _utc(epoch_seconds: float) -> datetime:
    """A naive UTC datetime, as the client (tz_aware=False) hands them back."""
    return datetime.fromtimestamp(epoch_seconds, UTC).replace(tzinfo=None)


@unavailable_on(*TRANSIENT_ERRORS)
class MongoClientStore:
    def __init__(self, database: Any) -> None:
        self._db = database
        self._clients = database[CLIENTS]
        self._assertions = database[ASSERTIONS]
        self._ready = False

    async def _prepare(self) -> None:
        if not self._ready:
            await self._assertions.create_index(
                [("client", ASCENDING), ("jti", ASCENDING)], unique=True
            )
            # MongoDB's TTL monitor removes what first_use does not prune (about once a minute).
            await self._assertions.create_index([("expires", ASCENDING)], expireAfterSeconds=0)
            self._ready = True

    async def add(self, client: RegisteredClient) -> None:
        await self._prepare()
        document = {
            "_id": client.id,
            "scope": client.scope,
            "jwks": client.jwks,
            "jwks_url": client.jwks_url,
            "registered": now_instant(),
        }
        try:
            await self._clients.insert_one(document)
        except DuplicateKeyError:
            raise ClientExists(client.id) from None

    async def get(self, client_id: str) -> RegisteredClient | None:
        document = await self._clients.find_one({"_id": client_id})
        return None if document is None else _client(document)

    async def all(self) -> list[RegisteredClient]:
        return [_client(d) async for d in self._clients.find({}).sort("_id", ASCENDING)]

    async def remove(self, client_id: str) -> bool:
        removed = await self._clients.delete_one({"_id": client_id})
        return bool(removed.deleted_count == 1)

    async def first_use(self, client_id: str, jti: str, expires: float) -> bool:
        await self._prepare()
        now = datetime.now(UTC).replace(tzinfo=None)
        await self._assertions.delete_many({"expires": {"$lt": now}})
        try:
            await self._assertions.insert_one(
                {"client": client_id, "jti": jti, "expires": _utc(expires)}
            )
        except DuplicateKeyError:
            return False
        return True

    async def close(self) -> None:
        client = getattr(self._db, "client", None)
        if client is not None and hasattr(client, "close"):
            client.close()


def _client(document: dict[str, Any]) -> RegisteredClient:
    return RegisteredClient(
        document["_id"],
        document["scope"],
        document.get("jwks"),
        document.get("jwks_url"),
        document.get("registered", ""),
    )
