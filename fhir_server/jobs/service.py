"""JobService: every write to a job, for the REST API and for services that run jobs.

Each write reads the job, applies the status rules and saves conditionally on the version it
read; when another writer got there first (VersionConflict) it reads again and re-applies the
rules. So a progress report can never overwrite a cancel: it raises JobCancelled instead.

The rules validate the resource, which costs about 0.15 ms per JSON value (pydantic builds the
whole model): a large resource is validated in a worker thread, where it holds up no other
request; a small one is validated faster than the hop to a thread takes.
"""

import asyncio
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from ..resources.asyncjob import RESOURCE_TYPE
from ..resources.instants import now_instant
from ..resources.outcome import FhirError, Issue, operation_outcome
from ..storage.base import JobRecord, JobStore, VersionConflict
from . import rules

PROGRESS = "progress"
OUTCOME = "outcome"
STATUS_CODE = "status_code"
MAX_ATTEMPTS = 10
# Resources with more JSON values than this are validated in a worker thread.
INLINE_VALIDATION_VALUES = 100
# One thread validates large resources: validation is Python code holding the interpreter
# lock, so a second thread validates no faster, and two that take turns with it can keep the
# event loop from the lock for hundreds of milliseconds; with one, the loop gets it back
# within a switch interval.
VALIDATION = ThreadPoolExecutor(max_workers=1, thread_name_prefix="validation")
T = TypeVar("T")


class JobNotFound(FhirError):
    """No job has this id (not-found)."""

    def __init__(self, job_id: str) -> None:
        super().__init__([Issue("not-found", f"AsyncJob/{job_id} is not known")])
        self.job_id = job_id


class JobDeleted(FhirError):
    """The job was deleted (deleted)."""

    def __init__(self, job_id: str) -> None:
        super().__init__([Issue("deleted", f"AsyncJob/{job_id} was deleted")])
        self.job_id = job_id


class PreconditionFailed(FhirError):
    """The client's If-Match names a version that is no longer the stored one (conflict)."""

    def __init__(self, job_id: str, expected: int, actual: int) -> None:
        diagnostics = f"AsyncJob/{job_id} is at version {actual}, not {expected}"
        super().__init__([Issue("conflict", diagnostics)])


