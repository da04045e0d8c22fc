"""What a store was built for: the search parameters whose values its index fields hold.

Each store records, beside its data, the parameters it was built for. Opening it with another
list migrates it (sqlite_schema.py, mongo_schema.py): a removed parameter's indexes and values
go; an added one's field is filled from every stored job with index_values (as saves fill
it), then indexed. A parameter that now indexes something else (another type or element) is
removed and added again, so its values are computed afresh; a renamed one changes the record
only.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..resources.kinds import SearchParameter
from .base import index_values


@dataclass(frozen=True, slots=True)
class Indexed:
    """A search parameter as a store records it: what its stored values depend on."""

    name: str
    column: str
    type: str
    path: tuple[str, ...]

    @classmethod
    def of(cls, parameter: SearchParameter) -> "Indexed":
        return cls(parameter.name, parameter.column, parameter.type, parameter.path)


# What a store written before parameters were recorded (commit c436025: SQLite schema version
# 1, MongoDB without a schema record) was built for.
V1_PARAMETERS = (
    Indexed("_id", "id", "token", ("id",)),
    Indexed("_lastUpdated", "last_updated", "date", ("meta", "lastUpdated")),
    Indexed("status", "status", "token", ("status",)),
    Indexed("type", "type", "token", ("type",)),
    Indexed("request-time", "request_time", "date", ("requestTime",)),
    Indexed("transaction-time", "transaction_time", "date", ("transactionTime",)),
)

# Said by every failed migration: what to do about it.
REMEDY = (
    "Fix the cause and start again (a job that cannot be indexed can be corrected or deleted "
    "with the fhir-server version that wrote it); until then, keep running that version."
)


def token_columns(parameters: Iterable[SearchParameter]) -> tuple[str, ...]:
    """Columns a search filters on with an equality (they lead the compound indexes); the id,
    a token too, is the primary key."""
    return tuple(p.column for p in parameters if p.type == "token" and p.column != "id")


def sort_columns(parameters: Iterable[SearchParameter]) -> tuple[str, ...]:
    """Every parameter is sortable; `id` is the unique tie-breaker at the end of every sort."""
    return tuple(p.column for p in parameters)


@dataclass(frozen=True)
class Change:
    """From the recorded parameters to the wanted ones. The id is the key of every store,
    never added or removed."""

    removed: tuple[str, ...]  # columns
    added: tuple[SearchParameter, ...]
    record: tuple[Indexed, ...] | None  # the record to write, None if it stays as it is

    @property
    def columns(self) -> bool:
        return bool(self.removed or self.added)


def change(recorded: Sequence[Indexed], wanted: Sequence[SearchParameter]) -> Change:
    """What turns a store built for `recorded` into one for `wanted`."""
    wanted_record = tuple(Indexed.of(p) for p in wanted)
    had = {r.column: (r.type, r.path) for r in recorded if r.column != "id"}
    now = {r.column: (r.type, r.path) for r in wanted_record if r.column != "id"}
    removed = tuple(c for c in had if had[c] != now.get(c))
    added = tuple(p for p in wanted if p.column in now and now[p.column] != had.get(p.column))
    unchanged = set(recorded) == set(wanted_record)
    return Change(removed, added, None if unchanged else wanted_record)


class Unindexable(ValueError):
    """A stored job has no valid value for an added search parameter."""


def cause(exc: BaseException) -> str:
    """Why a migration failed, for its message."""
    return str(exc) if isinstance(exc, Unindexable) else f"{type(exc).__name__}: {exc}"


def job_values(
    job_id: str, resource: dict[str, Any], added: Sequence[SearchParameter]
) -> dict[str, str | int]:
    """The added parameters' values for a stored job; an error names the job and parameter."""
    values: dict[str, str | int] = {}
    for parameter in added:
        try:
            values |= index_values(resource, (parameter,))
        except Exception as exc:
            raise Unindexable(
                f"{resource.get('resourceType')}/{job_id} has no valid value for search "
                f"parameter {parameter.name} ({'.'.join(parameter.path)}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    return values
