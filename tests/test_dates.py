"""Stored instants to epoch ms: the fromisoformat fast path agrees with the FHIR date grammar."""

import pytest

from fhir_server.resources.instants import parse_date_range, parse_instant_ms


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-22T07:17:17.898Z",
        "2026-11-22T07:17:17Z",
        "2026-11-22T07:17:17.1234567+02:00",
        "2026-11-22T07:17:17.5-05:30",
        "2026-11-22T07:17:17.9999999Z",
        "0001-01-01T00:00:00Z",
        "2026-11-22",  # partial dates take the grammar's lower bound
        "2026-11",
        "2026",
    ],
)
def test_instant_ms_is_the_lower_bound_of_the_date_range(value: str):
    assert parse_instant_ms(value) == parse_date_range(value)[0]


def test_a_full_instant_and_its_offset_twin_are_the_same_moment():
    assert parse_instant_ms("2026-11-22T09:17:17.898+02:00") == parse_instant_ms(
        "2026-11-22T07:17:17.898Z"
    )
