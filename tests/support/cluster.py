"""A cluster: `orchestra server` processes (all-in-one, or API and master apart) and
`orchestra worker` processes on one database, under one directory, with the API client of its
administrator."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.support.accounts import WORKER_USER, Credentials
from tests.support.api import Api
from tests.support.databases import ClusterDatabases
from tests.support.processes import API, Process, TaggedProcesses, orchestra_argv
from tests.support.procfs import child_pids, command_line
from tests.support.waiting import wait_until

# Short settings for tests, so that liveness, aborts and leases play out in seconds.
TEST_SETTINGS = {
    "ORCHESTRA_HEARTBEAT": "1",
    "ORCHESTRA_ABORT_GRACE": "2",
    "ORCHESTRA_LEASE": "120",
}


class Cluster(TaggedProcesses):
    """The servers and workers of one test (or benchmark), on one database; `settings`
    (ORCHESTRA_* variables) go to every process. Nothing runs until a start_* method is called."""

    def __init__(
        self,
        directory: Path,
        database_url: str,
        credentials: Credentials,
        settings: Mapping[str, str] | None = None,
        *,
        api_timeout: float = 30.0,
    ) -> None:
        super().__init__(directory, settings)
        self.database_url = database_url
        self.admin_token = credentials.admin_token
        self.worker_token = credentials.worker_token
        self.api_timeout = api_timeout
        self.server_dir = directory / "server"
        self.server: Process | None = None
        self.workers: dict[str, Process] = {}  # the last process started for each identifier
        self.url = ""  # the server the API client and new workers use
        self._api: Api | None = None

    @property
    def engine(self) -> str:
        return "sqlite" if self.database_url.startswith("sqlite") else "postgresql"

    # The API.

    @property
    def api(self) -> Api:
        """The administrator's client of the server at `url`."""
        assert self.url, "start a server first"
        if self._api is None:
            self._api = self.client()
        return self._api

    def use(self, url: str) -> Api:
        """Make `url` the cluster's server (for `api` and `start_worker`)."""
        self.url = url
        if self._api is not None:
            self._api.close()
            self._api = None
        return self.api

    def client(self, url: str | None = None, token: str | None = None) -> Api:
        """Another client (the caller closes it), by default the administrator's on `url`."""
        return Api(url or self.url, token or self.admin_token, self.api_timeout)

    def client_env(self) -> dict[str, str]:
        """The environment of a CLI client (`orchestra run ...`) as the administrator."""
        return {
            **self.env(),
            "ORCHESTRA_URL": self.url,
            "ORCHESTRA_USER": "admin",
            "ORCHESTRA_TOKEN": self.admin_token,
        }

    @property
    def ws_url(self) -> str:
        """Where workers connect."""
        return self.url.replace("http://", "ws://", 1) + API + "/workers/connect"

    # Servers.

    def start_role(
        self,
        name: str,
        role: str = "all",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        settings: Mapping[str, str] | None = None,
        database_url: str | None = None,
        data_dir: Path | None = None,
        arguments: Sequence[str] = (),
        timeout: float = 60.0,
    ) -> tuple[Process, str]:
        """Start `orchestra server --role ROLE` (data in DIRECTORY/NAME unless told otherwise)
        and wait until it answers health; (process, URL)."""
        argv = orchestra_argv("server", "--role", role, "--host", host, "--port", str(port))
        argv += ["--database", database_url or self.database_url]
        argv += ["--data-dir", str(data_dir or self.directory / name), *arguments]
        process = self.spawn(name, argv, settings)
        return process, process.wait_until_serving(timeout)

    def start_server(
        self, port: int = 0, settings: Mapping[str, str] | None = None, timeout: float = 60.0
    ) -> Process:
        """Start the all-in-one server (data in DIRECTORY/server, kept across restarts) and
        make it the cluster's."""
        name = self.unique("server")
        process, url = self.start_role(
            name, port=port, settings=settings, data_dir=self.server_dir, timeout=timeout
        )
        self.server = process
        self.use(url)
        return process

    def start(self, settings: Mapping[str, str] | None = None, port: int = 0) -> Cluster:
        """Start the server and create project `p`."""
        self.start_server(port=port, settings=settings)
        self.api.put_project("p")
        return self

    # Workers.

    def worker_dir(self, identifier: str) -> Path:
        return self.directory / "workers" / identifier

    def start_worker(
        self,
        identifier: str,
        properties: Mapping[str, str] | None = None,
        executors: int = 1,
        *,
        urls: Sequence[str] | None = None,
        user: str = WORKER_USER,
        token: str | None = None,
        data_dir: Path | None = None,
        settings: Mapping[str, str] | None = None,
        wrapper: Sequence[str] = (),
        wait: bool = True,
    ) -> Process:
        """Start `orchestra worker` on the cluster's server (or on `urls`), as the workers'
        user (data in DIRECTORY/workers/ID unless told otherwise; `wrapper` is a command it
        runs under, such as `ip netns exec NS`) and, unless told otherwise, wait until the API
        shows it active."""
        argv = orchestra_argv("worker", "--url", ",".join(urls or [self.url]))
        argv += ["--user", user, "--token", token or self.worker_token]
        argv += ["--identifier", identifier, "--executors", str(executors)]
        argv += ["--data-dir", str(data_dir or self.worker_dir(identifier))]
        for key, value in (properties or {}).items():
            argv += ["--property", f"{key}={value}"]
        process = self.spawn(self.unique(f"worker-{identifier}"), [*wrapper, *argv], settings)
        self.workers[identifier] = process
        if wait:
            self.wait_for_workers([identifier])
        return process

    def wait_for_workers(self, identifiers: Iterable[str], timeout: float = 60.0) -> None:
        """Until the API shows each of these workers active; fails at once if the process of
        one of them has exited."""
        wanted = list(identifiers)

        def active() -> bool:
            for identifier in wanted:
                process = self.workers.get(identifier)
                if process is not None and not process.running():
                    raise process.exited()
            shown = [self.api.worker(identifier) for identifier in wanted]
            return all(worker is not None and worker["is_active"] is True for worker in shown)

        wait_until(active, timeout, f"workers {wanted} to be active")

    def wait_for_active(self, identifier: str, process: Process, timeout: float = 30.0) -> None:
        """Until the API shows the worker that `process` runs active."""
        self.workers[identifier] = process
        self.wait_for_workers([identifier], timeout)

    def spawner_of(self, worker: Process) -> int:
        """The pid of the worker agent's spawner (its `orchestra.worker.spawner` child)."""
        pids = [
            pid for pid in child_pids(worker.pid) if "orchestra.worker.spawner" in command_line(pid)
        ]
        assert len(pids) == 1, f"expected one spawner under {worker.pid}, found {pids}"
        return pids[0]

    def close(self) -> None:
        """Close the API client, stop every process (the last started first), then kill
        whatever carries the cluster's tag."""
        if self._api is not None:
            self._api.close()
            self._api = None
        super().close()


@contextmanager
def open_cluster(
    databases: ClusterDatabases,
    directory: Path,
    engine: str,
    settings: Mapping[str, str] | None = None,
    cluster_class: type[Cluster] = Cluster,
    **options: float,
) -> Iterator[Cluster]:
    """A Cluster on a fresh database of `engine` under `directory`, closed (and its database
    dropped) afterwards."""
    directory.mkdir(parents=True, exist_ok=True)
    with databases.database(engine, directory) as (url, credentials):
        cluster = cluster_class(directory, url, credentials, settings, **options)
        try:
            yield cluster
        finally:
            cluster.close()
