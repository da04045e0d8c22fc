"""Search, sort, count and paging, on every backend."""

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from fhir_server.resources.asyncjob import ASYNC_JOB
from fhir_server.resources.instants import parse_instant_ms
from fhir_server.search.query import (
    Condition,
    Cursor,
    DateRange,
    JobQuery,
    Missing,
    SortKey,
    TokenMatch,
)
from fhir_server.storage.base import JobRecord, JobStore, index_values

from ..conftest import make_job, put_job

JAN = "2026-01-{:02d}T00:00:00.000Z"


async def seed(store: JobStore) -> None:
    """Six jobs with ties in status, type and requestTime; some lack type or transactionTime."""
    rows = [
        ("a", "accepted", "export", 1, None),
        ("b", "completed", "export", 2, 3),
        ("c", "completed", None, 2, 4),
        ("d", "error", "data-migration", 3, 5),
        ("e", "cancelled", None, 1, None),
        ("f", "completed", "export", 4, 6),
    ]
    for job_id, status, job_type, requested, ran in rows:
        await put_job(
            store,
            id=job_id,
            status=status,
            type=job_type,
            requestTime=JAN.format(requested),
            transactionTime=None if ran is None else JAN.format(ran),
        )


def where(*groups: tuple[Condition, ...] | Condition) -> JobQuery:
    return JobQuery(where=tuple(g if isinstance(g, tuple) else (g,) for g in groups), limit=100)


def token(column: str, *values: str, negate: bool = False) -> TokenMatch:
    return TokenMatch(column, frozenset(values), negate)


def ms(day: int) -> int:
    return parse_instant_ms(JAN.format(day))


async def ids(store: JobStore, query: JobQuery) -> list[str]:
    return [r.id for r in await store.search(query)]


async def found(store: JobStore, query: JobQuery) -> set[str]:
    return set(await ids(store, query))


async def test_token_matches_one_value(store: JobStore):
    await seed(store)
    assert await found(store, where(token("status", "completed"))) == {"b", "c", "f"}


async def test_token_matches_any_of_several_values(store: JobStore):
    await seed(store)
    assert await found(store, where(token("status", "error", "cancelled"))) == {"d", "e"}


async def test_token_not_excludes_the_values(store: JobStore):
    await seed(store)
    assert await found(store, where(token("status", "completed", negate=True))) == {"a", "d", "e"}


async def test_token_not_keeps_jobs_without_the_element(store: JobStore):
    await seed(store)
    assert await found(store, where(token("type", "export", negate=True))) == {"c", "d", "e"}


async def test_token_missing_finds_jobs_without_the_element(store: JobStore):
    await seed(store)
    assert await found(store, where(Missing("type", True))) == {"c", "e"}


async def test_token_present_finds_jobs_with_the_element(store: JobStore):
    await seed(store)
    assert await found(store, where(Missing("type", False))) == {"a", "b", "d", "f"}


async def test_id_matches_the_listed_ids(store: JobStore):
    await seed(store)
    assert await found(store, where(token("id", "a", "f", "zz"))) == {"a", "f"}


async def test_date_range_is_lower_inclusive_upper_exclusive(store: JobStore):
    await seed(store)
    query = where(DateRange("request_time", ms(2), ms(4)))
    assert await found(store, query) == {"b", "c", "d"}


async def test_date_range_with_only_a_lower_bound(store: JobStore):
    await seed(store)
    assert await found(store, where(DateRange("transaction_time", ms(5), None))) == {"d", "f"}


async def test_date_range_never_matches_a_missing_date(store: JobStore):
    await seed(store)
    assert await found(store, where(DateRange("transaction_time", None, ms(4)))) == {"b"}


async def test_negated_date_range_matches_present_dates_outside_it(store: JobStore):
    await seed(store)
    query = where(DateRange("transaction_time", ms(4), ms(6), negate=True))
    assert await found(store, query) == {"b", "f"}


async def test_date_missing_finds_jobs_without_the_date(store: JobStore):
    await seed(store)
    assert await found(store, where(Missing("transaction_time", True))) == {"a", "e"}


async def test_every_group_must_match(store: JobStore):
    await seed(store)
    query = where(token("status", "completed"), token("type", "export"))
    assert await found(store, query) == {"b", "f"}


