"""The criteria matcher answers what a search answers: for a generated table of jobs and of
criteria covering every parameter kind and modifier the search supports, the jobs the
matcher accepts are exactly those each store's search finds."""

import itertools
from dataclasses import replace

import pytest

from fhir_server.notifications.delivery import concerns, criteria_of
from fhir_server.notifications.subscriptions import Subscriptions
from fhir_server.resources.asyncjob import ASYNC_JOB
from fhir_server.resources.outcome import FhirError
from fhir_server.search.criteria import parse_criteria
from fhir_server.search.matcher import matches
from fhir_server.storage.base import Change, JobRecord, JobStore

from ..conftest import make_job

KINDS = {"AsyncJob": ASYNC_JOB}
STATUS_SYSTEM = "https://medplum.com/fhir/CodeSystem/async-job-status"
TYPE_SYSTEM = "http://testserver/fhir/R4/CodeSystem/async-job-type"
TYPES = ("bulk-export", "data-migration", None)
STATUSES = ("accepted", "completed", "error", "cancelled")
TIMES = ("2026-01-01T00:00:00.000Z", "2026-02-15T12:30:00.000Z", "2026-03-31T23:59:59.999Z")


def generated_jobs() -> list[dict]:
    """Every status with every type (and none) at each request time; a transaction time on
    the finished ones, none on the others."""
    jobs = []
    for n, (status, job_type, time) in enumerate(itertools.product(STATUSES, TYPES, TIMES)):
        finished = status != "accepted"
        jobs.append(
            make_job(
                id=f"job-{n:02d}",
                status=status,
                type=job_type,
                requestTime=time,
                transactionTime=TIMES[(n + 1) % 3] if finished else None,
            )
        )
    return jobs


CRITERIA = [
    "AsyncJob",
    "AsyncJob?status=completed",
    "AsyncJob?status=completed,error",
    "AsyncJob?status:not=completed",
    "AsyncJob?status:not=completed,cancelled",
    f"AsyncJob?status={STATUS_SYSTEM}|error",
    "AsyncJob?status=|accepted",
    f"AsyncJob?status={STATUS_SYSTEM}|",
    f"AsyncJob?status:not={STATUS_SYSTEM}|",
    "AsyncJob?status=http://other.example/system|completed",
    "AsyncJob?type=bulk-export",
    f"AsyncJob?type={TYPE_SYSTEM}|data-migration",
    "AsyncJob?type:not=bulk-export",
    "AsyncJob?type:missing=true",
    "AsyncJob?type:missing=false",
    "AsyncJob?status=completed&type=bulk-export",
    "AsyncJob?status=completed&status=error",
    "AsyncJob?_id=job-03,job-07,job-40",
    "AsyncJob?_id:not=job-03",
    "AsyncJob?_id=job-05&status=accepted",
    "AsyncJob?request-time=2026-02",
    "AsyncJob?request-time=2026-02-15",
    "AsyncJob?request-time=eq2026-01-01T00:00:00.000Z",
    "AsyncJob?request-time=ne2026-02",
    "AsyncJob?request-time=gt2026-01-01",
    "AsyncJob?request-time=ge2026-02-15T12:30:00Z",
    "AsyncJob?request-time=lt2026-02-15T12:30:00Z",
    "AsyncJob?request-time=le2026-02-15",
    "AsyncJob?request-time=sa2026-01",
    "AsyncJob?request-time=eb2026-03",
    "AsyncJob?request-time=2026-01,2026-03",
    "AsyncJob?request-time=ge2026-01-15&request-time=lt2026-03",
    "AsyncJob?transaction-time:missing=true",
    "AsyncJob?transaction-time:missing=false",
    "AsyncJob?transaction-time=ge2026-02&status=error,cancelled",
    "AsyncJob?transaction-time=ne2026-03",
    "AsyncJob?_lastUpdated=gt2000-01-01",
    "AsyncJob?_lastUpdated=lt2000-01-01",
    "AsyncJob?_lastUpdated:missing=false",
    "AsyncJob?status=nonsense",
]


@pytest.fixture
async def stored(store: JobStore) -> JobStore:
    for n, job in enumerate(generated_jobs()):
        await store.save(job, expected_version=0, owner=("alice", "bob", None)[n % 3])
    return store


@pytest.mark.parametrize("criteria", CRITERIA)
async def test_the_matcher_finds_what_the_store_finds(stored: JobStore, criteria: str):
    _, query = parse_criteria(criteria, KINDS)
    query = replace(query, limit=1000)
    records = [await stored.get(job["id"]) for job in generated_jobs()]
    for owner in (None, "alice"):
        owned = replace(query, owner=owner)
        found = sorted(r.id for r in await stored.search(owned))
        matched = sorted(r.id for r in records if r is not None and matches(owned, r))
        assert matched == found, (criteria, owner)
    # The JSON alone answers as the record does (no owner asked for).
    assert [matches(query, r.resource) for r in records] == [matches(query, r) for r in records]


