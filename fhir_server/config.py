"""Settings: one object, read from FHIR_SERVER_* variables and CLI options, passed down."""

from datetime import timedelta
from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .durations import Duration

# Twice the body limit: whatever a client may send fits with the meta a store adds, and a
# producer's result may be larger. Stores built without settings use it too.
DEFAULT_LOAD_BATCH_SIZE = 10_000  # measured: benchmarks/README.md#fhir-server-load
DEFAULT_MAX_RESOURCE_BYTES = 2 * 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FHIR_SERVER_", extra="ignore")

    host: str = Field(default="127.0.0.1", description="Interface to listen on.")
    port: int = Field(default=8000, description="TCP port to listen on.")
    public_base_url: str | None = Field(
        default=None,
        description="The server's URL as clients reach it (e.g. https://fhir.example.org): "
        "links are built on it, never on the request's Host header.",
    )
    forwarded_allow_ips: str | None = Field(
        default=None,
        description="Proxy addresses (comma-separated IPs or networks) whose X-Forwarded-For "
        "and X-Forwarded-Proto are trusted; unset trusts none.",
    )
    mongodb_uri: str | None = Field(
        default=None, description="MongoDB connection URI; without it the embedded store is used."
    )
    mongodb_database: str = Field(default="fhir_server", description="MongoDB database name.")
    data_dir: Path = Field(
        default=Path("data"),
        description="Folder of the embedded database and the generated secrets.",
    )
    secret_key: str | None = Field(
        default=None,
        description="Key that signs paging cursors; generated once into the data dir when unset.",
    )
    secret_key_file: Path | None = Field(
        default=None, description="File holding the key that signs paging cursors."
    )
    default_page_size: int = Field(default=20, ge=1, description="Search page size without _count.")
    max_page_size: int = Field(default=1000, ge=1, description="Largest _count a search accepts.")
    max_offset: int = Field(default=10_000, ge=0, description="Largest _offset a search accepts.")
    max_page_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        description="Byte budget of a search page: it ends (with a next link) before the "
        "entry that would take its resources past this; it always holds one.",
    )
    log_level: str = Field(default="info", description="Log level: debug, info, warning, error.")
    load: list[Path] = Field(
        default_factory=list, description="Files or folders of AsyncJobs to load at start."
    )
    retry_after_seconds: int = Field(
        default=5, ge=1, description="Retry-After (seconds) the job status endpoint answers with."
    )
    retention: Duration | None = Field(
        default=None,
        description="Purge final jobs not updated for this long (e.g. 7d); unset keeps them.",
    )
    retention_interval: Duration = Field(
        default=timedelta(hours=1), description="How often the retention sweep runs (e.g. 1h)."
    )
    # -- notifications (fhir_server/notifications) --
    feed_poll_interval: float = Field(
        default=0.05,
        gt=0,
        le=5,
        description="Seconds between two reads of the change feed by each worker process: "
        "the most a notification waits for its change to be seen.",
    )
    max_subscriptions_per_owner: int = Field(
        default=100,
        ge=1,
        description="Most live Subscriptions one owner may have; creating more is 403 forbidden.",
    )
    max_websockets: int = Field(
        default=1000,
        ge=1,
        description="Most subscription WebSockets one worker process holds; more are refused "
        "(closed with 1013 try again later).",
    )
    ws_binding_token_lifetime: Duration = Field(
        default=timedelta(seconds=60),
        description="How long a $get-ws-binding-token token may be used to bind a WebSocket.",
    )
    ws_heartbeat_interval: float = Field(
        default=20.0,
        gt=0,
        description="Seconds between heartbeat notifications on a bound WebSocket.",
    )
    ehealth_eta: Duration = Field(
        default=timedelta(minutes=10),
        description="eHealth eta of a job without an eta extension: requestTime + this "
        "(ISO-8601 duration or seconds).",
    )
    # -- security (fhir_server/auth, fhir_server/api/limits.py) --
    auth: Literal["on", "off"] = Field(
        default="on", description="Bearer-token authentication; 'off' lets anyone do anything."
    )
    jwt_secret: str | None = Field(
        default=None,
        description="HS256 key for bearer tokens; without it and a JWKS file, one is generated "
        "in the data dir.",
    )
    jwt_secret_file: Path | None = Field(
        default=None, description="File holding the HS256 key for bearer tokens."
    )
    jwks_file: Path | None = Field(
        default=None, description="JWKS file with the RS256/ES256 keys that sign bearer tokens."
    )
    token_endpoint: str | None = Field(
        default=None,
        description="Token endpoint of the identity provider that issues the bearer tokens "
        "(with a JWKS file): SMART discovery and the CapabilityStatement name it, and this "
        "server's own /oauth2/token issues none.",
    )
    jwt_issuer: str | None = Field(default=None, description="Required `iss` of bearer tokens.")
    jwt_audience: str | None = Field(default=None, description="Required `aud` of bearer tokens.")
    jwt_leeway_seconds: int = Field(
        default=30, ge=0, le=300, description="Clock skew allowed on exp/nbf/iat (seconds)."
    )
    jwt_max_lifetime: Duration = Field(
        default=timedelta(hours=24),
        gt=timedelta(0),
        description="Longest a bearer token may live: exp after iat (or now) + this is refused.",
    )
    admin_scope: str = Field(
        default="system/*.*", description="Scope that sees and changes every owner's jobs."
    )
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1, description="Largest request body (bytes); larger is 413."
    )
    max_bundle_entries: int = Field(
        default=1000,
        ge=1,
        description="Most entries in a batch or transaction Bundle; more is 413 too-costly.",
    )
    max_json_depth: int = Field(default=64, ge=1, description="Deepest JSON nesting accepted.")
    max_json_array_items: int = Field(
        default=1000, ge=1, description="Most items in one array of a JSON body."
    )
    max_json_elements: int = Field(
        default=10_000,
        ge=1,
        description="Most values in a JSON body: objects, arrays and scalars together.",
    )
    max_resource_bytes: int = Field(
        default=DEFAULT_MAX_RESOURCE_BYTES,
        ge=1024,
        description="Largest resource stored, as its canonical JSON (bytes); every write of "
        "a larger one is refused (400 too-costly).",
    )
    load_batch_size: int = Field(
        default=DEFAULT_LOAD_BATCH_SIZE,
        ge=1,
        le=100_000,
        description="Jobs `fhir-server load` (and FHIR_SERVER_LOAD) stores per transaction: "
        "one fsync each; another writer of the data file waits for one batch at most.",
    )
    load_workers: int = Field(
        default=0,
        ge=0,
        le=64,
        description="Processes `fhir-server load` validates a large NDJSON file in (8 MiB a "
        "part at least), and makes each batch's rows in while the store writes the ones "
        "before: 0 for one per core.",
    )
    max_search_parameters: int = Field(
        default=50, ge=1, description="Most parameters one search may have."
    )
    max_search_values: int = Field(
        default=100, ge=1, description="Most values (comma-separated or repeated) per parameter."
    )
    max_search_value_length: int = Field(
        default=2048, ge=1, description="Longest search parameter value (characters)."
    )
    max_header_bytes: int = Field(
        default=8 * 1024,
        ge=256,
        description="Longest request line or header line (bytes); longer is 414 or 431.",
    )
    max_head_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="Largest request head: request line and headers together (bytes); "
        "larger is 431.",
    )
    max_token_bytes: int = Field(
        default=4096,
        ge=64,
        description="Longest Authorization header (bytes); longer is a 401 without decoding it.",
    )
    max_jobs_per_owner: int | None = Field(
        default=None,
        ge=1,
        description="Most live jobs one owner may store; a create beyond is 403 forbidden. "
        "Admins' writes are not held to it. Unset: no limit.",
    )
    max_bytes_per_owner: int | None = Field(
        default=None,
        ge=1,
        description="Most bytes (canonical JSON) of live jobs one owner may store; a write "
        "beyond is 403 forbidden. Admins' writes are not held to it. Unset: no limit.",
    )
    rate_limit: str | None = Field(
        default=None,
        description="Requests each owner may make, e.g. '20/second;600/minute' (per worker "
        "process; admins are not limited); over it: 429 with Retry-After. Unset: no limit.",
    )
    # Connections (fhir_server/api/connection.py, uvicorn).
    header_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds a client has to send a request line and headers, counted from "
        "its connection or the request's first byte; past it: 408 and the connection closes.",
    )
    body_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a client has to send a request body once the headers are in; "
        "past it: 408 and the connection closes.",
    )
    keep_alive_timeout: int = Field(
        default=5, ge=1, description="Seconds an idle kept-alive connection stays open."
    )
    max_connections: int = Field(
        default=1000,
        ge=1,
        description="Open connections (or requests in flight) per worker at which a new "
        "request is a 503; lowered to fit the open-file limit.",
    )
    # Production operation: MongoDB client, fail-fast deadline, telemetry, shutdown.
    mongodb_max_pool_size: int = Field(
        default=100, ge=1, description="Most MongoDB connections per server process."
    )
    mongodb_min_pool_size: int = Field(
        default=0, ge=0, description="MongoDB connections kept open when idle."
    )
    mongodb_server_selection_timeout_ms: int = Field(
        default=1500, ge=1, description="How long to wait for a usable MongoDB server (ms)."
    )
    mongodb_connect_timeout_ms: int = Field(
        default=1000, ge=1, description="TCP connect timeout to MongoDB (ms)."
    )
    mongodb_socket_timeout_ms: int = Field(
        default=5000, ge=1, description="Longest wait for a MongoDB reply on a socket (ms)."
    )
    mongodb_write_concern: str = Field(
        default="majority", description="Write concern w: majority, or a number of members."
    )
    mongodb_journal: bool = Field(default=True, description="Writes wait for the journal.")
    mongodb_retry_writes: bool = Field(
        default=True, description="Retry a write once after a failover or network error."
    )
    store_timeout: float = Field(
        default=2.0, gt=0, description="Deadline for one storage call (s); past it: 503."
    )
    access_log: bool = Field(default=True, description="One JSON line per request on stdout.")
    shutdown_timeout: int = Field(
        default=30, ge=0, description="Seconds in-flight requests get to finish on SIGTERM."
    )

    # REST-hook Subscriptions (fhir_server/notifications/resthook.py, outbound.py).
    subscription_allow_private_endpoints: bool = Field(
        default=False,
        description="Let REST-hook endpoints be plain http and resolve to loopback, private, "
        "link-local or other non-public addresses (for tests and closed networks only).",
    )
    subscription_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds one REST-hook POST may take (connect, send, answer); past it the "
        "attempt has failed.",
    )
    subscription_max_attempts: int = Field(
        default=5,
        ge=1,
        description="Consecutive failed REST-hook attempts after which the Subscription is set "
        "to status error (a subscription-max-attempts extension overrides it, up to 20).",
    )
    subscription_backoff_base: float = Field(
        default=1.0,
        gt=0,
        description="Seconds before the first REST-hook retry; doubled each further failure "
        "(with jitter), up to the cap.",
    )
    subscription_backoff_cap: float = Field(
        default=300.0, gt=0, description="Longest wait between two REST-hook attempts (s)."
    )
    subscription_response_bytes: int = Field(
        default=4096,
        ge=0,
        description="Most bytes of a REST-hook endpoint's answer read (the rest is dropped).",
    )

    @field_validator("public_base_url", "token_endpoint")
    @classmethod
    def _absolute_http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{value!r} is not an absolute http(s) URL")
        if parts.query or parts.fragment:
            raise ValueError(f"{value!r} has a query or a fragment")
        return value.rstrip("/")

    @field_validator("rate_limit")
    @classmethod
    def _rates(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        from limits import parse_many  # ~85 ms to import: only when a rate is set

        try:
            parse_many(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a rate such as '20/second;600/minute'") from exc
        return value

    @model_validator(mode="after")
    def _one_source_per_secret(self) -> Self:
        for name in ("jwt_secret", "secret_key"):
            if getattr(self, name) and getattr(self, f"{name}_file") is not None:
                variable = f"FHIR_SERVER_{name.upper()}"
                raise ValueError(f"set {variable} or {variable}_FILE, not both")
        return self
