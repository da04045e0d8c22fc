"""Shared bits of the security tests: owned jobs, key generation, paths of both APIs."""

import json
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fhir_server.resources.conformance import CONFORMANCE_TYPES
from fhir_server.storage.base import JobRecord, JobStore

from .conftest import make_job

HOST = "http://testserver"
JOB_ID = "89678f60-4cdc-4fe3-ae83-e8b3ebd35c59"  # a UUID: valid on every adapter path
# One GET per API family; each answers 200 for a visible job.
READ_PATHS = {
    "fhir": f"{HOST}/fhir/R4/AsyncJob/{JOB_ID}",
    "ehealth-job": f"{HOST}/Jobs/{JOB_ID}",
    "ehealth-composition": f"{HOST}/patients/composition/job/{JOB_ID}",
}


async def owned_job(store: JobStore, owner: str | None, **fields: Any) -> JobRecord:
    job = make_job(**{"id": JOB_ID, **fields})
    current = await store.get(job["id"])
    version = current.version if current else 0
    return await store.save(job, expected_version=version, owner=owner)


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def write_jwks(path: Path, *keys: tuple[Any, str, str]) -> Path:
    """A JWKS file with the public halves of (private key, algorithm, kid)."""
    entries = []
    for private, algorithm, kid in keys:
        algo = jwt.algorithms.get_default_algorithms()[algorithm]
        entry = json.loads(algo.to_jwk(private.public_key()))
        entry.update({"kid": kid, "alg": algorithm, "use": "sig"})
        entries.append(entry)
    path.write_text(json.dumps({"keys": entries}))
    return path


def signed(private: Any, algorithm: str, kid: str | None, **claims: Any) -> str:
    headers = {"kid": kid} if kid else None
    return jwt.encode(claims, private, algorithm=algorithm, headers=headers)


# Answered without a token (the README's Security section lists the same).
PUBLIC_PATHS = (
    "/healthz",
    "/readyz",
    "/fhir/R4/metadata",
    "/fhir/R4/.well-known/smart-configuration",
    "/openapi.json",
    "/oauth2/token",
    # the job console's page and files (its data comes from the API, with a token); / sends
    # a browser there
    "/",
    "/console",
    "/console/{name}",
    # the subscriptions' WebSocket: the upgrade is public, each bind needs a binding token
    "/ws/subscriptions-r4",
    # the definitions the CapabilityStatement names, public like it
    *(f"/fhir/R4/{t}{path}" for t in CONFORMANCE_TYPES for path in ("", "/{id}")),
)


def app_routes(app: Any) -> list[Any]:
    """Every route of the app, those of mounted sub-applications included; a WebSocket route
    as the GET that upgrades (`websocket` set, no access rule: binds are authorized by their
    binding tokens)."""
    from types import SimpleNamespace

    from starlette.routing import Mount, WebSocketRoute

    routes = []
    for route in app.routes:
        if isinstance(route, Mount):
            routes += app_routes(route.app)
        elif isinstance(route, WebSocketRoute):
            routes.append(
                SimpleNamespace(
                    path=route.path,
                    template=route.path,
                    methods={"GET"},
                    access=None,
                    websocket=True,
                )
            )
        else:
            routes.append(route)
    return routes