class JobService:
    """Create, update, progress, finish, cancel and delete AsyncJobs through a JobStore."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    # -- reading --------------------------------------------------------------------------

    async def get(self, job_id: str) -> JobRecord:
        """The live job: JobNotFound if unknown, JobDeleted if deleted."""
        record = await self.store.get(job_id)
        if record is None:
            raise JobNotFound(job_id)
        if record.deleted:
            raise JobDeleted(job_id)
        return record

    # -- the producer API ------------------------------------------------------------------

    async def submit(
        self,
        request: str,
        *,
        type: str | None = None,
        owner: str | None = None,
        data_version: int | None = None,
        min_server_version: str | None = None,
    ) -> JobRecord:
        """A new `accepted` job for the kick-off request URL `request`. `type` is one of the
        profile's job types (resources/asyncjob_profile.py); a data-migration needs
        data_version and min_server_version (else FhirError, 422)."""
        job: dict[str, Any] = {
            "resourceType": RESOURCE_TYPE,
            "status": rules.INITIAL_STATUS,
            "requestTime": now_instant(),
            "request": request,
        }
        if type is not None:
            job["type"] = type
        if data_version is not None:
            job["dataVersion"] = data_version
        if min_server_version is not None:
            job["minServerVersion"] = min_server_version
        return await self.create(job, owner=owner)

    async def report_progress(self, job_id: str, progress: str) -> JobRecord:
        """Set the output parameter `progress` (what X-Progress shows); JobCancelled if the
        job was cancelled meanwhile: stop working on it."""

        def change(job: dict[str, Any]) -> dict[str, Any]:
            return {**job, "output": _with_parameter(job.get("output"), PROGRESS, progress)}

        return await self._produce(job_id, change)

    async def complete(
        self, job_id: str, output: dict[str, Any] | list[dict[str, Any]] | None = None
    ) -> JobRecord:
        """Mark the job completed with its result: a Parameters resource or its parameters."""

        def change(job: dict[str, Any]) -> dict[str, Any]:
            done = {k: v for k, v in job.items() if k != "output"}
            done["status"] = "completed"
            if output is not None:
                done["output"] = _parameters(output)
            return done

        return await self._produce(job_id, change)

    async def fail(
        self, job_id: str, outcome: dict[str, Any] | str, *, status_code: int = 500
    ) -> JobRecord:
        """Mark the job failed: output holds `outcome` (an OperationOutcome, or a message for
        one) and `status_code`, the HTTP status the request ended with."""
        if isinstance(outcome, str):
            outcome = operation_outcome([Issue("exception", outcome)])

        def change(job: dict[str, Any]) -> dict[str, Any]:
            parameters: list[dict[str, Any]] = [
                {"name": OUTCOME, "resource": outcome},
                {"name": STATUS_CODE, "valueInteger": status_code},
            ]
            return {**job, "status": "error", "output": _parameters(parameters)}

        return await self._produce(job_id, change)

    async def cancel(self, job_id: str) -> JobRecord:
        """accepted → cancelled; a cancelled job is answered as is (no new version);
        FhirError 400 if the job already completed or failed."""
        for _ in range(MAX_ATTEMPTS):
            current = await self.get(job_id)
            assert current.resource is not None
            cancelled = rules.cancellation(current.resource)
            if cancelled is None:
                return current
            try:
                return await self._save(current, cancelled)
            except VersionConflict:
                continue
        raise _busy(job_id)

    # -- the REST writes -------------------------------------------------------------------

    async def create(self, resource: dict[str, Any], *, owner: str | None = None) -> JobRecord:
        """Store a new job under a server-assigned id (POST)."""
        new = {**resource, "id": str(uuid.uuid4())}
        job = await _validating(new, partial(rules.new_job, new))
        return await self.store.save(job, expected_version=0, owner=owner, method="POST")

    async def put(
        self,
        resource: dict[str, Any],
        *,
        expected_version: int | None = None,
        owner: str | None = None,
    ) -> tuple[JobRecord, bool]:
        """Create or update resource["id"] (PUT); True when it created the job.

        `owner` owns a job this creates; a job that exists, deleted or not, keeps its owner.
        expected_version (If-Match) makes the write conditional: PreconditionFailed when the
        stored version (0 if none) differs. A write that changes nothing stores nothing.
        """
        job_id = resource["id"]
        for _ in range(MAX_ATTEMPTS):
            current = await self.store.get(job_id)
            version = current.version if current else 0
            if expected_version is not None and expected_version != version:
                raise PreconditionFailed(job_id, expected_version, version)
            try:
                if current is None or current.resource is None:
                    job = await _validating(resource, partial(rules.new_job, resource))
                    # a deleted job keeps its owner: an admin who writes it again does not
                    # take it over
                    keeps = current.owner if current is not None else owner
                    saved = await self.store.save(
                        job, expected_version=version, owner=keeps, method="PUT"
                    )
                    return saved, True
                updated = await _validating(
                    resource, partial(rules.updated_job, current.resource, resource)
                )
                if updated is None:
                    return current, False
                return await self._save(current, updated), False
            except VersionConflict as conflict:
                if expected_version is not None:
                    raise PreconditionFailed(
                        job_id, expected_version, conflict.actual or 0
                    ) from None
        raise _busy(job_id)

    async def delete(self, job_id: str, *, expected_version: int | None = None) -> JobRecord:
        """Record a deletion; a deleted job stays deleted (no new version)."""
        for _ in range(MAX_ATTEMPTS):
            current = await self.store.get(job_id)
            if current is None:
                raise JobNotFound(job_id)
            if expected_version is not None and expected_version != current.version:
                raise PreconditionFailed(job_id, expected_version, current.version)
            if current.deleted:
                return current
            try:
                return await self.store.delete(job_id, expected_version=current.version)
            except VersionConflict as conflict:
                if expected_version is not None:
                    raise PreconditionFailed(
                        job_id, expected_version, conflict.actual or 0
                    ) from None
        raise _busy(job_id)

    # -- internals ---------------------------------------------------------------------------

    async def _produce(
        self, job_id: str, change: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> JobRecord:
        """Apply a producer's change to the running job, re-read and re-applied on conflict."""
        for _ in range(MAX_ATTEMPTS):
            current = await self.get(job_id)
            assert current.resource is not None
            rules.ensure_running(current.resource)
            changed = change(current.resource)
            updated = await _validating(
                changed, partial(rules.updated_job, current.resource, changed)
            )
            if updated is None:
                return current
            try:
                return await self._save(current, updated)
            except VersionConflict:
                continue
        raise _busy(job_id)

    async def _save(self, current: JobRecord, job: dict[str, Any]) -> JobRecord:
        """An update: recorded as a PUT of the job (progress, completion, a cancel too)."""
        return await self.store.save(
            job, expected_version=current.version, owner=current.owner, method="PUT"
        )


async def _validating(resource: dict[str, Any], rules_call: Callable[[], T]) -> T:
    """rules_call(), which validates resource: in the validation thread when resource is
    large."""
    if _more_values_than(resource, INLINE_VALIDATION_VALUES):
        return await asyncio.get_running_loop().run_in_executor(VALIDATION, rules_call)
    return rules_call()


def _more_values_than(value: Any, limit: int) -> bool:
    """Whether value holds more than limit JSON values (objects, arrays, scalars); counting
    stops there, so a small resource costs a few microseconds."""
    count = 0
    stack = [value]
    while stack:
        item = stack.pop()
        count += 1
        if count > limit:
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _busy(job_id: str) -> FhirError:
    return FhirError.of("lock-error", f"AsyncJob/{job_id} kept changing while being written; retry")


def _parameters(output: dict[str, Any] | list[dict[str, Any]]) -> dict[str, Any]:
    if isinstance(output, dict):
        return output
    if not output:  # FHIR JSON has no empty arrays: Parameters without any
        return {"resourceType": "Parameters"}
    return {"resourceType": "Parameters", "parameter": list(output)}


def _with_parameter(output: dict[str, Any] | None, name: str, value: str) -> dict[str, Any]:
    """output with the string parameter `name` set to value (others kept, in order)."""
    parameters = list((output or {}).get("parameter", []))
    entry = {"name": name, "valueString": value}
    for index, parameter in enumerate(parameters):
        if parameter.get("name") == name:
            parameters[index] = entry
            break
    else:
        parameters.append(entry)
    return {**(output or {"resourceType": "Parameters"}), "parameter": parameters}