async def test_any_condition_of_a_group_may_match(store: JobStore):
    await seed(store)
    query = where((token("status", "error"), Missing("type", True)))
    assert await found(store, query) == {"c", "d", "e"}


async def test_search_excludes_deleted_jobs(store: JobStore):
    await seed(store)
    await store.delete("b", expected_version=1)
    assert await found(store, where(token("status", "completed"))) == {"c", "f"}


async def test_search_returns_the_newest_version(store: JobStore):
    await seed(store)
    await put_job(store, id="a", status="completed")
    records = await store.search(where(token("id", "a")))
    assert [(r.version, r.resource["status"]) for r in records if r.resource] == [(2, "completed")]


async def test_search_by_owner_finds_only_that_owners_jobs(store: JobStore):
    await seed(store)
    await store.save(make_job(id="mine"), expected_version=0, owner="o")
    assert await found(store, JobQuery(owner="o")) == {"mine"}


async def test_count_counts_every_match_beyond_the_page(store: JobStore):
    await seed(store)
    query = replace(where(token("status", "completed")), limit=1)
    assert await store.count(query) == 3


async def test_count_without_conditions_counts_live_jobs(store: JobStore):
    await seed(store)
    await store.delete("a", expected_version=1)
    assert await store.count(JobQuery()) == 5


async def test_count_follows_a_change_of_status(store: JobStore):
    await seed(store)
    await put_job(store, id="a", status="completed")
    completed, accepted = where(token("status", "completed")), where(token("status", "accepted"))
    assert (await store.count(completed), await store.count(accepted)) == (4, 0)


async def test_count_follows_a_deletion(store: JobStore):
    await seed(store)
    await store.delete("b", expected_version=1)
    assert await store.count(where(token("status", "completed"))) == 2


async def test_count_of_several_values_and_tokens(store: JobStore):
    await seed(store)
    query = where(token("status", "completed", "error"), token("type", "export", "data-migration"))
    assert await store.count(query) == 3


async def test_count_with_a_negated_token(store: JobStore):
    await seed(store)
    assert await store.count(where(token("type", "export", negate=True))) == 3


async def test_count_with_a_date_range(store: JobStore):
    await seed(store)
    assert await store.count(where(DateRange("request_time", ms(2), ms(4)))) == 3


def expected_order(records: list[JobRecord], sort: tuple[SortKey, ...]) -> list[str]:
    """Sorted by the keys, ties by id the way of the last key (stable sorts, last key
    first)."""
    rows: list[dict[str, Any]] = [index_values(r.resource) for r in records if r.resource]
    rows.sort(key=lambda v: v["id"], reverse=bool(sort) and sort[-1].descending)
    for key in reversed(sort):
        rows.sort(key=lambda v, c=key.column: v[c], reverse=key.descending)
    return [str(v["id"]) for v in rows]


@pytest.mark.parametrize("descending", [False, True], ids=["asc", "desc"])
@pytest.mark.parametrize("column", ASYNC_JOB.sort_columns)
async def test_sort_orders_by_the_key_then_by_id(store: JobStore, column: str, descending: bool):
    await seed(store)
    sort = (SortKey(column, descending),)
    everything = await store.search(JobQuery(limit=100))
    result = await ids(store, JobQuery(sort=sort, limit=100))
    assert result == expected_order(everything, sort)


async def test_sort_by_several_keys(store: JobStore):
    await seed(store)
    sort = (SortKey("status"), SortKey("request_time", descending=True))
    everything = await store.search(JobQuery(limit=100))
    assert await ids(store, JobQuery(sort=sort, limit=100)) == expected_order(everything, sort)


async def test_default_sort_puts_the_last_updated_job_first(store: JobStore):
    await seed(store)
    await asyncio.sleep(0.005)  # lastUpdated has millisecond resolution
    await put_job(store, id="c")
    assert (await ids(store, JobQuery(limit=1))) == ["c"]


async def test_offset_skips_that_many_matches(store: JobStore):
    await seed(store)
    sort = (SortKey("id"),)
    assert await ids(store, JobQuery(sort=sort, offset=2, limit=2)) == ["c", "d"]


