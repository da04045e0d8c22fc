"""Every setting is also a `fhir-server serve` option, and the option reaches the settings."""

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from fhir_server import cli
from fhir_server.config import Settings

# A value for each setting's option that differs from its default.
OPTION_VALUES: dict[str, tuple[str, Any]] = {
    "host": ("0.0.0.0", "0.0.0.0"),
    "port": ("8123", 8123),
    "public_base_url": ("https://fhir.example.org/", "https://fhir.example.org"),
    "forwarded_allow_ips": ("10.0.0.7,10.1.0.0/16", "10.0.0.7,10.1.0.0/16"),
    "mongodb_uri": ("mongodb://db.example:27017", "mongodb://db.example:27017"),
    "mongodb_database": ("jobs", "jobs"),
    "data_dir": ("/srv/fhir", Path("/srv/fhir")),
    "secret_key_file": ("/run/secrets/cursor-key", Path("/run/secrets/cursor-key")),
    "default_page_size": ("50", 50),
    "max_page_size": ("500", 500),
    "max_offset": ("100", 100),
    "max_page_bytes": ("65536", 65536),
    "log_level": ("debug", "debug"),
    "load": ("examples/jobs", [Path("examples/jobs")]),
    "retry_after_seconds": ("9", 9),
    "retention": ("7d", timedelta(days=7)),
    "retention_interval": ("30m", timedelta(minutes=30)),
    "feed_poll_interval": ("0.1", 0.1),
    "max_subscriptions_per_owner": ("7", 7),
    "max_websockets": ("9", 9),
    "ws_binding_token_lifetime": ("2m", timedelta(minutes=2)),
    "ws_heartbeat_interval": ("5", 5.0),
    "ehealth_eta": ("PT5M", timedelta(minutes=5)),
    "auth": ("off", "off"),
    "jwt_secret_file": ("/run/secrets/jwt", Path("/run/secrets/jwt")),
    "jwks_file": ("/etc/jwks.json", Path("/etc/jwks.json")),
    "token_endpoint": ("https://idp.example/token", "https://idp.example/token"),
    "jwt_issuer": ("https://idp.example", "https://idp.example"),
    "jwt_audience": ("fhir", "fhir"),
    "jwt_leeway_seconds": ("5", 5),
    "jwt_max_lifetime": ("2h", timedelta(hours=2)),
    "admin_scope": ("system/AsyncJob.*", "system/AsyncJob.*"),
    "max_body_bytes": ("2048", 2048),
    "max_bundle_entries": ("50", 50),
    "max_json_depth": ("8", 8),
    "max_json_array_items": ("9", 9),
    "max_json_elements": ("99", 99),
    "max_resource_bytes": ("4096", 4096),
    "load_batch_size": ("500", 500),
    "load_workers": ("3", 3),
    "max_search_parameters": ("5", 5),
    "max_search_values": ("6", 6),
    "max_search_value_length": ("7", 7),
    "max_header_bytes": ("4096", 4096),
    "max_head_bytes": ("16384", 16384),
    "max_token_bytes": ("2048", 2048),
    "max_jobs_per_owner": ("100", 100),
    "max_bytes_per_owner": ("1000000", 1_000_000),
    "rate_limit": ("20/second;600/minute", "20/second;600/minute"),
    "header_timeout": ("2.5", 2.5),
    "body_timeout": ("3.5", 3.5),
    "keep_alive_timeout": ("2", 2),
    "max_connections": ("50", 50),
    "mongodb_max_pool_size": ("10", 10),
    "mongodb_min_pool_size": ("2", 2),
    "mongodb_server_selection_timeout_ms": ("900", 900),
    "mongodb_connect_timeout_ms": ("800", 800),
    "mongodb_socket_timeout_ms": ("700", 700),
    "mongodb_write_concern": ("2", "2"),
    "mongodb_journal": ("false", False),
    "mongodb_retry_writes": ("false", False),
    "store_timeout": ("0.5", 0.5),
    "access_log": ("false", False),
    "shutdown_timeout": ("3", 3),
    "subscription_allow_private_endpoints": ("true", True),
    "subscription_timeout": ("2.5", 2.5),
    "subscription_max_attempts": ("3", 3),
    "subscription_backoff_base": ("0.5", 0.5),
    "subscription_backoff_cap": ("60", 60.0),
    "subscription_response_bytes": ("100", 100),
}


