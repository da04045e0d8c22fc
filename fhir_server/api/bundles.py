"""FHIR batch and transaction Bundles at the base: POST [base] (FHIR R4 http.html#transaction).

Each entry is one single request and goes through what that request would: its kind's Writer
(validation, AsyncJob's status rules), the caller's ownership view of the store, the scope of
its own interaction, the JSON limits on its resource, `Prefer: return=`.

- `batch`: entries run one after another, each on its own; the `batch-response` answers each
  with its status, and an error's OperationOutcome.
- `transaction`: the writes run in FHIR's order (DELETE, POST, PUT) against StagedWrites,
  which keeps them for one save_many: one database transaction, all or nothing. `urn:uuid:`
  fullUrls of created entries become `Type/id` wherever the Bundle's resources name them.
  GETs run after the commit. A failing entry fails the whole request, its OperationOutcome
  naming the entry (`Bundle.entry[3]`).
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..auth.ownership import visible_store
from ..auth.policy import interaction_access
from ..auth.tokens import Principal
from ..resources.bundle import response_bundle
from ..resources.kinds import ID_PATTERN, ResourceKind
from ..resources.outcome import FhirError, Issue, all_ok
from ..storage.base import (
    JobRecord,
    JobStore,
    StoreUnavailable,
    TransactionsUnavailable,
    VersionConflict,
)
from ..storage.staging import StagedWrites
from .http_status import ProtocolError, status_of
from .limits import check_json_shape, input_limits
from .owner import request_owner
from .responses import fhir_response
from .routing import AUTH, AccessDenied, Endpoint
from .urls import fhir_base
from .writes import WriterFactory, etag_version, read_json, return_preference

BUNDLE_TYPES = ("batch", "transaction")
METHODS = ("GET", "POST", "PUT", "DELETE")
# FHIR's processing order of a transaction's writes (GETs come after the commit).
WRITE_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2}
WriterOf = Callable[[ResourceKind], WriterFactory]


@dataclass
class Entry:
    """One entry's request, checked: what it does, to which kind and resource."""

    index: int
    method: str
    kind: ResourceKind
    interaction: str
    resource_id: str | None = None
    version_id: int | None = None  # a GET of [type]/[id]/_history/[vid]
    resource: dict[str, Any] | None = None
    if_match: int | None = None
    full_url: str | None = None


@dataclass
class Outcome:
    """An entry's answer: the record it wrote or read (None for an error) and its status."""

    status: int
    record: JobRecord | None = None
    message: str = ""
    error: FhirError | None = None
    resource_type: str = ""


def bundle(writer_of: WriterOf) -> Endpoint:
    async def process_bundle(request: Request) -> Response:
        body = await read_json(request, "Bundle")
        bundle_type = body.get("type")
        if body.get("resourceType") != "Bundle" or bundle_type not in BUNDLE_TYPES:
            raise FhirError.of(
                "invalid",
                "POST to the base takes a Bundle of type batch or transaction",
                "Bundle.type",
            )
        raw_entries = body.get("entry", [])
        if not isinstance(raw_entries, list):
            raise FhirError.of("structure", "Bundle.entry must be an array", "Bundle.entry")
        limit: int = request.app.state.settings.max_bundle_entries
        if len(raw_entries) > limit:
            raise ProtocolError(
                413,
                "too-costly",
                f"The Bundle has {len(raw_entries)} entries; at most {limit} are accepted",
            )
        kinds = {kind.type: kind for kind in request.app.state.kinds}
        if bundle_type == "batch":
            outcomes = await _batch(request, raw_entries, kinds, writer_of)
            answered = "batch-response"
        else:
            entries = []
            for index, raw in enumerate(raw_entries):
                try:
                    entries.append(_entry(request, index, raw, kinds))
                except FhirError as error:
                    raise _naming(error, index, None) from None
            outcomes = await _transaction(request, entries, writer_of)
            answered = "transaction-response"
        return fhir_response(
            request, response_bundle(answered, [_response_entry(request, o) for o in outcomes])
        )

    return process_bundle


async def _batch(
    request: Request,
    raw_entries: list[Any],
    kinds: Mapping[str, ResourceKind],
    writer_of: WriterOf,
) -> list[Outcome]:
    outcomes = []
    for index, raw in enumerate(raw_entries):
        try:
            entry = _entry(request, index, raw, kinds)
            outcomes.append(await _run(request, entry, _store(request, entry.kind), writer_of))
        except FhirError as error:
            outcomes.append(Outcome(status_of(error), error=error))
        except StoreUnavailable as exc:
            down = FhirError.of("transient", f"The database is unavailable: {exc}")
            outcomes.append(Outcome(503, error=down))
    return outcomes


