"""`fhir-server client add | list | remove`: registrations an operator can trust, refused with
a line that says what is wrong."""

import json
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from .auth_helpers import ec_key, rsa_key, write_jwks
from .servers import cli


@pytest.fixture
def data_dir(tmp_path: Path) -> str:
    return str(tmp_path / "data")


@pytest.fixture
def jwks(tmp_path: Path) -> str:
    return str(write_jwks(tmp_path / "svc.json", (rsa_key(), "RS384", "svc-1")))


def test_a_client_is_added_listed_and_removed(data_dir: str, jwks: str):
    added = cli(
        "client", "add", "--id", "svc", "--jwks-file", jwks, "--scope", "system/AsyncJob.rs",
        "--data-dir", data_dir,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "registered client svc" in added.stderr
    web = cli(
        "client", "add", "--id", "web", "--jwks-url", "https://web.example/jwks.json",
        "--scope", "system/*.rs  job:read", "--data-dir", data_dir,
    )  # fmt: skip
    assert web.returncode == 0, web.stderr
    listed = cli("client", "list", "--data-dir", data_dir)
    rows = [line.split("\t")[:3] for line in listed.stdout.splitlines()]
    assert rows == [
        ["svc", "system/AsyncJob.rs", "JWK Set registered from a file"],
        ["web", "system/*.rs job:read", "https://web.example/jwks.json"],
    ]
    assert cli("client", "remove", "--id", "svc", "--data-dir", data_dir).returncode == 0
    gone = cli("client", "remove", "--id", "svc", "--data-dir", data_dir)
    assert gone.returncode == 1 and "no client svc" in gone.stderr
    listed = cli("client", "list", "--data-dir", data_dir)
    assert [line.split("\t")[0] for line in listed.stdout.splitlines()] == ["web"]


def test_an_id_is_registered_once(data_dir: str, jwks: str):
    args = ("client", "add", "--id", "svc", "--jwks-file", jwks, "--scope", "system/AsyncJob.rs")
    assert cli(*args, "--data-dir", data_dir).returncode == 0
    again = cli(*args, "--data-dir", data_dir)
    assert again.returncode == 1
    assert "registered already" in again.stderr


def jwks_file(tmp_path: Path, document: object) -> str:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(document))
    return str(path)


def public_jwk(key: object, algorithm: str, kid: str) -> dict[str, object]:
    jwk = json.loads(jwt.algorithms.get_default_algorithms()[algorithm].to_jwk(key))
    return {**jwk, "kid": kid}


BAD_KEY_SETS = {
    "not JSON": ("{", "is not JSON"),
    "not a JWK Set": ([1, 2], "is not a JWK Set"),
    "a key without kid": ({"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}, "kty and a kid"),
    "an HMAC secret": ({"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]}, "secret"),
    "only a P-256 key": (None, "no RSA or EC P-384 key"),
    "a private key": (None, "private or secret key material"),
}


@pytest.mark.parametrize("case", list(BAD_KEY_SETS))
def test_an_unusable_jwk_set_is_refused(tmp_path: Path, data_dir: str, case: str):
    document, message = BAD_KEY_SETS[case]
    if case == "only a P-256 key":
        document = {"keys": [public_jwk(ec_key().public_key(), "ES256", "p256")]}
    if case == "a private key":
        document = {"keys": [public_jwk(ec.generate_private_key(ec.SECP384R1()), "ES384", "e")]}
    text = document if isinstance(document, str) else json.dumps(document)
    path = tmp_path / "keys.json"
    path.write_text(text)
    refused = cli(
        "client", "add", "--id", "svc", "--jwks-file", str(path), "--scope", "system/AsyncJob.rs",
        "--data-dir", data_dir,
    )  # fmt: skip
    assert refused.returncode == 2
    assert message in refused.stderr
    assert cli("client", "list", "--data-dir", data_dir).stdout == ""


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--id", "bad id", "client id"),
        ("--id", "client:svc", "client id"),
        ("--scope", "", "at least one scope"),
        ("--scope", "system/AsyncJob.rs\tjob:read", "--scope"),
        ("--jwks-url", "http://web.example/jwks.json", "https URL"),
        ("--jwks-url", "file:///etc/jwks.json", "https URL"),
    ],
)
def test_a_bad_registration_is_refused(data_dir: str, option: str, value: str, message: str):
    args = {"--id": "svc", "--scope": "system/AsyncJob.rs", "--jwks-url": "https://x.example/j"}
    args[option] = value
    refused = cli(
        "client", "add", *[p for pair in args.items() for p in pair], "--data-dir", data_dir
    )
    assert refused.returncode == 2, refused.stderr
    assert message in refused.stderr


def test_a_jwks_url_on_this_machine_may_be_http(data_dir: str):
    added = cli(
        "client", "add", "--id", "local", "--jwks-url", "http://127.0.0.1:9999/jwks.json",
        "--scope", "system/AsyncJob.rs", "--data-dir", data_dir,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
