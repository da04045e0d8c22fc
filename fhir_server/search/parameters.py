"""The one list of AsyncJob search parameters.

It drives query parsing, the CapabilityStatement, the storage index fields and the indexes.
"""

from dataclasses import dataclass
from typing import Literal

ParamType = Literal["token", "date"]

BASE_URL = "http://hl7.org/fhir/SearchParameter"


@dataclass(frozen=True, slots=True)
class SearchParameter:
    name: str
    type: ParamType
    expression: str
    description: str
    # Field that holds the indexed value in every store.
    column: str
    # JSON path of the value inside the resource, as keys.
    path: tuple[str, ...]
    # Code system implied for a `code` element, so `system|code` can be matched.
    system: str | None = None

    @property
    def definition(self) -> str:
        return f"{BASE_URL}/AsyncJob-{self.name.lstrip('_')}"


SEARCH_PARAMETERS: tuple[SearchParameter, ...] = (
    SearchParameter("_id", "token", "AsyncJob.id", "Logical id of the AsyncJob", "id", ("id",)),
    SearchParameter(
        "_lastUpdated",
        "date",
        "AsyncJob.meta.lastUpdated",
        "When the AsyncJob last changed",
        "last_updated",
        ("meta", "lastUpdated"),
    ),
    SearchParameter(
        "status",
        "token",
        "AsyncJob.status",
        "Search for AsyncJob by status",
        "status",
        ("status",),
        system="http://hl7.org/fhir/async-job-status",
    ),
    SearchParameter(
        "type",
        "token",
        "AsyncJob.type",
        "Search for AsyncJob by type",
        "type",
        ("type",),
        system="http://hl7.org/fhir/async-job-type",
    ),
    SearchParameter(
        "request-time",
        "date",
        "AsyncJob.requestTime",
        "When the job was requested",
        "request_time",
        ("requestTime",),
    ),
    SearchParameter(
        "transaction-time",
        "date",
        "AsyncJob.transactionTime",
        "When the job ran (completed or failed)",
        "transaction_time",
        ("transactionTime",),
    ),
)

BY_NAME = {p.name: p for p in SEARCH_PARAMETERS}
# Columns a search can filter on with an equality: they lead the compound indexes.
TOKEN_COLUMNS = tuple(p.column for p in SEARCH_PARAMETERS if p.type == "token" and p.name != "_id")
# Every parameter is sortable; `id` is the unique tie-breaker at the end of every sort.
SORT_COLUMNS = tuple(p.column for p in SEARCH_PARAMETERS)
DEFAULT_SORT = (("last_updated", True),)
