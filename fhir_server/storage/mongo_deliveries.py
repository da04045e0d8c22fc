"""DeliveryStore in MongoDB: collection `subscription_delivery`, a document per subscription
(its id as _id). The lease is taken and renewed by conditional single-document updates."""

import contextlib
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from .deliveries import DeliveryState
from .guard import unavailable_on
from .mongo import TRANSIENT_ERRORS

COLLECTION = "subscription_delivery"


@unavailable_on(*TRANSIENT_ERRORS)
class MongoDeliveryStore:
    def __init__(self, database: Any) -> None:
        self._db = database
        self._states = database[COLLECTION]

    async def claim(
        self, subscription: str, holder: str, *, now: float, lease: float, start: int
    ) -> DeliveryState | None:
        new = {
            "position": start,
            "events": 0,
            "failures": 0,
            "next_attempt": 0.0,
            "holder": None,
            "lease_until": 0.0,
        }
        with contextlib.suppress(DuplicateKeyError):  # another worker made it just now
            await self._states.update_one({"_id": subscription}, {"$setOnInsert": new}, upsert=True)
        free = [{"holder": None}, {"holder": holder}, {"lease_until": {"$lt": now}}]
        document = await self._states.find_one_and_update(
            {"_id": subscription, "$or": free},
            {"$set": {"holder": holder, "lease_until": now + lease}},
            return_document=ReturnDocument.AFTER,
        )
        return None if document is None else _state(document)

    async def record(self, state: DeliveryState, *, now: float, lease: float) -> bool:
        written = await self._states.update_one(
            {"_id": state.subscription, "holder": state.holder},
            {
                "$set": {
                    "position": state.position,
                    "events": state.events,
                    "failures": state.failures,
                    "next_attempt": state.next_attempt,
                    "lease_until": now + lease,
                }
            },
        )
        return bool(written.matched_count == 1)

    async def release(self, subscription: str, holder: str) -> None:
        await self._states.update_one(
            {"_id": subscription, "holder": holder},
            {"$set": {"holder": None, "lease_until": 0.0}},
        )

    async def remove(self, subscription: str) -> None:
        await self._states.delete_one({"_id": subscription})

    async def get(self, subscription: str) -> DeliveryState | None:
        document = await self._states.find_one({"_id": subscription})
        return None if document is None else _state(document)

    async def close(self) -> None:
        client = getattr(self._db, "client", None)
        if client is not None and hasattr(client, "close"):
            client.close()


def _state(document: dict[str, Any]) -> DeliveryState:
    return DeliveryState(
        document["_id"],
        document["position"],
        document["events"],
        document["failures"],
        document["next_attempt"],
        document["holder"],
        document["lease_until"],
    )
