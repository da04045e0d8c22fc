"""App factory for the real-server tests: the product's app over a store whose ping is slow,
so that /readyz is an in-flight request long enough to send a signal during it."""

from starlette.applications import Starlette

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.storage.factory import build_store

from .faulty_store import FaultyStore

SLOW_SECONDS = 1.5


def create_slow_app() -> Starlette:
    settings = Settings()
    store = FaultyStore(build_store(settings), slow_methods=frozenset({"ping"}))
    store.delay = SLOW_SECONDS
    return create_app(settings, store=store)  # type: ignore[arg-type]
