"""The production MongoDB client: pool, timeouts and write concern from the settings."""

from typing import Any

from ..config import Settings


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword options for the driver; they take precedence over options in the URI."""
    concern = settings.mongodb_write_concern
    return {
        "tz_aware": False,
        "maxPoolSize": settings.mongodb_max_pool_size,
        "minPoolSize": settings.mongodb_min_pool_size,
        "serverSelectionTimeoutMS": settings.mongodb_server_selection_timeout_ms,
        "connectTimeoutMS": settings.mongodb_connect_timeout_ms,
        "socketTimeoutMS": settings.mongodb_socket_timeout_ms,
        # a member count in ASCII digits, else a mode or tag set name ('²' is a name)
        "w": int(concern) if concern.isascii() and concern.isdigit() else concern,
        "journal": settings.mongodb_journal,
        "retryWrites": settings.mongodb_retry_writes,
        "retryReads": True,
    }


def connect(settings: Settings) -> Any:
    """A motor client for settings.mongodb_uri (connects lazily, on first use)."""
    from motor.motor_asyncio import AsyncIOMotorClient

    return AsyncIOMotorClient(settings.mongodb_uri, **client_options(settings))
