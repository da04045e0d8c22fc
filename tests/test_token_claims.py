"""What a token's claims may be: scopes (a space-separated `scope` string or an `scp` list of
RFC 6749 scope tokens), how long it may live, numbers that are numbers, and an audience when
an identity provider's keys are trusted."""

import logging
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from fhir_server.app import create_app
from fhir_server.auth.keys import Keys
from fhir_server.auth.scopes import InvalidScopes, parse_scopes
from fhir_server.auth.tokens import InvalidToken, TokenPolicy, TokenVerifier
from fhir_server.cli import main
from fhir_server.config import Settings
from fhir_server.storage.base import JobStore

from .auth_helpers import HOST, JOB_ID, owned_job, rsa_key, write_jwks
from .conftest import TEST_JWT_SECRET, MakeClient

FHIR_JOB = f"{HOST}/fhir/R4/AsyncJob/{JOB_ID}"
HOUR = 3600
# Whitespace that str.split() splits on and U+0020 is not: each made "job:read<it>system/*.*"
# two scopes, the second one the admin scope.
NOT_A_SPACE = ["\u00a0", "\t", "\n", "\x0b", "\x1c", "\x1f", "\u2003", "\u3000", "\u2028"]


def signed(**claims: Any) -> str:
    """An HS256 token with exactly these claims (None leaves one out)."""
    now = int(time.time())
    payload = {"sub": "mallory", "iat": now, "exp": now + HOUR, **claims}
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, TEST_JWT_SECRET, algorithm="HS256")


def verifier(**policy: Any) -> TokenVerifier:
    return TokenVerifier(TokenPolicy(Keys(TEST_JWT_SECRET.encode()), **policy))


def assert_401(response: httpx.Response, says: str) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["issue"][0]["code"] == "login"
    assert says in response.json()["issue"][0]["diagnostics"]


# -- scopes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("separator", NOT_A_SPACE)
async def test_scope_split_on_other_whitespace_grants_nothing_and_is_401(
    make_client: MakeClient, store: JobStore, separator: str
):
    await owned_job(store, "alice")
    async with make_client(sub="mallory", scope=f"job:read{separator}system/*.*") as http:
        assert_401(await http.get(FHIR_JOB), "scope")


@pytest.mark.parametrize(
    "scope",
    ["system/*.*\x00", "system/*.*\x7f", "jоb:read", "system/AsyncJob.rs é", 'a"b', "a\\b"],
    ids=["nul", "del", "cyrillic-o", "non-ascii", "quote", "backslash"],
)
async def test_scope_with_a_character_outside_rfc6749_is_401(
    make_client: MakeClient, store: JobStore, scope: str
):
    async with make_client(sub="mallory", scope=f"system/AsyncJob.rs {scope}") as http:
        assert_401(await http.get(f"{HOST}/fhir/R4/AsyncJob"), "scope")


@pytest.mark.parametrize(
    "claims",
    [
        {"scope": ["system/*.*"]},
        {"scope": {"system/*.*": True}},
        {"scope": None, "scp": "system/*.*"},
        {"scope": None, "scp": ["system/*.*", 7]},
        {"scope": None, "scp": ["job:read\u00a0system/*.*"]},
    ],
    ids=["scope-list", "scope-object", "scp-string", "scp-non-string", "scp-nbsp"],
)
async def test_scope_claims_of_another_type_are_401(
    make_client: MakeClient, store: JobStore, claims: dict[str, Any]
):
    await owned_job(store, "alice")
    async with make_client(sub="mallory", **claims) as http:
        assert_401(await http.get(FHIR_JOB), "sc")


async def test_scopes_separated_by_several_spaces_are_read(
    make_client: MakeClient, store: JobStore
):
    await owned_job(store, "svc")
    async with make_client(sub="svc", scope="  system/AsyncJob.rs   job:read ") as http:
        assert (await http.get(FHIR_JOB)).status_code == 200
        assert (await http.get(f"{HOST}/Jobs/{JOB_ID}")).status_code == 200


def test_parse_scopes_reads_the_documented_claim_types():
    assert parse_scopes({"scope": "a b  c"}) == {"a", "b", "c"}
    assert parse_scopes({"scp": ["a", "b"]}) == {"a", "b"}
    assert parse_scopes({"scope": "a", "scp": ["b"]}) == {"a"}  # scope wins, as before
    assert parse_scopes({}) == frozenset()
    with pytest.raises(InvalidScopes):
        parse_scopes({"scope": "a\u00a0b"})


# -- lifetime and numeric dates --------------------------------------------------------------


