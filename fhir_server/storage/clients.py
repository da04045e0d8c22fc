"""Registered OAuth clients (SMART Backend Services) and the assertion ids (jti) they have
used: what the token endpoint keeps in the store, whichever backend (sqlite_clients.py,
mongo_clients.py). They live beside the jobs, so every worker and process sees the same
clients, and an assertion used at one worker is a replay at every other."""

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class RegisteredClient:
    """A client allowed to ask for tokens: its id, the scopes it may be granted
    (space-separated) and its public keys, as a JWK Set registered from a file (`jwks`, the
    set's JSON) or as the URL that publishes it (`jwks_url`)."""

    id: str
    scope: str
    jwks: str | None = None
    jwks_url: str | None = None
    registered: str = ""  # when, as a FHIR instant


class ClientExists(Exception):
    """A client with this id is registered already."""


class ClientStore(Protocol):
    async def add(self, client: RegisteredClient) -> None:
        """Register a client; ClientExists when its id is taken."""
        ...

    async def get(self, client_id: str) -> RegisteredClient | None: ...

    async def all(self) -> list[RegisteredClient]:
        """Every registered client, by id."""
        ...

    async def remove(self, client_id: str) -> bool:
        """Forget a client; False when there was none."""
        ...

    async def first_use(self, client_id: str, jti: str, expires: float) -> bool:
        """Record that the client used assertion `jti`, until `expires` (epoch seconds);
        False when it was recorded already: a replay. Records past their time are pruned."""
        ...

    async def close(self) -> None: ...
