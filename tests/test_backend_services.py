"""SMART Backend Services over a real server process (two workers sharing the data file): SMART
discovery, the token endpoint, and real clients that use them — fhirclient, fhir-kit-client and
@medplum/core — with assertions signed here with RS384 and ES384 keys."""

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fhirclient import client as fhirclient

from .auth_helpers import rsa_key, write_jwks
from .conftest import ADMIN_HEADERS, TEST_JWT_SECRET, make_job
from .node_clients import run_node
from .servers import cli, running_server

FHIR_JSON = {"Content-Type": "application/fhir+json"}
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
OAUTH_ERRORS = {
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "invalid_scope",
    "unsupported_grant_type",
}


@dataclass(frozen=True)
class Client:
    """A registered client and the private key it signs its assertions with."""

    id: str
    key: Any
    algorithm: str
    kid: str


RSA_CLIENT = Client("rs-client", rsa_key(), "RS384", "rs-1")
EC_CLIENT = Client("es-client", ec.generate_private_key(ec.SECP384R1()), "ES384", "es-1")
URL_CLIENT = Client("url-client", ec.generate_private_key(ec.SECP384R1()), "ES384", "url-1")


class JwksHandler(BaseHTTPRequestHandler):
    """Publishes URL_CLIENT's JWK Set, as a client's own web server would."""

    body = b""
    fetches = 0

    def do_GET(self) -> None:
        type(self).fetches += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "max-age=60")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