@pytest.mark.parametrize(
    "times",
    [
        {"exp": HOUR * 25},  # 25 h after iat
        {"iat": None, "exp": HOUR * 25},  # 25 h from now
        {"iat": -HOUR * 24, "exp": HOUR},  # 25 h after an iat in the past
        {"exp": 10**12},
        {"exp": 10**400},  # float() of it raised OverflowError: a 500
    ],
    ids=["after-iat", "no-iat", "iat-in-the-past", "far-future", "beyond-float"],
)
async def test_token_living_longer_than_the_max_lifetime_is_401(
    make_client: MakeClient, store: JobStore, times: dict[str, int | None]
):
    now = int(time.time())
    claims = {k: None if v is None else now + v for k, v in times.items()}
    await owned_job(store, "mallory")
    async with make_client(sub="mallory", **claims) as http:
        assert_401(await http.get(FHIR_JOB), "lives longer")


def test_token_within_the_max_lifetime_is_accepted():
    now = int(time.time())
    assert verifier().verify(signed(iat=now - 60, exp=now + HOUR * 23)).owner == "mallory"
    assert verifier().verify(signed(iat=None, exp=now + HOUR * 24)).owner == "mallory"


async def test_max_lifetime_is_a_setting(store: JobStore):
    await owned_job(store, "mallory")
    token = signed(scope="system/AsyncJob.rs", exp=int(time.time()) + HOUR * 25)
    settings = Settings(jwt_secret=TEST_JWT_SECRET, jwt_max_lifetime="2d")
    transport = httpx.ASGITransport(app=create_app(settings, store=store))
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=transport, headers=headers) as http:
        assert (await http.get(FHIR_JOB)).status_code == 200
    with pytest.raises(InvalidToken, match="lives longer"):
        verifier(max_lifetime=timedelta(minutes=30)).verify(signed(exp=int(time.time()) + HOUR))


@pytest.mark.parametrize("name", ["exp", "iat", "nbf"])
@pytest.mark.parametrize("spelled", [str, float])
def test_numeric_dates_must_be_json_numbers(name: str, spelled: Any):
    now = int(time.time())
    value = spelled({"exp": now + HOUR, "iat": now, "nbf": now - 1}[name])
    if spelled is float:  # a fractional NumericDate is fine (RFC 7519)
        assert verifier().verify(signed(**{name: value})).owner == "mallory"
        return
    with pytest.raises(InvalidToken, match=f"{name} claim is not a number"):
        verifier().verify(signed(**{name: value}))


def test_cli_refuses_a_ttl_over_the_max_lifetime(capsys: pytest.CaptureFixture[str]):
    assert main(["token", "--sub", "a", "--scope", "job:read", "--ttl", "25h"]) == 2
    assert "JWT_MAX_LIFETIME" in capsys.readouterr().err
    args = ["--ttl", "25h", "--jwt-max-lifetime", "2d"]
    assert main(["token", "--sub", "a", "--scope", "job:read", *args]) == 0


def test_startup_token_lives_no_longer_than_the_max_lifetime(
    store: JobStore,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
):
    monkeypatch.delenv("FHIR_SERVER_JWT_SECRET")
    with caplog.at_level(logging.INFO, logger="fhir_server"):
        create_app(Settings(data_dir=tmp_path, jwt_max_lifetime="1h"), store=store)
    logged = next(r.getMessage() for r in caplog.records if "Bearer " in r.getMessage())
    assert "valid 1h" in logged
    claims = jwt.decode(logged.split("Bearer ")[1].split()[0], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == HOUR


# -- audience --------------------------------------------------------------------------------


def audience_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "JWT_AUDIENCE" in r.getMessage()]


def test_jwks_without_an_audience_logs_a_warning_at_start(
    store: JobStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    jwks = write_jwks(tmp_path / "jwks.json", (rsa_key(), "RS256", "key-1"))
    with caplog.at_level(logging.WARNING, logger="fhir_server"):
        create_app(Settings(jwt_secret=None, jwks_file=jwks), store=store)
    assert len(audience_warnings(caplog)) == 1


def test_jwks_with_an_audience_or_only_a_secret_logs_no_audience_warning(
    store: JobStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    jwks = write_jwks(tmp_path / "jwks.json", (rsa_key(), "RS256", "key-1"))
    with caplog.at_level(logging.WARNING, logger="fhir_server"):
        create_app(Settings(jwt_secret=None, jwks_file=jwks, jwt_audience="fhir"), store=store)
        create_app(Settings(jwt_secret=TEST_JWT_SECRET), store=store)
    assert audience_warnings(caplog) == []
