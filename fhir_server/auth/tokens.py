"""Bearer JWTs: verify (PyJWT, briefly cached) into a Principal, and mint for operators."""

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jwt

from .keys import HMAC_ALGORITHMS, PUBLIC_KEY_ALGORITHMS, Keys
from .scopes import InvalidScopes, parse_scopes

FULL_SCOPES = "system/*.* job:read composition:read"
CACHE_SIZE = 4096
CACHE_SECONDS = 60.0
DEFAULT_MAX_LIFETIME = timedelta(hours=24)
NUMERIC_DATES = ("exp", "iat", "nbf")  # RFC 7519: JSON numbers of seconds
# Owners of jobs made with a client's token (client_id) are `client:<client_id>`; a user's
# (sub) are the sub itself, as they always were. A sub that starts with one of these prefixes
# gets `sub:` in front, so no sub can name a client's owner.
CLIENT_OWNER = "client:"
SUB_OWNER = "sub:"


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: whose jobs it owns and what it may do. `unrestricted` when auth is off.
    expires_at is the token's exp (epoch seconds)."""

    owner: str | None
    scopes: frozenset[str]
    admin: bool = False
    expires_at: float = float("inf")
    unrestricted: bool = False


UNRESTRICTED = Principal(owner=None, scopes=frozenset(), admin=True, unrestricted=True)


class InvalidToken(Exception):
    """The token cannot be accepted; the message is safe to show to the caller."""


@dataclass(frozen=True)
class TokenPolicy:
    keys: Keys
    issuer: str | None = None
    audience: str | None = None
    leeway: float = 30.0
    admin_scope: str = "system/*.*"
    max_lifetime: timedelta = DEFAULT_MAX_LIFETIME


class TokenVerifier:
    """Verifies tokens and keeps each verified one for up to a minute, never past its exp."""

    def __init__(self, policy: TokenPolicy) -> None:
        self.policy = policy
        # token -> (principal, usable until): a plain dict, since TTLCache took a lock and did
        # expiry bookkeeping on every request (dict get/set are atomic under the GIL).
        self._cache: dict[str, tuple[Principal, float]] = {}

    def verify(self, token: str) -> Principal:
        now = time.time()
        cached = self._cache.get(token)
        if cached is not None and cached[1] > now:
            return cached[0]
        principal = self._verify(token)
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()  # tokens come from clients: keep the cache bounded
        self._cache[token] = (principal, min(principal.expires_at, now + CACHE_SECONDS))
        return principal

    def _verify(self, token: str) -> Principal:
        policy = self.policy
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("The access token is malformed") from None
        key, algorithms = self._key_for(header)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                issuer=policy.issuer,
                audience=policy.audience,
                leeway=policy.leeway,
                options={
                    "require": ["exp"],
                    "verify_aud": policy.audience is not None,
                    "verify_iss": policy.issuer is not None,
                },
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("The access token expired") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"The access token has no '{exc.claim}' claim") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("The access token's issuer is not accepted") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("The access token's audience is not accepted") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("The access token's signature is not valid") from None
        except jwt.PyJWTError:
            raise InvalidToken("The access token is not valid") from None
        self._check_times(claims)
        try:
            scopes = parse_scopes(claims)
        except InvalidScopes as exc:
            raise InvalidToken(str(exc)) from None
        return Principal(
            owner=owner_of(claims),
            scopes=scopes,
            admin=policy.admin_scope in scopes,
            expires_at=float(claims["exp"]),  # cached no longer than the token lives
        )

    def _check_times(self, claims: dict[str, Any]) -> None:
        """exp, iat and nbf are numbers, and a token lives at most max_lifetime, counted from
        its iat (else from now): a leaked token that (nearly) never expires is refused,
        whoever signed it."""
        for name in NUMERIC_DATES:
            # PyJWT reads them with int(), which also takes "1700000000" and "١٧٠٠" (strings)
            value = claims.get(name, 0)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidToken(f"The access token's {name} claim is not a number")
        now = time.time()
        issued = min(claims.get("iat", now), now)
        longest = self.policy.max_lifetime.total_seconds() + self.policy.leeway
        if claims["exp"] - issued > longest:
            raise InvalidToken(
                "The access token lives longer than this server accepts "
                f"({int(self.policy.max_lifetime.total_seconds())} s from its iat)"
            )

    def _key_for(self, header: dict[str, Any]) -> tuple[Any, list[str]]:
        """The key and the one algorithm allowed with it: never `none`, never HS with a
        public key."""
        algorithm = header.get("alg")
        keys = self.policy.keys
        if algorithm in HMAC_ALGORITHMS and keys.secret is not None:
            return keys.secret, [algorithm]
        if algorithm in PUBLIC_KEY_ALGORITHMS:
            candidates = [k for k in keys.jwks if k.algorithm_name == algorithm]
            kid = header.get("kid")
            if kid is not None:
                candidates = [k for k in candidates if k.key_id == kid]
            if len(candidates) == 1:
                return candidates[0].key, [algorithm]
            if candidates and kid is None:
                raise InvalidToken("The access token names no key id (kid)")
        raise InvalidToken("The access token is signed with an unknown key or algorithm")


def owner_of(claims: dict[str, Any]) -> str:
    """Whose jobs the token's holder owns: `client:<client_id>`, else its `sub`."""
    client_id = claims.get("client_id")
    if client_id:
        if not isinstance(client_id, str):
            raise InvalidToken("The access token's client_id is not a string")
        return CLIENT_OWNER + client_id
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise InvalidToken("The access token names no subject (sub or client_id)")
    return SUB_OWNER + sub if sub.startswith((CLIENT_OWNER, SUB_OWNER)) else sub


def mint(
    secret: bytes,
    subject: str,
    scope: str,
    ttl: timedelta,
    *,
    issuer: str | None = None,
    audience: str | None = None,
    client_id: str | None = None,
) -> str:
    """An HS256 token for `subject` with `scope`, valid for `ttl`; with `client_id`, its jobs
    are the client's (owner_of)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject,
        "scope": scope,
        "iat": now,
        "exp": now + int(ttl.total_seconds()),
    }
    if issuer is not None:
        claims["iss"] = issuer
    if audience is not None:
        claims["aud"] = audience
    if client_id is not None:
        claims["client_id"] = client_id
    return jwt.encode(claims, secret, algorithm="HS256")
