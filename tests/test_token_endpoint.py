"""The token endpoint and SMART discovery in process, through each configuration: the server's
own endpoint, an identity provider's, authentication off, a public base URL; how scopes are
narrowed to a registration; how a client's JWK Set URL is fetched and cached."""

import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from fhir_server.app import create_app
from fhir_server.auth.clients import ClientKeys, KeyNotFound
from fhir_server.auth.scopes import narrowed
from fhir_server.config import Settings
from fhir_server.storage.base import JobStore
from fhir_server.storage.clients import RegisteredClient

from .auth_helpers import rsa_key, write_jwks
from .conftest import ADMIN_HEADERS, TEST_JWT_SECRET

HOST = "http://testserver"
TOKEN_URL = f"{HOST}/oauth2/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
KEY = rsa_key()


def client_for(app: Any, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=HOST, headers=headers or {}
    )


async def registered_app(store: JobStore, tmp_path: Path, **settings: Any) -> Any:
    """An app whose store knows client `svc` (RS384 key `k1`, scope system/AsyncJob.rs)."""
    app = create_app(Settings(jwt_secret=TEST_JWT_SECRET, **settings), store=store)
    jwks = write_jwks(tmp_path / "svc.json", (KEY, "RS384", "k1")).read_text()
    await app.state.clients.add(RegisteredClient("svc", "system/AsyncJob.rs", jwks=jwks))
    return app


