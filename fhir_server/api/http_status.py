"""The HTTP status of every error, derived in one place from its FHIR issue type.

Domain errors (resources, search, storage, jobs, auth) name only what went wrong, as an
OperationOutcome issue type; this table turns that into the status. Errors about HTTP itself
(a method, a media type, a body size) are ProtocolErrors and carry their status.
"""

from ..resources.outcome import FhirError, Issue

STATUS_BY_ISSUE_CODE: dict[str, int] = {
    "login": 401,
    "unknown": 401,
    "expired": 401,
    "forbidden": 403,
    "security": 403,
    "suppressed": 403,
    "not-found": 404,
    "deleted": 410,
    "duplicate": 409,  # the id is taken
    "lock-error": 409,  # other writers kept changing the resource: retry
    "conflict": 412,  # a version-aware write (If-Match) met another version
    "business-rule": 422,
    # A resource that breaks the profile's bindings or invariants (FHIR: 422 Unprocessable)
    "code-invalid": 422,
    "invariant": 422,
    "throttled": 429,
    "exception": 500,
    "transient": 503,
    "timeout": 503,
    "no-store": 503,
}
# Any other issue type (invalid, structure, required, value, not-supported, too-costly,
# processing) is a bad request.
DEFAULT_STATUS = 400


class ProtocolError(FhirError):
    """An error in the HTTP exchange itself (405, 406, 413, 415 ...): its status is HTTP's."""

    def __init__(self, status: int, code: str, diagnostics: str) -> None:
        super().__init__([Issue(code, diagnostics)])
        self.status = status


def status_of(error: FhirError) -> int:
    if isinstance(error, ProtocolError):
        return error.status
    return STATUS_BY_ISSUE_CODE.get(error.code, DEFAULT_STATUS)
