"""Scopes a token carries and what each route needs: SMART v1/v2 and eHealth scopes.

SMART scopes read `context/Resource.permissions`: the context is `system` or `user` (treated
alike; `patient/` grants nothing: no served type is in a patient compartment), the resource is
the route's type or `*`, the permissions are v2 letters (`cruds`, any subset in that order) or v1
words (`read` = `rs`, `write` = `cud`, `*` = all).
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

CONTEXTS = ("system", "user")
_SMART = re.compile(r"(?P<context>[a-z]+)/(?P<resource>[A-Za-z*]+)\.(?P<permissions>[a-z*]+)")
_V2 = re.compile(r"c?r?u?d?s?")
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
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
class NamedScope:
    """A need for one scope, by exact name: an eHealth adapter route's (`job:read`), or an
    operator's route's (/metrics counts every owner's jobs: the configured admin scope)."""

    scope: str

    def allows(self, scopes: frozenset[str]) -> bool:
        return self.scope in scopes

    @property
    def missing(self) -> str:
        return self.scope


@dataclass(frozen=True, slots=True)
class AnyToken:
    """A need for an accepted token and no scope in particular: a route whose work checks
    each part's own need (a Bundle at the base: every entry its interaction's scope)."""

    def allows(self, scopes: frozenset[str]) -> bool:
        return True

    @property
    def missing(self) -> str:
        return "an accepted bearer token"

    @property
    def scope(self) -> str:
        return ""


Access = SmartAccess | NamedScope | AnyToken


class InvalidScopes(ValueError):
    """The token's scope claims are not what RFC 6749/8693 allow; the message is safe to show."""


def parse_scopes(claims: Mapping[str, object]) -> frozenset[str]:
    """A token's scopes: `scope`, a string of scope tokens separated by spaces (RFC 8693 §4.2),
    else `scp`, a list of scope tokens.

    Only U+0020 separates (str.split() also splits on tabs, NBSP and other Unicode spaces,
    which made one odd token two). Any other claim type, or a token with a character outside
    RFC 6749's scope-token (control characters, spaces, non-ASCII), refuses the whole token:
    what its issuer meant by it is unknown, so no part of it is trusted.
    """
    if "scope" in claims:
        claim = claims["scope"]
        if not isinstance(claim, str):
            raise InvalidScopes("The access token's scope claim is not a space-separated string")
        scopes = [s for s in claim.split(" ") if s]
    elif "scp" in claims:
        claim = claims["scp"]
        if not isinstance(claim, list) or not all(isinstance(s, str) for s in claim):
            raise InvalidScopes("The access token's scp claim is not a list of strings")
        scopes = claim
    else:
        return frozenset()
    if not all(_SCOPE_TOKEN.fullmatch(s) for s in scopes):
        raise InvalidScopes(
            "The access token's scopes hold a character a scope may not have "
            '(RFC 6749: printable ASCII but space, " and \\)'
        )
    return frozenset(scopes)


def _smart_parts(scope: str) -> tuple[str, str, str] | None:
    """(context, resource, v2 letters) of a SMART scope of a context this server serves."""
    match = _SMART.fullmatch(scope)
    if match is None or match["context"] not in CONTEXTS:
        return None
    permissions = match["permissions"]
    letters = _V1.get(permissions) or (permissions if _V2.fullmatch(permissions) else "")
    return (match["context"], match["resource"], letters) if letters else None


def narrowed(requested: Iterable[str], registered: Iterable[str]) -> tuple[str, ...]:
    """What a client registered for `registered` is granted when it asks for `requested`:
    each requested scope as far as the registration covers it.

    A scope registered as it is, is granted as written. Any other SMART scope is cut down to
    the permissions the registration gives for its context and resource, in v2 letters: a
    client registered for `system/AsyncJob.cruds` asking for `system/*.rs` gets
    `system/AsyncJob.rs`. Any other scope (`job:read`, `launch/patient`) is granted only if
    registered exactly."""
    allowed = list(dict.fromkeys(registered))
    granted: list[str] = []
    cut: dict[tuple[str, str], set[str]] = {}
    for scope in requested:
        if scope in allowed:
            granted.append(scope)
            continue
        asked = _smart_parts(scope)
        if asked is None:
            continue
        context, resource, letters = asked
        for have_context, have_resource, have_letters in filter(None, map(_smart_parts, allowed)):
            covers = resource in ("*", have_resource) or have_resource == "*"
            common = set(letters) & set(have_letters)
            if have_context == context and covers and common:
                key = (context, resource if have_resource == "*" else have_resource)
                cut.setdefault(key, set()).update(common)
    for (context, resource), given in cut.items():
        granted.append(f"{context}/{resource}.{''.join(c for c in 'cruds' if c in given)}")
    return tuple(dict.fromkeys(granted))
