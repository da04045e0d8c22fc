"""Opaque, tamper-evident keyset cursors for search paging links."""

import base64
import binascii
import hashlib
import hmac

import orjson

from .query import Cursor, SortKey


class CursorError(ValueError):
    pass


def sort_signature(sort: tuple[SortKey, ...]) -> str:
    return ",".join(("-" if k.descending else "") + k.column for k in sort)


def encode_cursor(cursor: Cursor, sort: tuple[SortKey, ...], secret: bytes) -> str:
    payload = orjson.dumps(
        {"v": list(cursor.values), "i": cursor.id, "f": cursor.forward, "s": sort_signature(sort)}
    )
    mac = hmac.digest(secret, payload, "sha256")[:16]
    return base64.urlsafe_b64encode(mac + payload).decode().rstrip("=")


def decode_cursor(token: str, sort: tuple[SortKey, ...], secret: bytes) -> Cursor:
    """The cursor a link carried; CursorError if it was forged, edited or is for another sort."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError) as exc:
        raise CursorError("malformed paging cursor") from exc
    mac, payload = raw[:16], raw[16:]
    if not hmac.compare_digest(mac, hmac.new(secret, payload, hashlib.sha256).digest()[:16]):
        raise CursorError("paging cursor failed its integrity check")
    data = orjson.loads(payload)
    if data["s"] != sort_signature(sort):
        raise CursorError("paging cursor belongs to a search with another _sort")
    return Cursor(values=tuple(data["v"]), id=data["i"], forward=bool(data["f"]))
