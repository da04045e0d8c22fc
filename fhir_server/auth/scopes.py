"""Scopes a token carries and what each route needs: SMART v1/v2 and eHealth scopes.

SMART scopes read `context/Resource.permissions`: the context is `system` or `user` (treated
alike; `patient/` grants nothing, AsyncJob is in no patient compartment), the resource is
`AsyncJob` or `*`, the permissions are v2 letters (`cruds`, any subset in that order) or v1
words (`read` = `rs`, `write` = `cud`, `*` = all).
"""

import re
from dataclasses import dataclass
from functools import lru_cache

RESOURCE = "AsyncJob"
CONTEXTS = ("system", "user")
_SMART = re.compile(r"(?P<context>[a-z]+)/(?P<resource>[A-Za-z*]+)\.(?P<permissions>[a-z*]+)")
_V2 = re.compile(r"c?r?u?d?s?")
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
# The permission letter each kind of access needs and the scopes to name when it is missing.
_SUGGESTED = {
    "c": "system/AsyncJob.cud or system/AsyncJob.write",
    "r": "system/AsyncJob.rs or system/AsyncJob.read",
    "u": "system/AsyncJob.cud or system/AsyncJob.write",
    "d": "system/AsyncJob.cud or system/AsyncJob.write",
    "s": "system/AsyncJob.rs or system/AsyncJob.read",
}
_RFC6750 = {
    "c": "system/AsyncJob.cud",
    "r": "system/AsyncJob.rs",
    "u": "system/AsyncJob.cud",
    "d": "system/AsyncJob.cud",
    "s": "system/AsyncJob.rs",
}


@lru_cache(maxsize=1024)  # tokens carry a handful of distinct scopes: match each regex once
def smart_permissions(scope: str) -> str:
    """The permission letters a SMART scope grants on AsyncJob ('' for anything else)."""
    match = _SMART.fullmatch(scope)
    if match is None or match["context"] not in CONTEXTS:
        return ""
    if match["resource"] not in (RESOURCE, "*"):
        return ""
    permissions = match["permissions"]
    if permissions in _V1:
        return _V1[permissions]
    return permissions if _V2.fullmatch(permissions) else ""


@dataclass(frozen=True, slots=True)
class SmartAccess:
    """A FHIR route's need: one SMART permission letter on AsyncJob."""

    permission: str

    def allows(self, scopes: frozenset[str]) -> bool:
        return any(self.permission in smart_permissions(s) for s in scopes)

    @property
    def missing(self) -> str:
        """What to ask for, in words (OperationOutcome)."""
        return _SUGGESTED[self.permission]

    @property
    def scope(self) -> str:
        """The one scope to name in WWW-Authenticate."""
        return _RFC6750[self.permission]


@dataclass(frozen=True, slots=True)
class EhealthAccess:
    """An adapter route's need: one eHealth scope, by exact name."""

    scope: str

    def allows(self, scopes: frozenset[str]) -> bool:
        return self.scope in scopes

    @property
    def missing(self) -> str:
        return self.scope


Access = SmartAccess | EhealthAccess
READ = SmartAccess("r")
SEARCH = SmartAccess("s")
CREATE = SmartAccess("c")
UPDATE = SmartAccess("u")
DELETE = SmartAccess("d")


def parse_scopes(claim: object) -> frozenset[str]:
    """A token's `scope` (space-separated string, RFC 8693) or `scp` (list) claim."""
    if isinstance(claim, str):
        return frozenset(claim.split())
    if isinstance(claim, list):
        return frozenset(s for s in claim if isinstance(s, str))
    return frozenset()