def test_the_table_covers_every_parameter_and_modifier():
    used = {c.split("?")[1] for c in CRITERIA if "?" in c}
    text = "&".join(used)
    for parameter in ASYNC_JOB.search_parameters:
        assert parameter.name in text
    for modifier in (":not", ":missing=true", ":missing=false"):
        assert modifier in text
    for prefix in ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"):
        assert f"={prefix}2" in text


@pytest.mark.parametrize(
    ("criteria", "named"),
    [
        ("AsyncJob?status=completed&_count=10", "_count"),
        ("AsyncJob?_sort=-_lastUpdated", "_sort"),
        ("AsyncJob?_elements=status", "_elements"),
        ("AsyncJob?_summary=true&_total=none", "_summary, _total"),
        ("AsyncJob?_cursor=abc&_offset=3", "_cursor, _offset"),
    ],
)
def test_paging_sorting_and_shaping_are_refused_by_name(criteria: str, named: str):
    with pytest.raises(FhirError) as refused:
        parse_criteria(criteria, KINDS)
    [issue] = refused.value.issues
    assert issue.code == "invalid"
    assert f"cannot use {named}:" in issue.diagnostics
    assert issue.expression == "Subscription.criteria"


@pytest.mark.parametrize(
    ("criteria", "code", "says"),
    [
        ("Patient?name=x", "not-supported", "not 'Patient'"),
        ("AsyncJob?colour=red", "not-supported", "colour"),
        ("AsyncJob?status:exact=x", "invalid", ":exact"),
        ("AsyncJob?request-time=yesterday", "invalid", "request-time"),
        ("AsyncJob?_id=bad id!", "invalid", "not a valid id"),
    ],
)
def test_bad_criteria_are_refused_with_what_is_wrong(criteria: str, code: str, says: str):
    with pytest.raises(FhirError) as refused:
        parse_criteria(criteria, KINDS)
    assert refused.value.issues[0].code == code
    assert says in refused.value.issues[0].diagnostics


async def test_the_subscriptions_index_finds_what_matching_every_one_finds():
    """Subscriptions are indexed by a token they require; a change is matched only against
    those it could match: the same subscriptions as trying every one."""
    subscriptions = Subscriptions(KINDS)
    for n, criteria in enumerate(CRITERIA):
        resource = {
            "resourceType": "Subscription",
            "status": "active",
            "reason": "parity",
            "criteria": criteria,
            "channel": {"type": "websocket"},
        }
        await subscriptions.on_change(
            Change(n + 1, "Subscription", f"s{n}", 1, None, stored=resource)
        )
    assert len(subscriptions.active) == len(CRITERIA)
    for n, job in enumerate(generated_jobs()):
        stamped = {**job, "meta": {"versionId": "1", "lastUpdated": TIMES[n % 3]}}
        for change in (
            Change(100 + n, "AsyncJob", job["id"], 1, None, stored=stamped),
            Change(200 + n, "AsyncJob", job["id"], 2, None, deleted=True, previous=stamped),
        ):
            indexed = sorted(s.id for s in subscriptions.matching(change))
            everyone = sorted(
                s.id for s in subscriptions.active.values() if matches(s.query, change)
            )
            assert indexed == everyone, (job, change)


async def test_a_subscription_past_its_end_matches_nothing():
    """R4's Subscription.end: from then on it notifies nothing (on either channel)."""
    subscriptions = Subscriptions(KINDS)
    for n, end in enumerate(("2000-01-01T00:00:00Z", "2999-01-01T00:00:00Z", None)):
        resource = {
            "resourceType": "Subscription",
            "status": "active",
            "reason": "end",
            "criteria": "AsyncJob?status=completed",
            "channel": {"type": "websocket"},
            **({"end": end} if end else {}),
        }
        await subscriptions.on_change(
            Change(n + 1, "Subscription", f"s{n}", 1, None, stored=resource)
        )
    job = {**make_job(status="completed"), "meta": {"versionId": "1", "lastUpdated": TIMES[0]}}
    change = Change(10, "AsyncJob", job["id"], 1, None, stored=job)
    assert sorted(s.id for s in subscriptions.matching(change)) == ["s1", "s2"]


@pytest.mark.parametrize(("end", "notified"), [("2000-01-01T00:00:00Z", False), (None, True)])
def test_a_rest_hook_past_its_end_is_not_notified(end: str | None, notified: bool):
    resource = {
        "resourceType": "Subscription",
        "status": "active",
        "reason": "end",
        "criteria": "AsyncJob?status=completed",
        "channel": {"type": "rest-hook", "endpoint": "https://hooks.example.org/jobs"},
        **({"end": end} if end else {}),
    }
    subscription = JobRecord("s1", 1, None, resource, "alice")
    job = {**make_job(status="completed"), "meta": {"versionId": "1", "lastUpdated": TIMES[0]}}
    change = Change(10, "AsyncJob", job["id"], 1, "alice", stored=job)
    assert concerns(subscription, change, criteria_of(KINDS)) is notified
