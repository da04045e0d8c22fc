"""fhir-server serve | load | purge | token | client: every setting is also a command-line
option."""

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import resource
import signal
import sys
from collections.abc import Iterator
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)

from .config import Settings
from .durations import parse_duration
from .jobs.loader import find_files, load_paths
from .jobs.retention import purge_older_than
from .secrets_file import UnsafeFile, configured_secret, persistent_secret
from .storage.base import SchemaTooNew, StoreMigrationFailed, StoreUnavailable
from .storage.clients import ClientExists, ClientStore, RegisteredClient
from .storage.factory import build_client_store, build_store

# Allocations between two collections of the youngest objects during a load (default 700).
LOAD_GC_THRESHOLD = 100_000
console = Console(stderr=True, soft_wrap=True)  # keep file:line: messages on one line
# `fhir-server load`'s progress: jobs validated, then jobs stored of those validated.
JOB_COLUMNS = (
    TextColumn("{task.description}"),
    BarColumn(),
    MofNCompleteColumn(),
    TextColumn("jobs"),
    TaskProgressColumn(),
    TimeRemainingColumn(),
)
# What stops `fhir-server load` cleanly: Ctrl-C, and docker stop / systemd / kill.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
STOPPED = (
    "stopped: each batch was stored whole or not at all; the same command again stores the rest"
)
# Secrets are not taken as argument values: every local user can read a process's command
# line (ps). They come from the environment or from a file; the option names the file one.
ENV_ONLY = {"jwt_secret": "--jwt-secret-file", "secret_key": "--secret-key-file"}


def _add_setting_options(parser: argparse.ArgumentParser, names: tuple[str, ...]) -> None:
    for name in names:
        field = Settings.model_fields[name]
        option = "--" + name.replace("_", "-")
        if name == "load":
            parser.add_argument(
                option,
                dest=name,
                action="append",
                type=Path,
                default=None,
                metavar="PATH",
                help=field.description,
            )
        elif name in ENV_ONLY:  # refused in main, with what to do instead
            parser.add_argument(option, dest=name, default=None, help=argparse.SUPPRESS)
        else:
            parser.add_argument(option, dest=name, default=None, help=field.description)


def _settings(args: argparse.Namespace, names: tuple[str, ...]) -> Settings:
    given = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    return Settings(**given)


def _export(settings: Settings) -> None:
    """Hand the settings to uvicorn's workers, which build the app from the environment."""
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        env = f"FHIR_SERVER_{name.upper()}"
        os.environ[env] = json.dumps(value) if isinstance(value, list) else str(value)


def _unusable(exc: Exception) -> None:
    """Report a store, key or file this fhir-server cannot use: its message says what to do."""
    console.print(str(exc), style="red", markup=False, highlight=False)


async def check_store(settings: Settings) -> bool:
    """Open the store and read the keys once before the workers start: a store, data dir or
    key it cannot use is reported in a line (not as a worker's failed start), and the schema
    is brought up to date once, before several workers open it. A database not reachable yet
    does not stop the start: the workers open it once it is."""
    from .app import cursor_secret
    from .auth.keys import KeyLoadError, load_keys

    try:
        cursor_secret(settings)
        if settings.auth == "on":
            secret = configured_secret(settings.jwt_secret, settings.jwt_secret_file)
            load_keys(secret, settings.jwks_file, settings.data_dir)
    except (UnsafeFile, KeyLoadError) as exc:
        _unusable(exc)
        return False
    store = build_store(settings)
    try:
        await store.open()
    except (SchemaTooNew, StoreMigrationFailed, UnsafeFile) as exc:
        _unusable(exc)
        return False
    except StoreUnavailable as exc:
        console.print(f"storage unavailable, serving anyway (503 until it is reachable): {exc}")
    finally:
        await store.close()
    return True


# Files a worker keeps open besides its connections: the store, logs, MongoDB's pool.
RESERVED_FILES = 64