def signed_assertion(audience: str, **claims: Any) -> str:
    payload = {
        "iss": "svc",
        "sub": "svc",
        "aud": audience,
        "exp": int(time.time()) + 300,
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(payload | claims, KEY, algorithm="RS384", headers={"kid": "k1"})


def form(assertion: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
    }


async def test_the_token_url_is_on_the_public_base_url(store: JobStore, tmp_path: Path):
    app = await registered_app(store, tmp_path, public_base_url="https://fhir.example.org/x")
    async with client_for(app) as http:
        discovery = (await http.get("/fhir/R4/.well-known/smart-configuration")).json()
        addressed_to_host = await http.post("/oauth2/token", data=form(signed_assertion(TOKEN_URL)))
        addressed_to_public = await http.post(
            "/oauth2/token", data=form(signed_assertion("https://fhir.example.org/x/oauth2/token"))
        )
    assert discovery["token_endpoint"] == "https://fhir.example.org/x/oauth2/token"
    assert addressed_to_host.status_code == 401
    assert "aud" in addressed_to_host.json()["error_description"]
    assert addressed_to_public.status_code == 200


async def test_an_identity_providers_token_endpoint_is_named_and_ours_issues_nothing(
    store: JobStore, tmp_path: Path
):
    idp = "https://idp.example.org/oauth2/token"
    app = await registered_app(store, tmp_path, token_endpoint=idp)
    async with client_for(app) as http:
        discovery = (await http.get("/fhir/R4/.well-known/smart-configuration")).json()
        capability = (await http.get("/fhir/R4/metadata")).json()
        refused = await http.post("/oauth2/token", data=form(signed_assertion(idp)))
    assert discovery["token_endpoint"] == idp
    oauth_uris = capability["rest"][0]["security"]["extension"][0]["extension"]
    assert oauth_uris == [{"url": "token", "valueUri": idp}]
    assert refused.status_code == 400
    assert refused.json() == {
        "error": "unsupported_grant_type",
        "error_description": f"This server issues no tokens: its identity provider does, at {idp}",
    }


async def test_with_only_a_jwks_file_no_token_is_issued_and_the_start_says_so(
    store: JobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
):
    monkeypatch.delenv("FHIR_SERVER_JWT_SECRET")
    jwks = write_jwks(tmp_path / "idp.json", (rsa_key(), "RS256", "idp"))
    with caplog.at_level(logging.WARNING, logger="fhir_server"):
        app = create_app(Settings(jwks_file=jwks, jwt_audience="fhir"), store=store)
    assert "FHIR_SERVER_TOKEN_ENDPOINT" in caplog.text
    async with client_for(app) as http:
        refused = await http.post("/oauth2/token", data=form("x"))
    assert refused.json()["error"] == "unsupported_grant_type"


async def test_with_authentication_off_the_capability_statement_has_no_security(
    store: JobStore,
):
    app = create_app(Settings(auth="off"), store=store)
    async with client_for(app) as http:
        capability = (await http.get("/fhir/R4/metadata")).json()
        refused = await http.post("/oauth2/token", data=form("x"))
    assert "security" not in capability["rest"][0]
    assert refused.json() == {
        "error": "unsupported_grant_type",
        "error_description": "Authentication is off on this server: requests need no token",
    }


async def test_a_token_answer_to_a_caller_with_a_token_has_one_cache_control(
    store: JobStore, tmp_path: Path
):
    app = await registered_app(store, tmp_path)
    async with client_for(app, ADMIN_HEADERS) as http:
        answer = await http.post("/oauth2/token", data=form(signed_assertion(TOKEN_URL)))
    assert answer.status_code == 200
    assert answer.headers.get_list("cache-control") == ["no-store"]


async def test_the_token_works_on_the_fhir_api_of_the_same_app(store: JobStore, tmp_path: Path):
    app = await registered_app(store, tmp_path)
    async with client_for(app) as http:
        answer = await http.post("/oauth2/token", data=form(signed_assertion(TOKEN_URL)))
        token = answer.json()["access_token"]
        searched = await http.get("/fhir/R4/AsyncJob", headers={"Authorization": f"Bearer {token}"})
    assert searched.status_code == 200
    assert searched.headers["cache-control"] == "no-store"


# --- what a registration grants ---

NARROWING = [
    # (requested, registered, granted)
    ("system/AsyncJob.rs", "system/AsyncJob.rs", "system/AsyncJob.rs"),
    ("system/AsyncJob.read", "system/AsyncJob.cruds", "system/AsyncJob.rs"),
    ("system/AsyncJob.rs", "system/AsyncJob.cruds", "system/AsyncJob.rs"),
    ("system/AsyncJob.cruds", "system/AsyncJob.rs", "system/AsyncJob.rs"),
    ("system/*.rs", "system/AsyncJob.cruds", "system/AsyncJob.rs"),
    ("system/AsyncJob.rs", "system/*.cruds", "system/AsyncJob.rs"),
    ("system/*.*", "system/*.cruds", "system/*.cruds"),
    ("system/*.*", "system/*.*", "system/*.*"),
    ("system/AsyncJob.rs", "system/AsyncJob.r system/AsyncJob.s", "system/AsyncJob.rs"),
    ("system/AsyncJob.cud", "system/AsyncJob.rs", ""),
    ("user/AsyncJob.rs", "system/AsyncJob.rs", ""),
    ("system/Patient.rs", "system/AsyncJob.rs", ""),
    ("launch/patient system/AsyncJob.rs", "system/AsyncJob.rs", "system/AsyncJob.rs"),
    ("job:read", "job:read composition:read", "job:read"),
    ("job:read", "system/*.*", ""),
    ("system/AsyncJob.sr", "system/AsyncJob.cruds", ""),  # not a v2 scope: letters in order
]


@pytest.mark.parametrize(("requested", "registered", "granted"), NARROWING)
def test_a_request_is_granted_what_the_registration_covers(
    requested: str, registered: str, granted: str
):
    assert " ".join(narrowed(requested.split(), registered.split())) == granted


# --- a client's JWK Set URL ---

URL = "https://client.example.org/jwks.json"
EC_KEY = ec.generate_private_key(ec.SECP384R1())


def published(tmp_path: Path, kid: str = "e1") -> bytes:
    return write_jwks(tmp_path / f"{kid}.json", (EC_KEY, "ES384", kid)).read_bytes()


class Publisher:
    """A client's web server: answers each fetch with the body and headers it is given."""

    def __init__(self, body: bytes, headers: dict[str, str] | None = None, status: int = 200):
        self.body, self.headers, self.status = body, headers or {}, status
        self.fetches = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.fetches += 1
        assert request.headers["accept"] == "application/json"
        return httpx.Response(self.status, content=self.body, headers=self.headers)


def keys_of(publisher: Publisher) -> ClientKeys:
    return ClientKeys(transport=httpx.MockTransport(publisher))


CLIENT = RegisteredClient("svc", "system/AsyncJob.rs", jwks_url=URL)


async def test_a_jwk_set_url_is_fetched_once_while_its_max_age_lasts(tmp_path: Path):
    publisher = Publisher(published(tmp_path), {"Cache-Control": "max-age=60"})
    keys = keys_of(publisher)
    for _ in range(3):
        assert await keys.key_for(CLIENT, "ES384", "e1") is not None
    assert publisher.fetches == 1
    now = time.monotonic()
    keys.clock = lambda: now + 61
    await keys.key_for(CLIENT, "ES384", "e1")
    assert publisher.fetches == 2


@pytest.mark.parametrize("cache_control", ["no-store", "no-cache", "max-age=0"])
async def test_a_jwk_set_the_client_says_not_to_keep_is_fetched_every_time(
    tmp_path: Path, cache_control: str
):
    publisher = Publisher(published(tmp_path), {"Cache-Control": cache_control})
    keys = keys_of(publisher)
    await keys.key_for(CLIENT, "ES384", "e1")
    await keys.key_for(CLIENT, "ES384", "e1")
    assert publisher.fetches == 2


async def test_an_unknown_kid_fetches_a_kept_set_again_at_most_every_30_seconds(tmp_path: Path):
    publisher = Publisher(published(tmp_path))
    keys = keys_of(publisher)
    await keys.key_for(CLIENT, "ES384", "e1")
    with pytest.raises(KeyNotFound):
        await keys.key_for(CLIENT, "ES384", "rotated")
    assert publisher.fetches == 1
    publisher.body = published(tmp_path, "rotated")
    now = time.monotonic()
    keys.clock = lambda: now + 31
    assert await keys.key_for(CLIENT, "ES384", "rotated") is not None
    assert publisher.fetches == 2


@pytest.mark.parametrize(
    ("publisher", "message"),
    [
        (Publisher(b"{}", status=404), "answered 404"),
        (Publisher(b" " * (64 * 1024 + 1)), "too large"),
        (Publisher(b"<html>"), "not JSON"),
        (Publisher(json.dumps({"keys": [{"kty": "oct", "kid": "e1", "k": "c2VjcmV0"}]}).encode()),
         "private or secret"),
    ],
)  # fmt: skip
async def test_an_unusable_jwk_set_url_finds_no_key(publisher: Publisher, message: str):
    with pytest.raises(KeyNotFound, match=message):
        await keys_of(publisher).key_for(CLIENT, "ES384", "e1")


async def test_a_key_is_used_only_with_the_algorithm_its_type_fits(tmp_path: Path):
    keys = keys_of(Publisher(published(tmp_path)))
    with pytest.raises(KeyNotFound, match="no RS384 key"):
        await keys.key_for(CLIENT, "RS384", "e1")
