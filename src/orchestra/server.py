"""The composition root of `orchestra server`: database, services, web application, master
loops (role all or master) and local worker processes (--workers N)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp

from orchestra.errors import InvalidInput
from orchestra.master.transport import WorkerWebSocketProtocol
from orchestra.server_files import make_private
from orchestra.services.container import Services
from orchestra.services.key_check import verify_key
from orchestra.services.keyring import load_keyring
from orchestra.services.notify import PostgresBridge
from orchestra.services.worker_registry import LOCAL_WORKER_USER
from orchestra.settings import Settings
from orchestra.storage.migrate import upgrade
from orchestra.web.app import create_app
from orchestra.web.transport import header_deadline_protocol
from orchestra.worker.run_as import RunAs, resolve_run_as

log = logging.getLogger(__name__)
LOCAL_WORKERS_TOKEN = "local workers"


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this: without it, a response written as headers then body
    # waits for the client's delayed acknowledgement (40 ms a request on Linux).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def build_app(services: Services) -> FastAPI:
    from orchestra.master_mount import master_parts

    startup, shutdown, routers = (
        master_parts(services) if services.settings.runs_master else ([], [], [])
    )
    if not services.db.is_sqlite and services.settings.listen_notify:
        # Other processes hear of new runs, cancels and aborts at once, not at their next poll.
        bridge = PostgresBridge(services.db.url, services.events)

        async def start_bridge(_app: FastAPI) -> None:
            await bridge.start()

        async def stop_bridge(_app: FastAPI) -> None:
            await bridge.stop()

        startup = [start_bridge, *startup]
        shutdown = [*shutdown, stop_bridge]
    site = None
    if services.settings.serves_api:
        from orchestra.web.site.pages import install_site, site_router

        site = (site_router(), install_site)
    return create_app(
        services, on_startup=startup, on_shutdown=shutdown, routers=routers, site=site
    )


def serve(
    settings: Settings,
    local_workers: int = 0,
    worker_sandbox: str = "always",
    worker_data_dir: Path | None = None,
    worker_run_as: str | None = None,
) -> None:
    """Migrate, then serve until SIGINT or SIGTERM; `local_workers` run their steps in a
    sandbox as `worker_sandbox` says (always, by default: docs/isolation.md), keep their data
    in `worker_data_dir` (default: <data dir>-workers, beside the server's, never in it), and
    run their steps as the OS user `worker_run_as` (default: the server's own)."""
    workers_dir = local_workers_dir(settings, worker_data_dir)
    steps_user = None
    if local_workers and worker_run_as is not None:
        # Refused now (not root, no such user), not by each worker.
        steps_user = resolve_run_as(worker_run_as)
    if local_workers and worker_sandbox == "always":
        _check_sandbox(steps_user)
    make_private(Path(settings.data_dir).resolve(), _server_files(settings))
    upgrade(settings.resolved_database_url)
    if settings.role != "all" and settings.resolved_database_url.startswith("sqlite"):
        raise InvalidInput(
            "SQLite is single-instance: run --role all, or use PostgreSQL to split roles"
        )
    sock = bind_socket(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}"
    if not settings.public_url:
        from dataclasses import replace

        settings = replace(settings, public_url=url)
    keyring = load_keyring(settings)
    verify_key(settings.resolved_database_url, keyring)
    services = Services.build(settings, keyring=keyring)
    app = build_app(services)
    served: ASGIApp = app
    if settings.runs_master:
        from orchestra.master_mount import WorkerEndpointFirst

        served = WorkerEndpointFirst(app)
    config = uvicorn.Config(
        served,
        log_config=None,
        lifespan="on",
        ws=WorkerWebSocketProtocol,  # uvicorn's sans-I/O protocol, heartbeats taken in place
        ws_max_size=16 * 1024 * 1024,
        # Worker reports are mostly output, stored as it is: deflating and inflating every frame
        # cost more than storing it.
        ws_per_message_deflate=False,
        # Workers heartbeat, and the master closes a connection silent for three intervals:
        # protocol pings on top cost a write and a read per connection every 20 s for nothing.
        ws_ping_interval=None,
        timeout_graceful_shutdown=5,
        # Slow or idle clients: a deadline for a request's headers, then for the next request on
        # a kept-alive connection, and a cap on connections (past it, requests answer 503).
        http=header_deadline_protocol(settings.header_timeout),
        timeout_keep_alive=max(1, round(settings.keep_alive_timeout)),
        limit_concurrency=settings.max_connections,
        # X-Forwarded-For and -Proto are believed only from the configured proxies: uvicorn's
        # default trusts 127.0.0.1, which lets any local process (a run's step) choose the
        # address the login throttle and the audit log see.
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=list(settings.trusted_proxies),
    )
    server = QuietServer(config)
    print(f"Orchestra {settings.role} listening on {url}", flush=True)  # noqa: T201
    workers: list[subprocess.Popen[bytes]] = []
    # uvicorn shuts down on SIGTERM, then raises the signal again with the handler it found:
    # with the default one the process would die there, before stopping its local workers.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        if local_workers:
            workers = asyncio.run(
                _start_local_workers(
                    services, url, local_workers, worker_sandbox, workers_dir, worker_run_as
                )
            )
        with asyncio.Runner(loop_factory=loop_factory(config)) as runner:
            runner.run(_serve(server, sock))
    finally:
        _stop(workers)


def loop_factory(config: uvicorn.Config) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (uvicorn[standard] brings it), as `uvicorn.run`
    would choose: with a thousand connected workers, the master's idle CPU and the time to
    register them are mostly the event loop's and its transports' per-frame work, which
    uvloop does in C (W3: registering 1,000 workers 8.9 s to 5.6 s, idle 5.3% to 4.0%)."""
    return config.get_loop_factory()


class QuietServer(uvicorn.Server):
    """uvicorn's server, with its housekeeping loop waking once a second instead of ten times:
    an idle master's CPU is mostly its wake-ups (W3). That loop refreshes the Date header,
    which has a one-second resolution, and notices a request to exit, which now wakes it at
    once instead."""

    _wake: asyncio.Event | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    async def main_loop(self) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        ticks = 0
        should_exit = await self.on_tick(ticks)
        while not should_exit:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)
            ticks = (ticks + 10) % 864_000  # a second's worth of uvicorn's 0.1 s ticks
            should_exit = await self.on_tick(ticks)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


async def _serve(server: uvicorn.Server, sock: socket.socket) -> None:
    await server.serve(sockets=[sock])


def local_workers_dir(settings: Settings, given: Path | None) -> Path:
    """Where local workers keep their journals and workspaces: `given`, or <data dir>-workers
    beside the server's data directory; never in it, which their steps must not reach."""
    data_dir = Path(settings.data_dir).resolve()
    directory = (given or data_dir.with_name(f"{data_dir.name}-workers")).resolve()
    if directory == data_dir or data_dir in directory.parents:
        raise InvalidInput(
            f"--worker-data-dir {directory} is inside the server's data directory {data_dir}: "
            "local workers' steps must not reach the server's files; choose a directory beside it"
        )
    return directory


def _server_files(settings: Settings) -> list[Path]:
    """The server's files outside its data directory: a SQLite database, the key file."""
    files = _sqlite_files(settings.resolved_database_url)
    if settings.secret_key_file is not None:
        files.append(settings.secret_key_file.resolve())
    return files


def _describe_reach(sandbox: str, run_as: str | None, hidden: list[str]) -> str:
    """What local workers' steps can reach, one line for the startup log."""
    user = f"as the OS user {run_as}" if run_as else "as the server's own OS user"
    paths = ", ".join(hidden[1::2])  # the values of the --hide options
    if sandbox == "always":
        where = f"every one in a sandbox hiding {paths} and the workers' journals"
    elif sandbox == "auto":
        where = f"in a sandbox hiding {paths} only when their job asks, the others without"
    else:
        where = "WITHOUT a sandbox"
    if run_as:
        reach = f"{run_as} cannot read the server's files (0700/0600) nor the workers' journals"
    elif sandbox == "always":
        reach = "--worker-run-as USER would add a boundary of the OS besides"
    else:
        reach = (
            "unsandboxed, they can read and write whatever the server can: its database, its "
            "key, its data directory (--worker-sandbox always or --worker-run-as USER prevent it)"
        )
    return f"local workers run their steps {user}, {where}; {reach}"


async def _start_local_workers(
    services: Services,
    url: str,
    count: int,
    sandbox: str,
    workers_dir: Path,
    run_as: str | None = None,
) -> list[subprocess.Popen[bytes]]:
    """Start `count` workers as child processes, with a fresh token of the local worker user
    given on a pipe (neither in their arguments nor in their environment), their data in
    `workers_dir`, their sandboxed steps blind to this server's files, their steps run as
    the OS user `run_as` if given."""
    from orchestra.errors import Conflict

    try:
        await services.users.create_user(
            LOCAL_WORKER_USER, display_name="Local workers", roles=["worker"]
        )
    except Conflict:
        pass
    # One token per server start; the previous start's token is revoked.
    tokens, _ = await services.users.list_tokens(LOCAL_WORKER_USER, None, 500)
    for token in tokens:
        if token.description == LOCAL_WORKERS_TOKEN:
            await services.users.revoke_token(LOCAL_WORKER_USER, token.identifier)
    _token, secret = await services.users.create_token(LOCAL_WORKER_USER, LOCAL_WORKERS_TOKEN, None)
    await services.db.dispose()
    data_dir = Path(services.settings.data_dir).resolve()
    # What a server's local worker's steps never get: its credentials, the database's URL, the
    # instance key (nor its file, hidden below with the data directory that holds it by default).
    env = {k: v for k, v in os.environ.items() if k not in SERVER_ONLY_VARIABLES}
    hidden = ["--hide", str(data_dir)]
    key_file = services.settings.secret_key_file
    if key_file is not None and data_dir not in key_file.resolve().parents:
        hidden += ["--hide", str(key_file.resolve())]
    for path in _sqlite_files(services.settings.resolved_database_url):
        if data_dir not in path.parents:
            hidden += ["--hide", str(path)]
    workers_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    # With --worker-run-as, the steps' user passes through it (not lists it) to its workspaces.
    workers_dir.chmod(0o711 if run_as else 0o700)
    run_as_arguments = [] if run_as is None else ["--run-as", run_as]
    log.info("local workers keep their data in %s", workers_dir)
    log.info("%s", _describe_reach(sandbox, run_as, hidden))
    processes = []
    for index in range(1, count + 1):
        command = [
            sys.executable,
            "-m",
            "orchestra",
            "worker",
            "--url",
            url,
            "--user",
            LOCAL_WORKER_USER,
            "--token",
            "-",
            "--identifier",
            f"local-{index}",
            "--data-dir",
            str(workers_dir / f"local-{index}"),
            "--sandbox",
            sandbox,
            *hidden,
            *run_as_arguments,
        ]
        process = subprocess.Popen(command, env=env, stdin=subprocess.PIPE)
        assert process.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            process.stdin.write(secret.encode() + b"\n")
        process.stdin.close()
        processes.append(process)
    return processes


SERVER_ONLY_VARIABLES = frozenset(
    {
        "ORCHESTRA_TOKEN",
        "ORCHESTRA_DATABASE_URL",
        "ORCHESTRA_SECRET_KEY",
        "ORCHESTRA_SECRET_KEY_FILE",
    }
)


def _sqlite_files(database_url: str) -> list[Path]:
    """The files of a SQLite database (with its journal, WAL and shared memory); none for
    PostgreSQL."""
    prefix = "sqlite:///"
    if not database_url.startswith(prefix):
        return []
    path = Path(database_url[len(prefix) :].split("?", 1)[0])
    if not path.name or str(path) == ":memory:":
        return []
    path = path.resolve()
    return [path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal"))]


def _check_sandbox(run_as: RunAs | None) -> None:
    """Local workers sandbox every step by default: say at once when this machine cannot (for
    their steps' user, `run_as`)."""
    from orchestra.worker.sandbox import prepare

    found = prepare("always", run_as=run_as)
    if not found.available:
        raise InvalidInput(
            f"the local workers run every step in a sandbox, and {found.problem}: install "
            "bubblewrap, or start them with --worker-sandbox auto (or never)"
        )


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
