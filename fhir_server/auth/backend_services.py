"""SMART Backend Services: an access token for a registered client that authenticates with a
signed assertion (`private_key_jwt`, RFC 7523), checked as SMART App Launch 2.x requires.

The assertion's alg is RS384 or ES384, its key the client's key with its kid (clients.py);
iss = sub = the client's id; aud = this token endpoint's URL; exp no more than five minutes
ahead (plus the clock leeway) and not past; its jti used once: the store keeps it until the
assertion expires, for every worker. The token is granted the requested scopes as far as the
registration covers them (scopes.narrowed) and is minted as `fhir-server token` mints, with
the client's id as client_id: the jobs it makes are `client:<id>`'s.
"""

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jwt

from ..storage.clients import ClientStore, RegisteredClient
from .clients import ALGORITHMS, CLIENT_ID, ClientKeys, KeyNotFound
from .scopes import InvalidScopes, narrowed, parse_scopes
from .tokens import mint

GRANT_TYPE = "client_credentials"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_SECONDS = 300  # SMART: exp no more than five minutes in the future
ACCESS_TOKEN_TTL = timedelta(minutes=5)  # SMART recommends expires_in of at most 300 s
MAX_JTI_LENGTH = 256


class OAuthError(Exception):
    """A refused token request: an RFC 6749 §5.2 error code and a description that is safe
    to show to the client."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


def invalid_client(description: str) -> OAuthError:
    return OAuthError("invalid_client", description)


@dataclass(frozen=True, slots=True)
class AccessToken:
    token: str
    expires_in: int
    scope: str


@dataclass(frozen=True)
class TokenIssuer:
    clients: ClientStore
    keys: ClientKeys
    secret: bytes  # the HS256 key the server's tokens are signed with
    issuer: str | None = None
    audience: str | None = None
    leeway: float = 30.0
    max_lifetime: timedelta = timedelta(hours=24)
    admin_scope: str = "system/*.*"

    async def issue(self, form: Mapping[str, str], token_url: str) -> AccessToken:
        """A token for the client the form's assertion authenticates; OAuthError if none."""
        grant_type = form.get("grant_type")
        if grant_type is None:
            raise OAuthError("invalid_request", "grant_type is missing")
        if grant_type != GRANT_TYPE:
            message = f"grant_type must be {GRANT_TYPE} (SMART Backend Services)"
            raise OAuthError("unsupported_grant_type", message)
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise invalid_client(f"client_assertion_type must be {ASSERTION_TYPE}")
        assertion = form.get("client_assertion")
        if not assertion:
            raise invalid_client("client_assertion is missing")
        client, claims = await self._authenticate(assertion, token_url)
        if form.get("client_id", client.id) != client.id:
            raise invalid_client("client_id is not the assertion's iss")
        scope = self._granted(form.get("scope"), client)
        # Last, so that a refused request leaves nothing behind.
        expires = float(claims["exp"]) + self.leeway
        if not await self.clients.first_use(client.id, claims["jti"], expires):
            raise invalid_client("The assertion was used before (its jti): sign a new one")
        ttl = min(ACCESS_TOKEN_TTL, self.max_lifetime)
        token = mint(
            self.secret,
            client.id,
            scope,
            ttl,
            issuer=self.issuer,
            audience=self.audience,
            client_id=client.id,
        )
        return AccessToken(token, int(ttl.total_seconds()), scope)

    async def _authenticate(
        self, assertion: str, token_url: str
    ) -> tuple[RegisteredClient, dict[str, Any]]:
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise invalid_client("client_assertion is not a JWT") from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
            raise invalid_client(
                f"The assertion's alg {str(algorithm)[:20]!r} is not accepted: sign it with "
                f"{' or '.join(ALGORITHMS)}"
            )
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise invalid_client("The assertion's header names no key (kid)")
        client_id = unverified.get("iss")
        if not isinstance(client_id, str) or unverified.get("sub") != client_id:
            raise invalid_client("The assertion's iss and sub must both be the client's id")
        client = await self.clients.get(client_id) if CLIENT_ID.fullmatch(client_id) else None
        if client is None:
            raise invalid_client("The assertion's iss is not a registered client")
        jku = header.get("jku")
        if jku is not None and jku != client.jwks_url:
            raise invalid_client("The assertion's jku is not the client's registered JWK Set URL")
        try:
            key = await self.keys.key_for(client, algorithm, kid)
        except KeyNotFound as exc:
            raise invalid_client(str(exc)) from None
        return client, self._verified(assertion, key, algorithm, client, token_url)

    def _verified(
        self, assertion: str, key: Any, algorithm: str, client: RegisteredClient, token_url: str
    ) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                assertion,
                key,
                algorithms=[algorithm],
                audience=token_url,
                issuer=client.id,
                leeway=self.leeway,
                options={"require": ["iss", "sub", "aud", "exp", "jti"]},
            )
        except jwt.InvalidSignatureError:
            raise invalid_client("The assertion's signature is not valid") from None
        except jwt.ExpiredSignatureError:
            raise invalid_client("The assertion expired") from None
        except jwt.InvalidAudienceError:
            raise invalid_client(f"The assertion's aud must be the token URL {token_url}") from None
        except jwt.MissingRequiredClaimError as exc:
            raise invalid_client(f"The assertion has no '{exc.claim}' claim") from None
        except jwt.ImmatureSignatureError:
            raise invalid_client("The assertion is not valid yet (nbf or iat)") from None
        except jwt.PyJWTError:
            raise invalid_client("The assertion is not valid") from None
        exp = claims["exp"]
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            raise invalid_client("The assertion's exp is not a number")
        if exp > time.time() + MAX_ASSERTION_SECONDS + self.leeway:
            raise invalid_client(
                f"The assertion's exp is more than {MAX_ASSERTION_SECONDS} s ahead: an assertion "
                "lives at most five minutes"
            )
        jti = claims["jti"]
        if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH:
            raise invalid_client(f"The assertion's jti must be a string of 1-{MAX_JTI_LENGTH}")
        return claims

    def _granted(self, requested: str | None, client: RegisteredClient) -> str:
        registered = client.scope.split(" ")
        if requested is None:  # RFC 6749 §3.3: the registered scopes
            asked = registered
        else:
            try:
                parse_scopes({"scope": requested})
            except InvalidScopes:
                raise OAuthError(
                    "invalid_scope",
                    "scope holds a character a scope may not have (RFC 6749: printable ASCII "
                    'but space, " and \\; scopes are separated by single spaces)',
                ) from None
            asked = [s for s in requested.split(" ") if s]
        granted = narrowed(asked, registered)
        # The admin scope is matched exactly: only a client registered with it is an admin.
        if self.admin_scope not in registered:
            granted = tuple(s for s in granted if s != self.admin_scope)
        if not granted:
            raise OAuthError(
                "invalid_scope",
                f"None of the requested scopes is registered for this client ({client.scope})",
            )
        return " ".join(granted)
