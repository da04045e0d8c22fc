"""Which store a deployment uses, from its settings: MongoDB when a URI is configured, else
the embedded SQLite file in the data dir (every store has its own tables in that one file).
The server (app.py) and the commands (cli.py) build their stores here."""

from ..config import Settings
from ..resources.asyncjob import ASYNC_JOB
from ..resources.kinds import ResourceKind
from .base import JobStore
from .clients import ClientStore
from .deliveries import DeliveryStore


def build_store(
    settings: Settings, kind: ResourceKind = ASYNC_JOB, *, bulk: bool = False
) -> JobStore:
    """The store of one kind's resources: in MongoDB when a URI is configured, else in the
    embedded SQLite file in the data dir (every kind has its own tables in that one file).
    `bulk`: for `fhir-server load`, whose reads need no memory map of the file."""
    if settings.mongodb_uri:
        from .mongo import MongoJobStore
        from .mongo_client import connect

        database = connect(settings)[settings.mongodb_database]
        return MongoJobStore(database, kind, max_resource_bytes=settings.max_resource_bytes)
    from .sqlite import FILE_NAME, READER_MMAP_BYTES, SqliteJobStore

    path = settings.data_dir / FILE_NAME
    return SqliteJobStore(
        path,
        kind,
        max_resource_bytes=settings.max_resource_bytes,
        reader_mmap_bytes=0 if bulk else READER_MMAP_BYTES,
    )


def build_client_store(settings: Settings) -> ClientStore:
    """The registered OAuth clients, beside the jobs (MongoDB or the SQLite file)."""
    if settings.mongodb_uri:
        from .mongo_client import connect
        from .mongo_clients import MongoClientStore

        return MongoClientStore(connect(settings)[settings.mongodb_database])
    from .sqlite import FILE_NAME
    from .sqlite_clients import SqliteClientStore

    return SqliteClientStore(settings.data_dir / FILE_NAME)


def build_delivery_store(settings: Settings) -> DeliveryStore:
    """Where REST-hook deliveries stand, beside the resources (MongoDB or the SQLite file)."""
    if settings.mongodb_uri:
        from .mongo_client import connect
        from .mongo_deliveries import MongoDeliveryStore

        return MongoDeliveryStore(connect(settings)[settings.mongodb_database])
    from .sqlite import FILE_NAME
    from .sqlite_deliveries import SqliteDeliveryStore

    return SqliteDeliveryStore(settings.data_dir / FILE_NAME)
