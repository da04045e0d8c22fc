"""Scopes a token carries and what each route needs: SMART v1/v2 and eHealth scopes.

SMART scopes read `context/Resource.permissions`: the context is `system` or `user` (treated
alike; `patient/` grants nothing: no served type is in a patient compartment), the resource is
the route's type or `*`, the permissions are v2 letters (`cruds`, any subset in that order) or v1
words (`read` = `rs`, `write` = `cud`, `*` = all).
"""

import re
from dataclasses import dataclass
from functools import lru_cache

CONTEXTS = ("system", "user")
_SMART = re.compile(r"(?P<context>[a-z]+)/(?P<resource>[A-Za-z*]+)\.(?P<permissions>[a-z*]+)")
_V2 = re.compile(r"c?r?u?d?s?")
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
# What to ask for when a permission is missing: the v2 scope, and its v1 equivalent.
_V2_SCOPE = {"c": "cud", "r": "rs", "u": "cud", "d": "cud", "s": "rs"}
_V1_SCOPE = {"c": "write", "r": "read", "u": "write", "d": "write", "s": "read"}


@lru_cache(maxsize=1024)  # tokens carry a handful of distinct scopes: match each regex once
def smart_permissions(scope: str, resource_type: str) -> str:
    """The permission letters a SMART scope grants on resource_type ('' for anything else)."""
    match = _SMART.fullmatch(scope)
    if match is None or match["context"] not in CONTEXTS:
        return ""
    if match["resource"] not in (resource_type, "*"):
        return ""
    permissions = match["permissions"]
    if permissions in _V1:
        return _V1[permissions]
    return permissions if _V2.fullmatch(permissions) else ""


@dataclass(frozen=True, slots=True)
class SmartAccess:
    """A FHIR interaction's need: one SMART permission letter on one resource type."""

    resource_type: str
    permission: str

    def allows(self, scopes: frozenset[str]) -> bool:
        return any(self.permission in smart_permissions(s, self.resource_type) for s in scopes)

    @property
    def missing(self) -> str:
        """What to ask for, in words (OperationOutcome)."""
        letter = self.permission
        return (
            f"system/{self.resource_type}.{_V2_SCOPE[letter]} or "
            f"system/{self.resource_type}.{_V1_SCOPE[letter]}"
        )

    @property
    def scope(self) -> str:
        """The one scope to name in WWW-Authenticate."""
        return f"system/{self.resource_type}.{_V2_SCOPE[self.permission]}"


@dataclass(frozen=True, slots=True)
class EhealthAccess:
    """An adapter route's need: one eHealth scope, by exact name."""

    scope: str

    def allows(self, scopes: frozenset[str]) -> bool:
        return self.scope in scopes

    @property
    def missing(self) -> str:
        return self.scope


@dataclass(frozen=True, slots=True)
class AdminAccess:
    """An operator's route (/metrics): the configured admin scope, by exact name. It counts
    every owner's jobs, so only a token that may see them all may read it."""

    scope: str

    def allows(self, scopes: frozenset[str]) -> bool:
        return self.scope in scopes

    @property
    def missing(self) -> str:
        return self.scope


Access = SmartAccess | EhealthAccess | AdminAccess


def parse_scopes(claim: object) -> frozenset[str]:
    """A token's `scope` (space-separated string, RFC 8693) or `scp` (list) claim."""
    if isinstance(claim, str):
        return frozenset(claim.split())
    if isinstance(claim, list):
        return frozenset(s for s in claim if isinstance(s, str))
    return frozenset()