async def _transaction(
    request: Request, entries: list[Entry], writer_of: WriterOf
) -> list[Outcome]:
    written = [e for e in entries if e.method != "GET"]
    types = {e.kind.type for e in written}
    if len(types) > 1:
        raise FhirError.of(
            "not-supported", "A transaction writes resources of one type only", "Bundle.entry"
        )
    outcomes: dict[int, Outcome] = {}
    # the staged write each write entry made (None: it changed nothing)
    made: dict[int, int | None] = {}
    assigned: dict[str, str] = {}
    staged: StagedWrites | None = None
    if written:
        kind = written[0].kind
        stores: dict[str, JobStore] = request.app.state.stores
        staged = StagedWrites(stores[kind.type])
        store = visible_store(staged, request.scope.get(AUTH))
        for entry in sorted(written, key=lambda e: WRITE_ORDER[e.method]):
            staged.tag = entry.index
            before = len(staged.writes)
            try:
                outcomes[entry.index] = await _run(request, entry, store, writer_of)
            except FhirError as error:
                raise _naming(error, entry.index, entry.kind) from None
            made[entry.index] = before if len(staged.writes) > before else None
            record = outcomes[entry.index].record
            if entry.method == "POST" and entry.full_url and record is not None:
                assigned[entry.full_url] = f"{kind.type}/{record.id}"
        try:
            committed = await staged.commit(_resolver(assigned) if assigned else None)
        except TransactionsUnavailable as exc:
            raise ProtocolError(
                501, "not-supported", f"Transactions are not available: {exc}"
            ) from None
        except VersionConflict as conflict:
            index = staged.tag_of(conflict.job_id)
            conditional = next(e for e in entries if e.index == index).if_match is not None
            code = "conflict" if conditional else "lock-error"
            lost = FhirError.of(
                code,
                f"{conflict.job_id} was changed by another request while this transaction "
                "ran; nothing was stored",
            )
            raise _naming(lost, index, None) from None
        for index, position in made.items():
            if position is not None:
                outcomes[index].record = committed[position]
    for entry in entries:
        if entry.method == "GET":
            try:
                outcomes[entry.index] = await _run(
                    request, entry, _store(request, entry.kind), writer_of
                )
            except FhirError as error:
                raise _naming(error, entry.index, entry.kind) from None
    return [outcomes[e.index] for e in entries]


def _entry(request: Request, index: int, raw: Any, kinds: Mapping[str, ResourceKind]) -> Entry:
    """The entry's request as this server serves it; FhirError for anything else."""
    if not isinstance(raw, dict):
        raise FhirError.of("structure", "An entry must be a JSON object")
    limits = input_limits(request)
    check_json_shape(limits, {k: v for k, v in raw.items() if k != "resource"}, "entry")
    spec = raw.get("request")
    if not isinstance(spec, dict):
        raise FhirError.of("required", "The entry has no request")
    method, url = spec.get("method"), spec.get("url")
    if method not in METHODS or not isinstance(url, str):
        raise FhirError.of(
            "invalid", "request.method must be GET, POST, PUT or DELETE, with a request.url"
        )
    base = fhir_base(request) + "/"
    path = url[len(base) :] if url.startswith(base) else url
    if "?" in path:
        raise FhirError.of("not-supported", "Conditional and search URLs are not supported")
    parts = path.strip("/").split("/")
    kind = kinds.get(parts[0])
    if kind is None:
        raise FhirError.of("not-supported", f"'{parts[0][:40]}' is not a served resource type")
    shape = {"GET": (2, 4), "POST": (1,), "PUT": (2,), "DELETE": (2,)}[method]
    if len(parts) not in shape or (len(parts) == 4 and parts[2] != "_history"):
        raise FhirError.of("not-supported", f"{method} {url[:80]} is not a supported request")
    interaction = {"POST": "create", "PUT": "update", "DELETE": "delete"}.get(method, "read")
    entry = Entry(index, method, kind, interaction)
    if len(parts) >= 2:
        if not ID_PATTERN.fullmatch(parts[1]):
            raise FhirError.of("invalid", f"'{parts[1][:80]}' is not a valid {kind.type} id")
        entry.resource_id = parts[1]
    if len(parts) == 4:
        if not parts[3].isascii() or not parts[3].isdigit() or len(parts[3]) > 18:
            raise FhirError.of("invalid", f"'{parts[3][:20]}' is not a version id")
        entry.version_id, entry.interaction = int(parts[3]), "vread"
    if method in ("POST", "PUT"):
        resource = raw.get("resource")
        if not isinstance(resource, dict) or resource.get("resourceType") != kind.type:
            raise FhirError.of("required", f"{method} needs a {kind.type} resource")
        check_json_shape(limits, resource, kind.type)
        if method == "PUT" and resource.get("id") != entry.resource_id:
            raise FhirError.of(
                "invalid",
                f"The resource's id ({resource.get('id')!r}) must equal the id in the URL "
                f"('{entry.resource_id}')",
                f"{kind.type}.id",
            )
        entry.resource = resource
    if_match = spec.get("ifMatch")
    if if_match is not None:
        entry.if_match = etag_version(str(if_match))
    full_url = raw.get("fullUrl")
    if isinstance(full_url, str) and full_url.startswith("urn:uuid:"):
        entry.full_url = full_url
    return entry


