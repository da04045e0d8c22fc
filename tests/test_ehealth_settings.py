"""FHIR_SERVER_EHEALTH_ETA: the default eta of a job without an eta extension."""

from datetime import timedelta

import pytest

from fhir_server.config import Settings


def test_ehealth_eta_defaults_to_ten_minutes(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("FHIR_SERVER_EHEALTH_ETA", raising=False)
    assert Settings().ehealth_eta == timedelta(minutes=10)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("PT15M", timedelta(minutes=15)),
        ("P1DT2S", timedelta(days=1, seconds=2)),
        ("90", timedelta(seconds=90)),
    ],
)
def test_ehealth_eta_reads_iso_8601_durations_and_seconds(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: timedelta
):
    monkeypatch.setenv("FHIR_SERVER_EHEALTH_ETA", raw)
    assert Settings().ehealth_eta == expected


def test_ehealth_eta_survives_the_handover_to_uvicorn_workers(monkeypatch: pytest.MonkeyPatch):
    exported = Settings(ehealth_eta=timedelta(seconds=45)).model_dump(mode="json")["ehealth_eta"]
    monkeypatch.setenv("FHIR_SERVER_EHEALTH_ETA", str(exported))
    assert Settings().ehealth_eta == timedelta(seconds=45)