def test_every_setting_but_the_secrets_has_an_option_value_here():
    assert set(OPTION_VALUES) == set(Settings.model_fields) - set(cli.ENV_ONLY)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Run `fhir-server serve` up to the point where uvicorn would start."""
    seen: dict[str, Any] = {}

    async def store_is_usable(settings: Settings) -> bool:
        return True

    def serve(settings: Settings, workers: int) -> None:
        seen.update(settings=settings, workers=workers)

    monkeypatch.setattr(cli, "check_store", store_is_usable)
    monkeypatch.setattr(cli, "serve", serve)
    for name in Settings.model_fields:  # only the command line counts
        monkeypatch.delenv(f"FHIR_SERVER_{name.upper()}", raising=False)
    return seen


@pytest.mark.parametrize("name", list(OPTION_VALUES))
def test_serve_option_sets_the_setting(served: dict[str, Any], name: str):
    text, expected = OPTION_VALUES[name]
    assert getattr(Settings(), name) != expected
    assert cli.main(["serve", "--" + name.replace("_", "-"), text]) == 0
    assert getattr(served["settings"], name) == expected


def test_serve_takes_the_number_of_workers(served: dict[str, Any]):
    assert cli.main(["serve", "--workers", "3"]) == 0
    assert served["workers"] == 3


SECRET = "s" * 40


COMMANDS = {
    "serve": ["serve"],
    "load": ["load", "examples/jobs"],
    "purge": ["purge", "--older-than", "7d"],
    "token": ["token", "--sub", "a", "--scope", "x"],
}


@pytest.mark.parametrize(
    ("command", "name"),
    [(c, n) for c in COMMANDS for n in cli.ENV_ONLY if (c, n) != ("token", "secret_key")],
)
def test_a_secret_is_not_accepted_on_the_command_line(
    served: dict[str, Any], capsys: pytest.CaptureFixture[str], command: str, name: str
):
    """Every local user can read a process's arguments (ps)."""
    option = "--" + name.replace("_", "-")
    with pytest.raises(SystemExit) as exited:
        cli.main([*COMMANDS[command], option, SECRET])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert f"FHIR_SERVER_{name.upper()}" in error
    assert f"{option}-file" in error
    assert SECRET not in error
    assert served == {}  # not started


@pytest.mark.parametrize("name", list(cli.ENV_ONLY))
def test_a_secret_comes_from_the_environment(
    served: dict[str, Any], monkeypatch: pytest.MonkeyPatch, name: str
):
    monkeypatch.setenv(f"FHIR_SERVER_{name.upper()}", SECRET)
    assert cli.main(["serve"]) == 0
    assert getattr(served["settings"], name) == SECRET


def test_serve_help_does_not_offer_secret_values(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    shown = capsys.readouterr().out
    assert "--jwt-secret-file" in shown
    assert "--jwt-secret " not in shown and "--secret-key " not in shown


def uvicorn_arguments(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.update(kwargs))
    monkeypatch.setattr(cli, "_export", lambda settings: None)
    cli.serve(settings, workers=1)
    return seen


def test_forwarded_headers_are_trusted_from_no_peer_by_default(monkeypatch: pytest.MonkeyPatch):
    """uvicorn's own default trusts 127.0.0.1: any local user could claim https."""
    assert uvicorn_arguments(monkeypatch, Settings())["proxy_headers"] is False


def test_forwarded_headers_are_trusted_from_the_configured_proxies(
    monkeypatch: pytest.MonkeyPatch,
):
    arguments = uvicorn_arguments(monkeypatch, Settings(forwarded_allow_ips="10.0.0.7"))
    assert arguments["proxy_headers"] is True
    assert arguments["forwarded_allow_ips"] == "10.0.0.7"