def cursor_at(record: JobRecord, sort: tuple[SortKey, ...], forward: bool) -> Cursor:
    """The cursor a paging link carries, built as the API builds it."""
    assert record.resource is not None
    values = index_values(record.resource)
    return Cursor(tuple(values[k.column] for k in sort), record.id, forward)


MAX_PAGES = 10  # six jobs, two a page: more pages than this means the cursor does not advance
SORTS = [
    (SortKey("last_updated", descending=True),),
    (SortKey("status"),),
    (SortKey("status", descending=True),),
    (SortKey("request_time"), SortKey("type", descending=True)),
    (SortKey("id", descending=True),),
]


@pytest.mark.parametrize("sort", SORTS, ids=lambda s: ",".join(map(repr, s)))
async def test_forward_pages_visit_every_job_once_in_order(
    store: JobStore, sort: tuple[SortKey, ...]
):
    await seed(store)
    query = JobQuery(sort=sort, limit=2)
    seen: list[str] = []
    page = await store.search(query)
    for _ in range(MAX_PAGES):
        if not page:
            break
        seen += [r.id for r in page]
        page = await store.search(replace(query, cursor=cursor_at(page[-1], sort, True)))
    everything = await store.search(JobQuery(limit=100))
    assert seen == expected_order(everything, sort)


@pytest.mark.parametrize("sort", SORTS, ids=lambda s: ",".join(map(repr, s)))
async def test_backward_pages_visit_every_job_once_in_order(
    store: JobStore, sort: tuple[SortKey, ...]
):
    await seed(store)
    everything = await store.search(JobQuery(sort=sort, limit=100))
    query = JobQuery(sort=sort, limit=2)
    seen: list[str] = [everything[-1].id]
    # A backward read comes nearest the cursor first: the page in sort order is reversed.
    page = (await store.search(replace(query, cursor=cursor_at(everything[-1], sort, False))))[::-1]
    for _ in range(MAX_PAGES):
        if not page:
            break
        seen = [r.id for r in page] + seen
        page = (await store.search(replace(query, cursor=cursor_at(page[0], sort, False))))[::-1]
    assert seen == [r.id for r in everything]


async def test_a_backward_read_returns_the_rows_nearest_the_cursor_first(store: JobStore):
    await seed(store)
    sort = (SortKey("id"),)
    page = await store.search(JobQuery(sort=sort, limit=2, cursor=Cursor(("e",), "e", False)))
    assert [r.id for r in page] == ["d", "c"]


async def test_paging_keeps_the_filter(store: JobStore):
    await seed(store)
    sort = (SortKey("id"),)
    query = JobQuery(where=((token("status", "completed"),),), sort=sort, limit=1)
    page = await store.search(replace(query, cursor=Cursor(("b",), "b")))
    assert [r.id for r in page] == ["c"]


@pytest.mark.parametrize("sort", SORTS, ids=lambda s: ",".join(map(repr, s)))
async def test_pages_of_a_search_for_several_values_visit_every_match_once(
    store: JobStore, sort: tuple[SortKey, ...]
):
    await seed(store)
    several = ((token("status", "completed", "cancelled", "error"),),)
    query = JobQuery(where=several, sort=sort, limit=2)
    seen: list[str] = []
    page = await store.search(query)
    for _ in range(MAX_PAGES):
        if not page:
            break
        seen += [r.id for r in page]
        page = await store.search(replace(query, cursor=cursor_at(page[-1], sort, True)))
    matches = await store.search(replace(query, limit=100))
    assert seen == expected_order(matches, sort)
    assert set(seen) == {"b", "c", "d", "e", "f"}


async def test_offset_of_a_search_for_several_values(store: JobStore):
    await seed(store)
    several = ((token("status", "completed", "accepted"),),)
    query = JobQuery(where=several, sort=(SortKey("id", descending=True),), offset=1, limit=2)
    assert await ids(store, query) == ["c", "b"]


async def test_backward_page_of_a_search_for_several_values(store: JobStore):
    await seed(store)
    several = ((token("status", "completed", "accepted"),),)
    query = JobQuery(
        where=several, sort=(SortKey("id"),), limit=2, cursor=Cursor(("f",), "f", False)
    )
    assert await ids(store, query) == ["c", "b"]
