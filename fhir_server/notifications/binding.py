"""Binding tokens ($get-ws-binding-token): a short-lived JWT that binds a WebSocket to one
Subscription of one owner. It is signed with a key of its own (derived from the server's
secret, shared by every worker through the data dir), with its own audience: it is not an
access token anywhere, and an access token is not a binding token."""

import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

import jwt

from ..auth.tokens import Principal
from .subscriptions import Grant

AUDIENCE = "fhir-server:ws-binding"
ALGORITHM = "HS256"


class InvalidBinding(Exception):
    """The token cannot bind a socket; the message is safe to show."""


@dataclass(frozen=True, slots=True)
class Binding:
    subscription_id: str
    # The subscription's owner when the token was issued: the subscription must still be
    # that owner's when the socket binds.
    owner: str | None
    grant: Grant
    # The FHIR base URL the token was asked for at: notifications' fullUrls.
    base: str


class BindingTokens:
    def __init__(self, secret: bytes, lifetime: timedelta) -> None:
        self._key = hmac.new(secret, b"fhir-server websocket binding", hashlib.sha256).digest()
        self.lifetime = lifetime

    def issue(
        self, subscription_id: str, owner: str | None, principal: Principal, base: str
    ) -> tuple[str, float]:
        """The token and when it expires (epoch seconds): the lifetime, or sooner if the
        access token that asked for it expires sooner."""
        now = time.time()
        expires = min(now + self.lifetime.total_seconds(), principal.expires_at)
        claims = {
            "aud": AUDIENCE,
            "sub": subscription_id,
            "owner": owner,
            "caller": principal.owner,
            "scopes": sorted(principal.scopes),
            "admin": principal.admin,
            # The access token's expiry: after it, nothing more is delivered on the binding.
            "access_exp": None if principal.expires_at == float("inf") else principal.expires_at,
            "base": base,
            "iat": int(now),
            "exp": expires,
            "jti": str(uuid.uuid4()),
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM), expires

    def verify(self, token: object) -> Binding:
        if not isinstance(token, str) or len(token) > 8192:
            raise InvalidBinding("The binding token is missing or malformed")
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                options={"require": ["exp", "sub", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidBinding("The binding token has expired; ask for another") from None
        except jwt.PyJWTError:
            raise InvalidBinding("The binding token is not valid") from None
        access_exp = claims.get("access_exp")
        grant = Grant(
            owner=claims.get("caller"),
            scopes=frozenset(claims.get("scopes") or ()),
            admin=bool(claims.get("admin")),
            expires_at=float("inf") if access_exp is None else float(access_exp),
        )
        return Binding(str(claims["sub"]), claims.get("owner"), grant, str(claims.get("base")))
