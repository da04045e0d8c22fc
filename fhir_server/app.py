"""Builds the Starlette application from settings: the only place that wires things."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from functools import partial
from typing import Any

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount

from .api.application import FhirServerApp
from .api.errors import EXCEPTION_HANDLERS
from .api.limits import InputLimits
from .api.pipeline import RequestPipeline
from .api.routes import all_routes
from .api.search import SearchParser
from .api.throttle import OwnerRateLimit
from .auth.quotas import OwnerQuota
from .auth.setup import token_issuer, token_verifier
from .config import Settings
from .jobs.loader import load_paths
from .jobs.retention import sweep
from .notifications.binding import BindingTokens
from .notifications.delivery import RestHookDelivery, RetryPolicy, criteria_of
from .notifications.feed import FeedTailer
from .notifications.outbound import Sender
from .notifications.subscriptions import Subscriptions
from .notifications.websocket import WebSocketChannel
from .notifications.writer import SubscriptionWriter
from .observability import metrics
from .observability.access_log import AccessLog
from .observability.telemetry import Telemetry
from .resources import registry
from .resources.asyncjob import ASYNC_JOB, warm_up
from .resources.kinds import ResourceKind
from .resources.subscription import SUBSCRIPTION
from .search.paging import SearchLimits
from .secrets_file import configured_secret, persistent_secret
from .storage.base import JobStore
from .storage.factory import build_client_store, build_delivery_store, build_store
from .storage.guard import with_deadline
from .storage.opening import open_store

log = logging.getLogger("fhir_server")
SECRET_FILE = "secret-key"


def rest_hook_delivery(
    settings: Settings, jobs: JobStore, subscriptions: JobStore, app_metrics: metrics.Metrics
) -> RestHookDelivery:
    sender = Sender(
        timeout=settings.subscription_timeout,
        response_bytes=settings.subscription_response_bytes,
        allow_private=settings.subscription_allow_private_endpoints,
    )
    policy = RetryPolicy(
        settings.subscription_max_attempts,
        settings.subscription_backoff_base,
        settings.subscription_backoff_cap,
    )
    return RestHookDelivery(
        jobs=jobs,
        subscriptions=subscriptions,
        states=build_delivery_store(settings),
        sender=sender,
        policy=policy,
        criteria=criteria_of(registry.BY_TYPE),
        metrics=app_metrics,
    )


def cursor_secret(settings: Settings) -> bytes:
    """The configured key, else one generated once and shared through the data dir."""
    configured = configured_secret(settings.secret_key, settings.secret_key_file)
    return configured or persistent_secret(settings.data_dir / SECRET_FILE)


def create_app(
    settings: Settings | None = None,
    store: JobStore | None = None,
    *,
    routes: Sequence[BaseRoute] = (),
) -> FhirServerApp:
    """The server as an ASGI app, serving every registered resource kind; `store` is AsyncJob's
    (else built from settings). `routes` are served too, tried before the FHIR API's (e.g. a
    kick-off endpoint: see examples/export_service.py)."""
    settings = settings or Settings()
    kinds = registry.KINDS
    job_store = with_deadline(store or build_store(settings, ASYNC_JOB), settings.store_timeout)
    stores = {
        kind.type: job_store
        if kind is ASYNC_JOB
        else with_deadline(build_store(settings, kind), settings.store_timeout)
        for kind in kinds
    }

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        warm_up()  # before any request: pydantic builds validators on first use
        openings = [await open_store(each) for each in stores.values()]
        if settings.load:
            await load_paths(
                job_store,
                settings.load,
                max_resource_bytes=settings.max_resource_bytes,
                batch_size=settings.load_batch_size,
            )
        await feed.start()
        sweeper = None
        if settings.retention is not None:
            sweeper = asyncio.create_task(
                sweep(job_store, settings.retention, settings.retention_interval)
            )
        delivery = delivering = None
        if SUBSCRIPTION.type in stores:
            delivery = rest_hook_delivery(
                settings, job_store, stores[SUBSCRIPTION.type], app_metrics
            )
            delivering = asyncio.create_task(delivery.run())
            subscriptions.channels["rest-hook"] = delivery
            subscriptions.listeners.append(delivery.on_subscription)
        app.state.rest_hooks = delivery
        yield
        await websockets.close_all()
        await feed.stop()
        if delivery is not None and delivering is not None:
            # Acknowledged positions are stored as they come: stopping abandons only the POST
            # in flight (delivered again by the next process) and releases the leases.
            await delivery.stop()
            await delivering
            await delivery.close()
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        for opening in openings:
            if opening is not None:
                opening.cancel()
        for each in stores.values():
            await each.close()
        await clients.close()
        if access_log is not None:
            access_log.flush()

    verifier = token_verifier(settings)
    clients = build_client_store(settings)
    access_log = AccessLog() if settings.access_log else None
    app_metrics = metrics.Metrics()
    secret = cursor_secret(settings)
    search_limits = SearchLimits(
        settings.default_page_size,
        settings.max_page_size,
        settings.max_offset,
        settings.max_page_bytes,
    )
    input_limits = InputLimits(
        max_body_bytes=settings.max_body_bytes,
        max_json_depth=settings.max_json_depth,
        max_json_array_items=settings.max_json_array_items,
        max_json_elements=settings.max_json_elements,
        max_search_parameters=settings.max_search_parameters,
        max_search_values=settings.max_search_values,
        max_search_value_length=settings.max_search_value_length,
    )

    def parser_for(kind: ResourceKind) -> SearchParser:
        return SearchParser(kind, search_limits, input_limits, secret)

    # Notifications: every worker tails every kind's change feed; the subscriptions follow it.
    by_type = {kind.type: kind for kind in kinds if kind is not SUBSCRIPTION}
    subscriptions = Subscriptions(by_type, stores.get(SUBSCRIPTION.type))
    sorted_stores = dict(sorted(stores.items(), key=lambda item: item[0] != SUBSCRIPTION.type))
    feed = FeedTailer(
        # The subscriptions' feed first: a subscription and a change written after it that
        # one read brings are seen in that order.
        sorted_stores,
        interval=settings.feed_poll_interval,
        on_lag=lambda name, lag: app_metrics.feed_lag.labels(name).set(lag),
        prepare=subscriptions.load,
        idle=lambda: not subscriptions.active,
    )
    feed.add_listener(subscriptions.on_change)
    websockets = WebSocketChannel(
        subscriptions,
        BindingTokens(secret, settings.ws_binding_token_lifetime),
        max_sockets=settings.max_websockets,
        heartbeat=settings.ws_heartbeat_interval,
        metrics=app_metrics,
        on_session_end=lambda socket, seconds, code: _log_session(
            access_log, app_metrics, socket, seconds, code
        ),
    )
    writers = {
        SUBSCRIPTION.type: partial(
            SubscriptionWriter,
            kinds=by_type,
            max_per_owner=settings.max_subscriptions_per_owner,
            allow_private_endpoints=settings.subscription_allow_private_endpoints,
        )
    }

    app = FhirServerApp(
        routes=[*routes, *all_routes(kinds, parser_for, settings.admin_scope, writers)],
        pipeline=partial(
            RequestPipeline,
            verifier=verifier,
            telemetry=Telemetry(app_metrics, access_log),
            max_body_bytes=settings.max_body_bytes,
            body_timeout=settings.body_timeout,
            max_token_bytes=settings.max_token_bytes,
            rate_limit=OwnerRateLimit(settings.rate_limit) if settings.rate_limit else None,
        ),
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.metrics = app_metrics
    app.state.access_log = access_log
    app.state.settings = settings
    app.state.store = job_store
    app.state.stores = stores
    app.state.kinds = kinds
    app.state.secret = secret
    app.state.search_limits = search_limits
    app.state.input_limits = input_limits
    app.state.quota = OwnerQuota.of(settings.max_jobs_per_owner, settings.max_bytes_per_owner)
    app.state.public_base_url = settings.public_base_url
    app.state.clients = clients
    app.state.subscriptions = subscriptions
    app.state.feed = feed
    app.state.websockets = websockets
    app.state.token_issuer = token_issuer(settings, verifier, clients)
    # No trailing-slash redirects: Starlette builds their Location from the Host header,
    # which the client chooses (a mistyped path is a 404 instead).
    app.router.redirect_slashes = False
    for route in app.routes:  # mounted sub-applications (the eHealth adapter) share the state
        if isinstance(route, Mount) and isinstance(route.app, Starlette):
            route.app.state = app.state
            route.app.router.redirect_slashes = False
    return app


def _log_session(
    access_log: AccessLog | None,
    app_metrics: metrics.Metrics,
    socket: Any,
    seconds: float,
    code: int,
) -> None:
    """A WebSocket session in the access log when it ends: 101 (switched protocols), its
    length, the close code in the route."""
    path = socket.scope.get("path", "")
    route = f"{path} (closed {code})"
    app_metrics.observe("WEBSOCKET", path, 101, seconds)
    if access_log is not None:
        access_log.record(
            socket.headers.get("x-request-id", "-"), "WEBSOCKET", route, path, 101, seconds
        )
