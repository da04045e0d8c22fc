"""Authentication from settings: keys, the token policy, the verifier."""

import logging
from datetime import timedelta

from ..config import Settings
from ..secrets_file import configured_secret
from ..storage.clients import ClientStore
from .backend_services import TokenIssuer
from .clients import ClientKeys
from .keys import load_keys
from .tokens import FULL_SCOPES, TokenPolicy, TokenVerifier, mint

log = logging.getLogger("fhir_server")
STARTUP_TOKEN_TTL = timedelta(hours=24)


MIN_SECRET_BYTES = 32  # RFC 7518 §3.2: an HS256 key at least as long as the hash


def token_policy(settings: Settings) -> TokenPolicy:
    secret = configured_secret(settings.jwt_secret, settings.jwt_secret_file)
    keys = load_keys(secret, settings.jwks_file, settings.data_dir)
    if secret is not None and len(secret) < MIN_SECRET_BYTES:
        log.warning(
            "The JWT secret is shorter than %d bytes: tokens signed with it can be "
            "brute-forced; use a longer random secret",
            MIN_SECRET_BYTES,
        )
    if keys.jwks and settings.jwt_audience is None:
        # An identity provider's keys sign tokens for all its services: without an audience,
        # a token it issued for any of them is accepted here.
        log.warning(
            "FHIR_SERVER_JWKS_FILE is set without FHIR_SERVER_JWT_AUDIENCE: tokens its identity "
            "provider issued for other services are accepted too; set the audience"
        )
    return TokenPolicy(
        keys,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        leeway=float(settings.jwt_leeway_seconds),
        admin_scope=settings.admin_scope,
        max_lifetime=settings.jwt_max_lifetime,
    )


def token_verifier(settings: Settings) -> TokenVerifier | None:
    """The bearer-token verifier; None with auth off, when everyone is let through (and every
    start says so). Without configured keys, logs a ready-to-use token."""
    if settings.auth == "off":
        log.warning(
            "AUTHENTICATION IS OFF (FHIR_SERVER_AUTH=off): anyone can read, change and "
            "delete every job"
        )
        return None
    policy = token_policy(settings)
    if policy.keys.generated and policy.keys.secret is not None:
        ttl = min(STARTUP_TOKEN_TTL, policy.max_lifetime)  # a token the server accepts
        token = mint(
            policy.keys.secret,
            "admin",
            FULL_SCOPES,
            ttl,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
        log.info(
            "no token key configured: signing with the generated secret in %s. "
            "A token with full scopes, valid %gh:\n\n    Authorization: Bearer %s\n\n"
            "The job console, signed in with it:\n\n    Console: %s\n",
            settings.data_dir,
            ttl.total_seconds() / 3600,
            token,
            console_link(settings, token),
        )
    return TokenVerifier(policy)


def console_link(settings: Settings, token: str) -> str:
    """The job console's address that signs `token` in: the token rides in the URL fragment,
    which a browser never sends (no server or proxy log sees it); the page stores it in the
    tab's sessionStorage and removes it from the address bar."""
    root = settings.public_base_url
    if root is None:
        # A server listening on every interface is reached locally at the loopback address.
        host = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(settings.host, settings.host)
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        root = f"http://{host}:{settings.port}"
    return f"{str(root).rstrip('/')}/console#token={token}"


def token_issuer(
    settings: Settings, verifier: TokenVerifier | None, clients: ClientStore
) -> TokenIssuer | None:
    """The token endpoint's issuer of SMART Backend Services tokens, signed with the server's
    HS256 key; None when this server issues no tokens (no_tokens_reason says why)."""
    if verifier is None or settings.token_endpoint is not None:
        return None
    policy = verifier.policy
    if policy.keys.secret is None:
        log.warning(
            "Only a JWKS file is configured: /oauth2/token issues no tokens. Set "
            "FHIR_SERVER_TOKEN_ENDPOINT to your identity provider's token endpoint, so that "
            "SMART discovery names it"
        )
        return None
    return TokenIssuer(
        clients,
        ClientKeys(),
        policy.keys.secret,
        issuer=policy.issuer,
        audience=policy.audience,
        leeway=policy.leeway,
        max_lifetime=policy.max_lifetime,
        admin_scope=policy.admin_scope,
    )


def no_tokens_reason(settings: Settings) -> str:
    """Why the token endpoint issues nothing (when token_issuer gave None)."""
    if settings.auth == "off":
        return "Authentication is off on this server: requests need no token"
    if settings.token_endpoint is not None:
        endpoint = settings.token_endpoint
        return f"This server issues no tokens: its identity provider does, at {endpoint}"
    return "This server issues no tokens: its identity provider does"
