"""Registered clients' keys: checking a registration (`fhir-server client add`), and finding
the key that verifies an assertion, from the JWK Set registered with the client or fetched
from its JWK Set URL (httpx, cached as the URL's Cache-Control allows, within bounds).

Keys are chosen as SMART App Launch's asymmetric client authentication says: the one key
whose `kid` is the assertion's and whose type fits its algorithm. Only RS384 and ES384 are
accepted (the pair SMART requires): never `none`, never an HMAC, whatever a key set holds.
"""

import ipaddress
import json
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt

from ..storage.clients import RegisteredClient
from .scopes import InvalidScopes, parse_scopes

# The algorithm allow-list, with the key each needs: (kty, crv).
ALGORITHMS: dict[str, tuple[str, str | None]] = {"RS384": ("RSA", None), "ES384": ("EC", "P-384")}
CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,127}")
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")  # RFC 7518 §6: secrets
JWKS_FETCH_TIMEOUT = 5.0
MAX_JWKS_BYTES = 64 * 1024
JWKS_CACHE_SECONDS = 300  # at most; less when the URL's Cache-Control says so
JWKS_CACHE_SIZE = 256
REFETCH_AFTER_SECONDS = 30  # an unknown kid fetches a cached set again (keys rotate), not sooner
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*(\d{1,9})\s*(?:,|$)", re.IGNORECASE)


class InvalidRegistration(ValueError):
    """A registration that cannot be used; the message says what is wrong."""


class KeyNotFound(Exception):
    """No usable key for an assertion; the message is safe to show to the client."""


def client_id(value: str) -> str:
    if not CLIENT_ID.fullmatch(value):
        raise InvalidRegistration(
            f"client id {value!r}: use 1-128 letters, digits and . _ ~ - (starting with a "
            "letter or digit)"
        )
    return value


def registered_scope(value: str) -> str:
    """The scopes a client may be granted, checked as a token's are (space-separated)."""
    try:
        scopes = parse_scopes({"scope": value})
    except InvalidScopes as exc:
        raise InvalidRegistration(f"--scope: {exc}") from None
    if not scopes:
        raise InvalidRegistration("--scope: name at least one scope")
    return " ".join(s for s in value.split(" ") if s)


def key_set(text: str, source: str) -> list[dict[str, Any]]:
    """The keys of a JWK Set: each public, with a `kty` and a `kid`, at least one usable with
    RS384 or ES384."""
    try:
        document = json.loads(text)
    except ValueError:
        raise InvalidRegistration(f"{source} is not JSON") from None
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
        raise InvalidRegistration(f'{source} is not a JWK Set ({{"keys": [...]}})')
    for key in keys:
        if not isinstance(key.get("kid"), str) or not isinstance(key.get("kty"), str):
            raise InvalidRegistration(f"{source}: every key needs a kty and a kid")
        if any(member in key for member in PRIVATE_MEMBERS):
            raise InvalidRegistration(
                f"{source}: key {key['kid']!r} holds private or secret key material; "
                "register the public keys only"
            )
    if not any(_fits(key, algorithm) for key in keys for algorithm in ALGORITHMS):
        raise InvalidRegistration(f"{source} has no RSA or EC P-384 key (RS384, ES384)")
    return keys


def jwks_url(value: str) -> str:
    """An https URL; http only to this machine (a client running beside the server, tests)."""
    parts = urlsplit(value)
    if parts.scheme == "https" and parts.hostname:
        return value
    if parts.scheme == "http" and parts.hostname and _loopback(parts.hostname):
        return value
    raise InvalidRegistration(f"--jwks-url {value!r}: use an https URL")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _fits(key: dict[str, Any], algorithm: str) -> bool:
    kty, crv = ALGORITHMS[algorithm]
    if key.get("kty") != kty or (crv is not None and key.get("crv") != crv):
        return False
    # A key that names its algorithm or use is used only for that.
    return key.get("alg", algorithm) == algorithm and key.get("use", "sig") == "sig"


class ClientKeys:
    """Finds the key that verifies a client's assertion. Key sets fetched from URLs are kept
    per URL (at most JWKS_CACHE_SIZE of them), no longer than JWKS_CACHE_SECONDS or the
    answer's Cache-Control max-age; `no-store` / `no-cache` answers are not kept."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._transport = transport
        # url -> (keys, fetched at, usable until)
        self._cache: dict[str, tuple[list[dict[str, Any]], float, float]] = {}
        self.clock: Callable[[], float] = time.monotonic

    async def key_for(self, client: RegisteredClient, algorithm: str, kid: str) -> Any:
        if client.jwks is not None:
            return _key(key_set(client.jwks, "the registered JWK Set"), algorithm, kid)
        assert client.jwks_url is not None
        now = self.clock()
        cached = self._cache.get(client.jwks_url)
        if cached is not None and cached[2] > now:
            try:
                return _key(cached[0], algorithm, kid)
            except KeyNotFound:
                if now - cached[1] < REFETCH_AFTER_SECONDS:
                    raise
        return _key(await self._fetch(client.jwks_url), algorithm, kid)

    async def _fetch(self, url: str) -> list[dict[str, Any]]:
        try:
            async with (
                httpx.AsyncClient(
                    transport=self._transport, timeout=JWKS_FETCH_TIMEOUT, follow_redirects=False
                ) as http,
                http.stream("GET", url, headers={"Accept": "application/json"}) as answer,
            ):
                body = b""
                async for chunk in answer.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_JWKS_BYTES:
                        raise KeyNotFound(f"the client's JWK Set at {url} is too large")
                if answer.status_code != 200:
                    raise KeyNotFound(f"the client's JWK Set URL answered {answer.status_code}")
                cache_control = answer.headers.get("cache-control", "")
        except httpx.HTTPError:
            raise KeyNotFound("the client's JWK Set URL cannot be reached") from None
        try:
            keys = key_set(body.decode("utf-8", "replace"), "the client's JWK Set")
        except InvalidRegistration as exc:
            raise KeyNotFound(str(exc)) from None
        seconds = _cache_seconds(cache_control)
        if seconds > 0:
            if len(self._cache) >= JWKS_CACHE_SIZE:
                self._cache.clear()
            now = self.clock()
            self._cache[url] = (keys, now, now + seconds)
        return keys


def _cache_seconds(cache_control: str) -> float:
    lowered = cache_control.lower()
    if "no-store" in lowered or "no-cache" in lowered:
        return 0
    match = _MAX_AGE.search(cache_control)
    return min(int(match[1]), JWKS_CACHE_SECONDS) if match else JWKS_CACHE_SECONDS


def _key(keys: list[dict[str, Any]], algorithm: str, kid: str) -> Any:
    """The one key with this kid that fits the algorithm, as a verification key."""
    found = [k for k in keys if k.get("kid") == kid and _fits(k, algorithm)]
    if len(found) != 1:
        raise KeyNotFound(
            f"the client has no {algorithm} key with kid {kid!r}"
            if not found
            else f"the client has several {algorithm} keys with kid {kid!r}"
        )
    try:
        return jwt.PyJWK(found[0], algorithm=algorithm).key
    except jwt.PyJWTError:
        raise KeyNotFound(f"the client's key {kid!r} cannot be read") from None
