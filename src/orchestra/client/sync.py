"""`Client`: Orchestra's API from Python, blocking."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from orchestra.client import artifact_files
from orchestra.client import connection as c
from orchestra.client.documents import apply_body
from orchestra.client.errors import ApiError, ClientError, Unreachable
from orchestra.client.responses import content_of, error_of
from orchestra.client.retries import RetryPolicy, retries_answer, retries_failure

JSON = dict[str, Any]


class Client:
    """Orchestra's API at `url` (default ORCHESTRA_URL), as `user` (ORCHESTRA_USER) with
    `token` (ORCHESTRA_TOKEN). Every method raises ApiError when the API refuses the call."""

    def __init__(
        self,
        url: str | None = None,
        *,
        user: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        page_size: int = c.PAGE_LIMIT,
    ) -> None:
        self.connection = c.Connection.resolve(url, user, token)
        self.url = self.connection.url
        self.retry = retry or RetryPolicy()
        self.page_size = page_size
        self._timeout = timeout
        self._http = httpx.Client(**self.connection.httpx_options(timeout))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # The API as it is: any route, its JSON.

    def request(
        self, method: str, path: str, *, params: JSON | None = None, json: Any = None
    ) -> Any:
        """The JSON answer of `method path` (a path under /api/v1); None for an empty one."""
        response = self._send(method, path, params=params, json=json)
        return content_of(response)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=_query(params))

    def post(self, path: str, json: Any = None) -> Any:
        return self.request("POST", path, json=json)

    def put(self, path: str, json: Any = None) -> Any:
        return self.request("PUT", path, json=json)

    def patch(self, path: str, json: Any = None) -> Any:
        return self.request("PATCH", path, json=json)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def items(self, path: str, **filters: Any) -> Iterator[JSON]:
        """Every item of a collection, page after page (`page_size` at a time)."""
        cursor: str | None = None
        while True:
            page = self.request("GET", path, params=c.page_params(filters, cursor, self.page_size))
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    # Runs.

    def trigger(self, project: str, job: str, parameters: JSON | None = None) -> JSON:
        """The new (pending) run of a job."""
        body = {"parameters": parameters or {}}
        result: JSON = self.post(f"/projects/{project}/jobs/{job}/trigger", body)
        return result

    def run(self, project: str, run: str) -> JSON:
        result: JSON = self.get(f"/projects/{project}/runs/{run}")
        return result

    def runs(self, project: str, **filters: Any) -> Iterator[JSON]:
        """Every run of a project, newest first (filters: job, status, worker)."""
        return self.items(f"/projects/{project}/runs", **filters)

    def rerun(self, project: str, run: str) -> JSON:
        """A new run of the same job with the same parameters."""
        result: JSON = self.post(f"/projects/{project}/runs/{run}/rerun")
        return result

    def wait(
        self, project: str, run: str, timeout: float | None = None, *, follow_retries: bool = True
    ) -> JSON:
        """The run once final (with `follow_retries`, its last attempt's); TimeoutError after
        `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.2
        while True:
            state = self.run(project, run)
            if state["status"] in c.FINAL_RUN_STATUSES:
                if not (follow_retries and state.get("retried_by")):
                    return state
                run = state["retried_by"]
                continue
            pause = _pause(deadline, pause, f"run {run} is still {state['status']}")

    def log(self, project: str, run: str) -> str:
        """A run's whole log as it is now."""
        return b"".join(self.stream_log(project, run)).decode("utf-8", errors="replace")

    def stream_log(
        self,
        project: str,
        run: str,
        *,
        offset: int = 0,
        follow: bool = False,
        step: int | None = None,
    ) -> Iterator[bytes]:
        """A run's log (or one step's) in chunks from byte `offset`; with `follow`, until the
        run ends."""
        path = f"/projects/{project}/runs/{run}" + ("" if step is None else f"/steps/{step}")
        response = self._send(
            "GET",
            path + "/log",
            params=c.log_params(offset, follow),
            stream=True,
            timeout=c.stream_timeout(self._timeout),
        )
        try:
            if response.status_code >= 400:
                response.read()
                raise error_of(response)
            try:
                yield from response.iter_bytes()
            except httpx.TransportError as exc:
                raise Unreachable(0, f"connection to {self.url} lost: {exc}") from None
        finally:
            response.close()

    # Artifacts.

    def artifacts(self, project: str, run: str) -> Iterator[JSON]:
        """A run's stored files: {"path", "size", "sha256"} each, by path."""
        return self.items(f"/projects/{project}/runs/{run}/artifacts")

    def download(
        self, project: str, run: str, path: str | None = None, output: Path | str = "."
    ) -> list[Path]:
        """Write a run's artifact `path` (every one when None) under the folder `output`, at
        its path there; the files written. A path that would lead out of `output` (absolute,
        with `..`) is refused (UnsafePath); each file's SHA-256 is checked."""
        folder = Path(output)
        folder.mkdir(parents=True, exist_ok=True)
        wanted = list(self.artifacts(project, run))
        if path is not None:
            wanted = [a for a in wanted if a["path"] == path]
            if not wanted:
                raise ApiError(404, f"no artifact {path!r} in run {run!r}")
        for item in wanted:
            artifact_files.target(folder, item["path"])  # every path checked before any write
        written = []
        for item in wanted:
            response = self._send(
                "GET",
                f"/projects/{project}/runs/{run}/artifacts/{quote(item['path'])}",
                stream=True,
                timeout=c.stream_timeout(self._timeout),
            )
            try:
                if response.status_code >= 400:
                    response.read()
                    raise error_of(response)
                pieces = response.iter_bytes(1 << 20)
                written.append(artifact_files.write(folder, item["path"], pieces, item["sha256"]))
            except httpx.TransportError as exc:
                raise Unreachable(0, f"connection to {self.url} lost: {exc}") from None
            finally:
                response.close()
        return written

    # Pipelines.

    def trigger_pipeline(self, project: str, pipeline: str, parameters: JSON | None = None) -> JSON:
        """The new pipeline run."""
        body = {"parameters": parameters or {}}
        result: JSON = self.post(f"/projects/{project}/pipelines/{pipeline}/trigger", body)
        return result

    def pipeline_run(self, project: str, run: str) -> JSON:
        result: JSON = self.get(f"/projects/{project}/pipeline-runs/{run}")
        return result

    def wait_pipeline(self, project: str, run: str, timeout: float | None = None) -> JSON:
        """The pipeline run once final; TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.2
        while True:
            state = self.pipeline_run(project, run)
            if state["status"] not in c.ACTIVE_PIPELINE_STATUSES:
                return state
            pause = _pause(deadline, pause, f"pipeline run {run} is still {state['status']}")

    # Configuration as code.

    def apply(self, path_or_document: Path | str | JSON) -> JSON:
        """Create or update the projects of a YAML file (a path) or of a mapping."""
        result: JSON = self.post("/apply", apply_body(path_or_document))
        return result

    def _send(
        self, method: str, path: str, *, stream: bool = False, **kwargs: Any
    ) -> httpx.Response:
        """The answer, after the retries the policy allows (retries.py says which)."""
        request = self._build(method, path, kwargs)
        attempt = 0
        while True:
            try:
                response = self._http.send(request, stream=stream)
            except httpx.UnsupportedProtocol as exc:
                raise ClientError(f"cannot reach {self.url}: {exc}") from None
            except httpx.TransportError as exc:
                if attempt >= self.retry.retries or not retries_failure(method, exc):
                    raise Unreachable(0, f"cannot reach {self.url}: {exc}") from None
                time.sleep(self.retry.delay(attempt))
            else:
                if attempt >= self.retry.retries or not retries_answer(
                    method, response.status_code
                ):
                    return response
                response.close()
                time.sleep(self.retry.delay(attempt, response))
            attempt += 1

    def _build(self, method: str, path: str, kwargs: dict[str, Any]) -> httpx.Request:
        try:
            return self._http.build_request(method, c.api_path(path), **kwargs)
        except httpx.InvalidURL as exc:
            raise ClientError(f"invalid URL {self.url}: {exc}") from None


def _query(params: dict[str, Any]) -> dict[str, Any] | None:
    return {k: v for k, v in params.items() if v is not None} or None


def _pause(deadline: float | None, pause: float, what: str) -> float:
    """Sleep before the next look (longer each time, up to 2 s); TimeoutError past the deadline."""
    if deadline is not None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(what)
        pause = min(pause, left)
    time.sleep(pause)
    return min(pause * 1.5, 2.0)