@dataclass(frozen=True)
class Server:
    base: str  # the FHIR base
    root: str
    jwks_url: str

    @property
    def token_url(self) -> str:
        return f"{self.root}/oauth2/token"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("backend-services")
    data_dir = home / "data"
    publisher = ThreadingHTTPServer(("127.0.0.1", 0), JwksHandler)
    jwks_url = f"http://127.0.0.1:{publisher.server_address[1]}/jwks.json"
    JwksHandler.body = write_jwks(
        home / "url.json", (URL_CLIENT.key, URL_CLIENT.algorithm, URL_CLIENT.kid)
    ).read_bytes()
    threading.Thread(target=publisher.serve_forever, daemon=True).start()
    for client, scope in (
        (RSA_CLIENT, "system/AsyncJob.cruds"),
        (EC_CLIENT, "system/AsyncJob.rs system/AsyncJob.c"),
    ):
        jwks = write_jwks(home / f"{client.id}.json", (client.key, client.algorithm, client.kid))
        added = cli(
            "client", "add", "--id", client.id, "--jwks-file", str(jwks), "--scope", scope,
            "--data-dir", str(data_dir),
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
    added = cli(
        "client", "add", "--id", URL_CLIENT.id, "--jwks-url", jwks_url,
        "--scope", "system/AsyncJob.rs", "--data-dir", str(data_dir),
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    try:
        with running_server(data_dir, workers=2) as base:
            yield Server(base, base.removesuffix("/fhir/R4"), jwks_url)
    finally:
        publisher.shutdown()


def assertion(
    client: Client, audience: str, *, header: dict[str, Any] | None = None, **claims: Any
) -> str:
    """The client's authentication JWT, as SMART says; claims and header entries override
    (None removes a claim)."""
    now = int(time.time())
    payload = {
        "iss": client.id,
        "sub": client.id,
        "aud": audience,
        "exp": now + 300,
        "jti": str(uuid.uuid4()),
    } | claims
    payload = {k: v for k, v in payload.items() if v is not None}
    headers = {"kid": client.kid, "typ": "JWT", **(header or {})}
    return jwt.encode(payload, client.key, algorithm=client.algorithm, headers=headers)


def token_request(server: Server, signed: str, scope: str | None = None) -> httpx.Response:
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": signed,
    }
    if scope is not None:
        form["scope"] = scope
    return httpx.post(server.token_url, data=form)


def access_token(server: Server, client: Client, scope: str | None = None) -> str:
    answer = token_request(server, assertion(client, server.token_url), scope)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def bearer_of(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def create_job(server: Server, headers: dict[str, str]) -> str:
    created = httpx.post(
        f"{server.base}/AsyncJob", json=make_job(id=None), headers={**headers, **FHIR_JSON}
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def assert_oauth_error(answer: httpx.Response, status: int, error: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert set(body) == {"error", "error_description"}, body
    assert body["error"] == error, body
    assert body["error"] in OAUTH_ERRORS
    assert "Traceback" not in body["error_description"]


# --- discovery ---


def test_smart_configuration_is_public_and_names_the_token_endpoint(server: Server):
    answer = httpx.get(f"{server.base}/.well-known/smart-configuration")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    document = answer.json()
    assert document == {
        "token_endpoint": server.token_url,
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "scopes_supported": document["scopes_supported"],
        "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"],
    }
    assert {"system/AsyncJob.rs", "system/AsyncJob.cruds"} <= set(document["scopes_supported"])


def test_capability_statement_declares_smart_on_fhir_and_the_same_token_endpoint(
    server: Server,
):
    security = httpx.get(f"{server.base}/metadata").json()["rest"][0]["security"]
    assert security["service"][0]["coding"] == [
        {
            "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
            "code": "SMART-on-FHIR",
            "display": "SMART-on-FHIR",
        }
    ]
    assert security["extension"] == [
        {
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [{"url": "token", "valueUri": server.token_url}],
        }
    ]
    assert "Authorization: Bearer" in security["description"]


def test_fhir_kit_client_smart_auth_metadata_finds_the_token_url(server: Server):
    found = run_node("smart_discovery.mjs", {"baseUrl": server.base})
    assert found == {"tokenUrl": server.token_url, "authorizeUrl": None}


def test_fhirclient_discovers_the_token_endpoint_gets_a_token_and_reads(server: Server):
    """fhirclient finds the token URL in the CapabilityStatement's oauth-uris (the one
    .well-known names too), posts the signed assertion there and reads with the token. It adds
    `launch/patient` to the scopes it asks for: not registered, so not granted."""
    mine = create_job(server, bearer_of(access_token(server, RSA_CLIENT)))
    smart = fhirclient.FHIRClient(
        settings={
            "app_id": RSA_CLIENT.id,
            "api_base": server.base,
            "scope": "system/AsyncJob.rs",
            "jwt_token": assertion(RSA_CLIENT, server.token_url),
        }
    )
    assert smart.prepare() is False  # the CapabilityStatement is read, no token yet
    assert smart.server.auth._token_uri == server.token_url
    smart.authorize()
    assert smart.ready
    assert smart.server.request_json(f"AsyncJob/{mine}")["id"] == mine
    searched = smart.server.request_json("AsyncJob?_count=100")
    assert mine in [entry["resource"]["id"] for entry in searched["entry"]]


# --- tokens for registered clients ---


@pytest.mark.parametrize("client", [RSA_CLIENT, EC_CLIENT], ids=["RS384", "ES384"])
def test_a_backend_service_gets_a_token_and_sees_only_its_own_jobs(server: Server, client: Client):
    answer = token_request(server, assertion(client, server.token_url))
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    registered = (
        "system/AsyncJob.cruds" if client is RSA_CLIENT else "system/AsyncJob.rs system/AsyncJob.c"
    )
    assert body == {
        "access_token": body["access_token"],
        "token_type": "bearer",
        "expires_in": 300,
        "scope": registered,
    }
    claims = jwt.decode(body["access_token"], TEST_JWT_SECRET, algorithms=["HS256"])
    assert (claims["sub"], claims["client_id"]) == (client.id, client.id)
    headers = bearer_of(body["access_token"])
    mine = create_job(server, headers)
    others = create_job(server, ADMIN_HEADERS)

    read = httpx.get(f"{server.base}/AsyncJob/{mine}", headers=headers)
    searched = httpx.get(f"{server.base}/AsyncJob", params={"_count": 1000}, headers=headers)

    assert read.status_code == 200
    ids = [entry["resource"]["id"] for entry in searched.json()["entry"]]
    assert mine in ids and others not in ids
    assert httpx.get(f"{server.base}/AsyncJob/{others}", headers=headers).status_code == 404
    as_admin = httpx.get(f"{server.base}/AsyncJob/{mine}/_history", headers=ADMIN_HEADERS)
    assert as_admin.status_code == 200


def test_a_client_asking_for_less_than_registered_is_granted_less(server: Server):
    answer = token_request(server, assertion(RSA_CLIENT, server.token_url), "system/AsyncJob.rs")
    assert answer.json()["scope"] == "system/AsyncJob.rs"
    headers = bearer_of(answer.json()["access_token"])
    assert httpx.get(f"{server.base}/AsyncJob", headers=headers).status_code == 200
    refused = httpx.post(
        f"{server.base}/AsyncJob", json=make_job(id=None), headers={**headers, **FHIR_JSON}
    )
    assert refused.status_code == 403


def test_a_scope_partly_outside_the_registration_is_granted_only_the_registered_part(
    server: Server,
):
    answer = token_request(
        server, assertion(EC_CLIENT, server.token_url), "system/AsyncJob.cruds job:read"
    )
    assert answer.json()["scope"] == "system/AsyncJob.crs"


def test_a_client_asking_for_the_admin_scope_gets_only_what_it_is_registered_for(
    server: Server,
):
    answer = token_request(server, assertion(RSA_CLIENT, server.token_url), "system/*.*")
    assert answer.json()["scope"] == "system/AsyncJob.cruds"


def test_a_client_with_a_jwks_url_is_verified_with_the_keys_published_there(server: Server):
    token = access_token(server, URL_CLIENT, "system/AsyncJob.rs")
    assert httpx.get(f"{server.base}/AsyncJob", headers=bearer_of(token)).status_code == 200
    assert JwksHandler.fetches >= 1
    matching = assertion(URL_CLIENT, server.token_url, header={"jku": server.jwks_url})
    assert token_request(server, matching).status_code == 200


def test_an_assertion_used_at_once_by_every_worker_gets_exactly_one_token(server: Server):
    signed = assertion(EC_CLIENT, server.token_url)
    answers = [token_request(server, signed) for _ in range(8)]
    assert [a.status_code for a in answers].count(200) == 1
    for refused in (a for a in answers if a.status_code != 200):
        assert_oauth_error(refused, 401, "invalid_client")
        assert "jti" in refused.json()["error_description"]


def test_a_refused_request_does_not_use_up_its_assertion(server: Server):
    signed = assertion(RSA_CLIENT, server.token_url)
    assert_oauth_error(token_request(server, signed, "system/Patient.rs"), 400, "invalid_scope")
    assert token_request(server, signed, "system/AsyncJob.rs").status_code == 200


def _refusals(server: Server) -> dict[str, tuple[str, str | None, int, str]]:
    """name -> (assertion, scope, status, error)."""
    url = server.token_url
    now = int(time.time())
    stranger = rsa_key()
    public_pem = (
        RSA_CLIENT.key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    claims = {"iss": RSA_CLIENT.id, "sub": RSA_CLIENT.id, "aud": url, "exp": now + 300}
    hs256 = jwt.encode(
        claims | {"jti": "hs"}, TEST_JWT_SECRET, algorithm="HS256", headers={"kid": "rs-1"}
    )
    hs256_public = _hs256_with(public_pem, claims | {"jti": "hs-pem"})
    unsigned = jwt.encode(claims | {"jti": "none"}, None, algorithm="none", headers={"kid": "rs-1"})
    rs = RSA_CLIENT
    return {
        "wrong aud (the FHIR base)": (assertion(rs, server.base), None, 401, "invalid_client"),
        "expired exp": (assertion(rs, url, exp=now - 120), None, 401, "invalid_client"),
        "exp more than 5 minutes ahead": (
            assertion(rs, url, exp=now + 600),
            None,
            401,
            "invalid_client",
        ),
        "no exp": (assertion(rs, url, exp=None), None, 401, "invalid_client"),
        "no jti": (assertion(rs, url, jti=None), None, 401, "invalid_client"),
        "unregistered kid": (
            assertion(rs, url, header={"kid": "rs-2"}),
            None,
            401,
            "invalid_client",
        ),
        "another key with the registered kid": (
            assertion(Client(rs.id, stranger, "RS384", rs.kid), url),
            None,
            401,
            "invalid_client",
        ),
        "alg none": (unsigned, None, 401, "invalid_client"),
        "HS256 with the server's secret": (hs256, None, 401, "invalid_client"),
        "HS256 with the client's public key": (hs256_public, None, 401, "invalid_client"),
        "RS256": (
            jwt.encode(
                claims | {"jti": "rs256"}, rs.key, algorithm="RS256", headers={"kid": "rs-1"}
            ),
            None,
            401,
            "invalid_client",
        ),
        "iss is not sub": (assertion(rs, url, sub="es-client"), None, 401, "invalid_client"),
        "unknown client": (
            assertion(Client("nobody", rs.key, "RS384", rs.kid), url),
            None,
            401,
            "invalid_client",
        ),
        "a jku that is not registered": (
            assertion(rs, url, header={"jku": "https://attacker.example/jwks.json"}),
            None,
            401,
            "invalid_client",
        ),
        "scope outside the registration": (
            assertion(rs, url),
            "system/Patient.rs",
            400,
            "invalid_scope",
        ),
        "a scope with a control character": (
            assertion(rs, url),
            "system/AsyncJob.rs\x01",
            400,
            "invalid_scope",
        ),
        "not a JWT": ("not-a-jwt", None, 401, "invalid_client"),
    }


def _hs256_with(key: str, claims: dict[str, Any]) -> str:
    """HS256 "signed" with a public key's PEM: PyJWT refuses to, so the JWS is built by hand
    (the key-confusion attack)."""
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rs-1"}).encode())
    body = b64(json.dumps(claims).encode())
    mac = hmac.new(key.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


REFUSALS = [
    "wrong aud (the FHIR base)",
    "expired exp",
    "exp more than 5 minutes ahead",
    "no exp",
    "no jti",
    "unregistered kid",
    "another key with the registered kid",
    "alg none",
    "HS256 with the server's secret",
    "HS256 with the client's public key",
    "RS256",
    "iss is not sub",
    "unknown client",
    "a jku that is not registered",
    "scope outside the registration",
    "a scope with a control character",
    "not a JWT",
]


@pytest.mark.parametrize("case", REFUSALS)
def test_a_bad_token_request_is_refused_with_its_oauth_error(server: Server, case: str):
    signed, scope, status, error = _refusals(server)[case]
    assert_oauth_error(token_request(server, signed, scope), status, error)


def test_a_replayed_assertion_is_refused(server: Server):
    signed = assertion(RSA_CLIENT, server.token_url)
    assert token_request(server, signed).status_code == 200
    assert_oauth_error(token_request(server, signed), 401, "invalid_client")


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
        ({}, 400, "invalid_request"),
        ({"grant_type": "client_credentials"}, 401, "invalid_client"),
        (
            {"grant_type": "client_credentials", "client_assertion_type": "basic"},
            401,
            "invalid_client",
        ),
    ],
)
def test_a_token_request_without_a_usable_assertion_is_refused(
    server: Server, form: dict[str, str], status: int, error: str
):
    assert_oauth_error(httpx.post(server.token_url, data=form), status, error)


def test_a_token_request_not_sent_as_a_form_is_invalid(server: Server):
    answer = httpx.post(server.token_url, json={"grant_type": "client_credentials"})
    assert_oauth_error(answer, 400, "invalid_request")


def test_a_parameter_sent_twice_is_invalid(server: Server):
    signed = assertion(RSA_CLIENT, server.token_url)
    body = (
        f"grant_type=client_credentials&client_assertion_type={ASSERTION_TYPE}"
        f"&client_assertion={signed}&scope=system/AsyncJob.rs&scope=system/AsyncJob.cruds"
    )
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    answer = httpx.post(server.token_url, content=body, headers=headers)
    assert_oauth_error(answer, 400, "invalid_request")


def test_other_paths_and_methods_under_oauth2_answer_in_oauth_json(server: Server):
    wrong_method = httpx.get(server.token_url)
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"] == "invalid_request"
    # As anywhere on this server, an unknown path is a 404 to a caller with a token, a 401
    # without one.
    unknown = httpx.post(f"{server.root}/oauth2/authorize", headers=ADMIN_HEADERS)
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "invalid_request"
    anonymous = httpx.post(f"{server.root}/oauth2/authorize")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"] == "invalid_request"


def test_medplum_logs_in_with_a_jwt_assertion_and_reads_its_jobs(server: Server):
    mine = create_job(server, bearer_of(access_token(server, RSA_CLIENT)))
    result = run_node(
        "medplum_backend_services.mjs",
        {
            "baseUrl": server.root + "/",
            "clientId": RSA_CLIENT.id,
            "assertion": assertion(RSA_CLIENT, server.token_url),
            "jobId": mine,
        },
    )
    assert result["loggedIn"] is True
    assert result["read"] == mine
    assert mine in result["searched"]