def _allow(request: Request, entry: Entry) -> None:
    """The scope of the entry's own interaction, as its single request's route checks it."""
    try:
        access = interaction_access(entry.kind, entry.interaction)
    except LookupError:
        raise FhirError.of(
            "not-supported", f"{entry.kind.type} does not serve {entry.interaction}"
        ) from None
    principal: Principal | None = request.scope.get(AUTH)
    if principal is not None and not principal.unrestricted and not access.allows(principal.scopes):
        raise AccessDenied(access)


def _store(request: Request, kind: ResourceKind) -> JobStore:
    stores: dict[str, JobStore] = request.app.state.stores
    return visible_store(stores[kind.type], request.scope.get(AUTH))


async def _run(request: Request, entry: Entry, store: JobStore, writer_of: WriterOf) -> Outcome:
    _allow(request, entry)
    outcome = await _perform(request, entry, store, writer_of)
    outcome.resource_type = entry.kind.type
    return outcome


async def _perform(request: Request, entry: Entry, store: JobStore, writer_of: WriterOf) -> Outcome:
    kind = entry.kind
    name = f"{kind.type}/{entry.resource_id}"
    if entry.method == "POST":
        assert entry.resource is not None
        record = await writer_of(kind)(store).create(entry.resource, owner=request_owner(request))
        return Outcome(201, record, f"Created {kind.type}/{record.id}")
    if entry.method == "PUT":
        assert entry.resource is not None
        record, created = await writer_of(kind)(store).put(
            entry.resource, expected_version=entry.if_match, owner=request_owner(request)
        )
        if created:
            return Outcome(201, record, f"Created {name}")
        return Outcome(200, record, f"{name} is at version {record.version}")
    assert entry.resource_id is not None
    if entry.method == "DELETE":
        record = await writer_of(kind)(store).delete(
            entry.resource_id, expected_version=entry.if_match
        )
        return Outcome(204, record, f"Deleted {name}")
    if entry.version_id is not None:
        found = await store.get_version(entry.resource_id, entry.version_id)
        if found is None:
            raise FhirError.of("not-found", f"{name}/_history/{entry.version_id} is not known")
    else:
        found = await store.get(entry.resource_id)
        if found is None:
            raise FhirError.of("not-found", f"{name} is not known")
    if found.deleted:
        raise FhirError.of("deleted", f"{name} was deleted")
    return Outcome(200, found)


def _response_entry(request: Request, outcome: Outcome) -> dict[str, Any]:
    """One entry of the response Bundle: response.status, location, etag, lastModified,
    and the resource or outcome `Prefer: return=` asks for."""
    answer: dict[str, Any] = {"status": f"{outcome.status} {HTTPStatus(outcome.status).phrase}"}
    entry: dict[str, Any] = {}
    record = outcome.record
    if outcome.error is not None:
        answer["outcome"] = outcome.error.outcome()
        return {"response": answer}
    assert record is not None
    url = f"{outcome.resource_type}/{record.id}"
    if outcome.status in (200, 201) and not record.deleted:
        entry["fullUrl"] = f"{fhir_base(request)}/{url}"
    if outcome.status == 201:
        answer["location"] = f"{url}/_history/{record.version}"
    answer["etag"] = f'W/"{record.version}"'
    if not record.deleted:
        answer["lastModified"] = record.last_updated
    preference = return_preference(request)
    if record.resource is not None and outcome.status != 204:
        if outcome.message and preference == "OperationOutcome":
            answer["outcome"] = all_ok(outcome.message)
        elif not outcome.message or preference == "representation":
            entry["resource"] = record.body
    entry["response"] = answer
    return entry


def _naming(error: FhirError, index: int, kind: ResourceKind | None) -> FhirError:
    """The entry's error, for the whole transaction: its issues name the entry."""
    where = f"Bundle.entry[{index}]"
    issues = []
    for issue in error.issues:
        expression = where
        if kind is not None and issue.expression and issue.expression.startswith(kind.type):
            expression = f"{where}.resource{issue.expression[len(kind.type) :]}"
        diagnostics = f"{where}: {issue.diagnostics}"
        issues.append(Issue(issue.code, diagnostics, issue.severity, expression))
    if isinstance(error, ProtocolError):
        named: FhirError = ProtocolError(error.status, issues[0].code, issues[0].diagnostics)
        named.issues = issues
    else:
        named = FhirError(issues, error.headers)
    named.headers.update(error.headers)
    return named


def _resolver(assigned: Mapping[str, str]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A copy of a resource with each `urn:uuid:` the transaction created replaced by the
    `Type/id` it was given, wherever a string equals it (Reference.reference)."""

    def resolve(value: Any) -> Any:
        if isinstance(value, str):
            return assigned.get(value, value)
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v) for v in value]
        return value

    return resolve