def connection_limit(settings: Settings) -> int:
    """uvicorn's limit_concurrency: max_connections, lowered to leave RESERVED_FILES free
    under the open-file limit, which is first raised as far as it may go (the workers
    inherit it), so a flood of connections meets 503s rather than failed accepts."""
    files, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if files != hard:
        with contextlib.suppress(ValueError, OSError):  # e.g. an infinite hard limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            files = hard
    reserved = RESERVED_FILES + (settings.mongodb_max_pool_size if settings.mongodb_uri else 0)
    if files == resource.RLIM_INFINITY or settings.max_connections <= files - reserved:
        return settings.max_connections
    limit = max(1, files - reserved)
    console.print(
        f"serving at most {limit} connections per worker, not {settings.max_connections}: "
        f"the open-file limit is {files}"
    )
    return limit


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options for the connections: the bounded protocol (api/connection.py), the
    concurrency limit, the timeouts and whose forwarded headers are believed."""
    from .api.connection import BoundedHttpToolsProtocol, ConnectionLimits

    limits = ConnectionLimits(
        max_header_bytes=settings.max_header_bytes,
        max_head_bytes=settings.max_head_bytes,
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
    )
    return {
        "http": partial(BoundedHttpToolsProtocol, limits=limits),
        "limit_concurrency": connection_limit(settings),
        "timeout_keep_alive": settings.keep_alive_timeout,
        "timeout_graceful_shutdown": settings.shutdown_timeout,
        # X-Forwarded-For/-Proto only from the configured proxies: any other peer could
        # claim another scheme or client address.
        "proxy_headers": settings.forwarded_allow_ips is not None,
        "forwarded_allow_ips": settings.forwarded_allow_ips,
        "server_header": False,  # "server: uvicorn" tells scanners what to try; no client needs it
    }


def serve(settings: Settings, workers: int, app: str = "fhir_server.app:create_app") -> None:
    import uvicorn

    _export(settings)
    root = settings.public_base_url or f"http://{settings.host}:{settings.port}"
    console.print(f"FHIR base URL: {root}/fhir/R4")
    uvicorn.run(
        app,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        log_level=settings.log_level,
        access_log=False,  # the app writes its own JSON access log (FHIR_SERVER_ACCESS_LOG)
        **server_options(settings),
    )


@contextlib.contextmanager
def _rare_collections() -> Iterator[None]:
    """A load makes millions of small containers that die young: at the default threshold
    (700 allocations) the cycle collector ran thousands of times over the batch in hand,
    about a tenth of the command (benchmarks/README.md#fhir-server-load). The objects of the
    start are frozen out of its scans too. Both undone after."""
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(LOAD_GC_THRESHOLD, *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


@contextlib.contextmanager
def _cancelled_by_signals() -> Iterator[list[int]]:
    """STOP_SIGNALS cancel the running command's task instead of ending the process, so its
    clean-up runs: worker processes ended, temporary files removed, the store's indexes made
    again and the store closed. Yields the signals received. A second one ends the process at
    once, as without this (what a load has stored is whole batches either way)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    received: list[int] = []

    def stop(signum: int) -> None:
        received.append(signum)
        for each in STOP_SIGNALS:
            loop.remove_signal_handler(each)
        console.print("stopping…", style="red")
        task.cancel()

    for each in STOP_SIGNALS:
        loop.add_signal_handler(each, stop, each)
    try:
        yield received
    finally:
        for each in STOP_SIGNALS:
            loop.remove_signal_handler(each)


async def load(settings: Settings, paths: list[Path]) -> int:
    with _rare_collections(), _cancelled_by_signals() as received:
        try:
            return await _load(settings, paths)
        except asyncio.CancelledError:
            if not received:
                raise
    console.print(STOPPED, style="red")
    return 128 + received[0]


async def _load(settings: Settings, paths: list[Path]) -> int:
    store = build_store(settings, bulk=True)
    try:
        await store.open()
    except (SchemaTooNew, StoreMigrationFailed, UnsafeFile) as exc:
        _unusable(exc)
        return 1
    except StoreUnavailable as exc:  # e.g. a full disk, or a lock held past the busy timeout
        return _failed("load", exc, settings)
    files = find_files(paths)
    try:
        with Progress(*JOB_COLUMNS, console=console, transient=True) as progress:
            # Jobs, not files: one file may hold a million. The stored total grows as each
            # file is validated (its jobs are counted then).
            validating = progress.add_task("validating", total=None)
            loading = progress.add_task("loading", total=0)

            def validated(n: int) -> None:
                progress.advance(validating, n)
                progress.update(loading, total=(progress.tasks[loading].total or 0) + n)

            report = await load_paths(
                store,
                files,
                max_resource_bytes=settings.max_resource_bytes,
                batch_size=settings.load_batch_size,
                on_validated=validated,
                on_stored=lambda n: progress.advance(loading, n),
                workers=settings.load_workers or os.cpu_count() or 1,
            )
    except (OSError, StoreUnavailable) as exc:  # e.g. a full disk, for the store or $TMPDIR
        _failed("load", exc, settings)
        console.print(STOPPED, style="red")
        return 1
    finally:
        await store.close()
    for error in report.errors:
        console.print(error, style="red", markup=False, highlight=False)
    if report.one_by_one:
        console.print(
            "the store offers no transactions (MongoDB without a replica set): jobs were "
            "stored one at a time, not in batches"
        )
    console.print(f"stored {report.stored} new or changed jobs from {report.files} files")
    return 1 if report.errors else 0


def _failed(command: str, exc: OSError | StoreUnavailable, settings: Settings) -> int:
    """Report a command ended by its store or a file, in a line (no traceback); exit code 1.
    A StoreUnavailable's message (SQLite's, the driver's) does not say which store."""
    where = "" if isinstance(exc, OSError) else f" (the store: {_store_name(settings)})"
    console.print(f"{command} failed: {exc}{where}", style="red", markup=False, highlight=False)
    return 1


def _store_name(settings: Settings) -> str:
    if settings.mongodb_uri:
        return f"MongoDB database {settings.mongodb_database}"  # the URI may hold a password
    return str(settings.data_dir)


async def purge(settings: Settings, older_than: timedelta) -> int:
    store = build_store(settings)
    try:
        await store.open()
    except (SchemaTooNew, StoreMigrationFailed, UnsafeFile) as exc:
        _unusable(exc)
        return 1
    except StoreUnavailable as exc:
        return _failed("purge", exc, settings)
    try:
        removed = await purge_older_than(store, older_than)
    except StoreUnavailable as exc:
        return _failed("purge", exc, settings)
    finally:
        await store.close()
    console.print(f"purged {removed} final jobs not updated for {older_than}")
    return 0


TOKEN_SETTINGS = (
    "jwt_secret",
    "jwt_secret_file",
    "jwks_file",
    "jwt_issuer",
    "jwt_audience",
    "jwt_max_lifetime",
    "data_dir",
)


def token(settings: Settings, subject: str, scope: str, ttl: timedelta) -> int:
    """Print an HS256 token signed with the configured secret (or the data dir's)."""
    from .auth.keys import GENERATED_SECRET_FILE
    from .auth.tokens import mint

    if ttl > settings.jwt_max_lifetime:
        console.print(
            f"--ttl {ttl} is longer than FHIR_SERVER_JWT_MAX_LIFETIME "
            f"({settings.jwt_max_lifetime}): the server would refuse the token",
            style="red",
            markup=False,
            highlight=False,
        )
        return 2
    try:
        secret = configured_secret(settings.jwt_secret, settings.jwt_secret_file)
        if secret is None and settings.jwks_file is not None:
            console.print(
                "[red]only a JWKS file is configured: tokens come from its identity provider; "
                "set FHIR_SERVER_JWT_SECRET to mint them here[/red]"
            )
            return 2
        if secret is None:
            secret = persistent_secret(settings.data_dir / GENERATED_SECRET_FILE)
    except UnsafeFile as exc:
        _unusable(exc)
        return 1
    issued = mint(
        secret, subject, scope, ttl, issuer=settings.jwt_issuer, audience=settings.jwt_audience
    )
    print(issued)
    return 0


# Where registered clients are kept: the store's settings (not --jwks-file: that names the
# keys of bearer tokens, while `client add --jwks-file` names a client's).
CLIENT_SETTINGS = tuple(n for n in Settings.model_fields if n == "data_dir" or "mongodb" in n)


async def client_command(settings: Settings, args: argparse.Namespace) -> int:
    """fhir-server client add | list | remove: the SMART Backend Services clients that may
    get tokens at /oauth2/token."""
    from .auth import clients

    new = None
    if args.client_command == "add":
        try:
            new = _new_client(args)
        except (clients.InvalidRegistration, OSError) as exc:
            _unusable(exc)
            return 2
    store = build_client_store(settings)
    try:
        if new is not None:
            return await _add_client(store, new)
        if args.client_command == "list":
            for each in await store.all():
                keys = each.jwks_url or "JWK Set registered from a file"
                print(f"{each.id}\t{each.scope}\t{keys}\t{each.registered}")
            return 0
        if not await store.remove(args.id):
            console.print(f"no client {args.id} is registered", style="red", markup=False)
            return 1
        console.print(f"removed client {args.id}")
        return 0
    except (SchemaTooNew, StoreMigrationFailed, StoreUnavailable, UnsafeFile) as exc:
        _unusable(exc)
        return 1
    finally:
        await store.close()


async def _add_client(store: ClientStore, client: RegisteredClient) -> int:
    try:
        await store.add(client)
    except ClientExists:
        console.print(
            f"client {client.id} is registered already: `fhir-server client remove --id "
            f"{client.id}` first to register it again",
            style="red",
            markup=False,
        )
        return 1
    keys = client.jwks_url or "the JWK Set of the file"
    console.print(f"registered client {client.id}: scopes {client.scope}; keys: {keys}")
    return 0


def _new_client(args: argparse.Namespace) -> RegisteredClient:
    from .auth import clients

    client_id = clients.client_id(args.id)
    scope = clients.registered_scope(args.scope)
    if args.jwks_url is not None:
        return RegisteredClient(client_id, scope, jwks_url=clients.jwks_url(args.jwks_url))
    text = Path(args.jwks_file).read_text()
    clients.key_set(text, str(args.jwks_file))
    return RegisteredClient(client_id, scope, jwks=text)


def _duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fhir-server", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_names = tuple(Settings.model_fields)
    serve_parser = commands.add_parser("serve", help="serve the FHIR API")
    _add_setting_options(serve_parser, serve_names)
    serve_parser.add_argument("--workers", type=int, default=1, help="worker processes")
    load_names = tuple(n for n in Settings.model_fields if n not in ("host", "port", "load"))
    load_parser = commands.add_parser("load", help="validate and store AsyncJobs from files")
    load_parser.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    _add_setting_options(load_parser, load_names)
    purge_names = load_names  # the store settings, whichever backend
    purge_parser = commands.add_parser(
        "purge", help="remove final jobs (completed, error, cancelled) not updated for a while"
    )
    purge_parser.add_argument(
        "--older-than", type=_duration, required=True, metavar="AGE", help="e.g. 7d, 12h, 30m"
    )
    _add_setting_options(purge_parser, purge_names)
    token_parser = commands.add_parser("token", help="mint a bearer token (HS256)")
    token_parser.add_argument("--sub", required=True, help="subject: the owner of its jobs")
    token_parser.add_argument(
        "--scope", required=True, help='space-separated scopes, e.g. "system/AsyncJob.rs job:read"'
    )
    token_parser.add_argument(
        "--ttl", type=_duration, default=timedelta(hours=1), metavar="AGE", help="default 1h"
    )
    _add_setting_options(token_parser, TOKEN_SETTINGS)
    client_parser = commands.add_parser(
        "client", help="register SMART Backend Services clients (they get tokens at /oauth2/token)"
    )
    client_commands = client_parser.add_subparsers(dest="client_command", required=True)
    add_parser = client_commands.add_parser("add", help="register a client and its public keys")
    add_parser.add_argument("--id", required=True, help="the client id: its assertions' iss")
    keys = add_parser.add_mutually_exclusive_group(required=True)
    keys.add_argument("--jwks-file", type=Path, help="a JWK Set file with its public keys")
    keys.add_argument("--jwks-url", help="the https URL that publishes its JWK Set")
    add_parser.add_argument(
        "--scope", required=True, help='scopes it may be granted, e.g. "system/AsyncJob.rs"'
    )
    list_parser = client_commands.add_parser("list", help="one line per client")
    remove_parser = client_commands.add_parser("remove", help="unregister a client")
    remove_parser.add_argument("--id", required=True)
    for each in (add_parser, list_parser, remove_parser):
        _add_setting_options(each, CLIENT_SETTINGS)
    args = parser.parse_args(argv)
    for name, file_option in ENV_ONLY.items():
        if getattr(args, name, None) is not None:
            parser.error(
                f"--{name.replace('_', '-')} is not accepted: every local user can read a "
                f"command line (ps). Set FHIR_SERVER_{name.upper()} or use {file_option}"
            )
    # What this process creates (the data dir, the database, secrets) is its user's alone.
    os.umask(0o077)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "serve":
        settings = _settings(args, serve_names)
        if not asyncio.run(check_store(settings)):
            return 1
        serve(settings, args.workers)
        return 0
    if args.command == "token":
        return token(_settings(args, TOKEN_SETTINGS), args.sub, args.scope, args.ttl)
    if args.command == "client":
        return asyncio.run(client_command(_settings(args, CLIENT_SETTINGS), args))
    if args.command == "purge":
        return asyncio.run(purge(_settings(args, purge_names), args.older_than))
    try:
        return asyncio.run(load(_settings(args, load_names), args.paths))
    except KeyboardInterrupt:  # a second Ctrl-C, during the first one's clean-up
        console.print(STOPPED, style="red")
        return 128 + signal.SIGINT


if __name__ == "__main__":
    sys.exit(main())
