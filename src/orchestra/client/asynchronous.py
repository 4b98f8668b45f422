"""`AsyncClient`: the same methods as `Client`, as coroutines (and async iterators)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
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


class AsyncClient:
    """Orchestra's API at `url` (default ORCHESTRA_URL), as `user` (ORCHESTRA_USER) with
    `token` (ORCHESTRA_TOKEN), for asyncio. Every method raises ApiError when the API refuses
    the call."""

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
        self._http = httpx.AsyncClient(**self.connection.httpx_options(timeout))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def request(
        self, method: str, path: str, *, params: JSON | None = None, json: Any = None
    ) -> Any:
        """The JSON answer of `method path` (a path under /api/v1); None for an empty one."""
        response = await self._send(method, path, params=params, json=json)
        return content_of(response)

    async def get(self, path: str, **params: Any) -> Any:
        query = {k: v for k, v in params.items() if v is not None} or None
        return await self.request("GET", path, params=query)

    async def post(self, path: str, json: Any = None) -> Any:
        return await self.request("POST", path, json=json)

    async def put(self, path: str, json: Any = None) -> Any:
        return await self.request("PUT", path, json=json)

    async def patch(self, path: str, json: Any = None) -> Any:
        return await self.request("PATCH", path, json=json)

    async def delete(self, path: str) -> Any:
        return await self.request("DELETE", path)

    async def items(self, path: str, **filters: Any) -> AsyncIterator[JSON]:
        """Every item of a collection, page after page (`page_size` at a time)."""
        cursor: str | None = None
        while True:
            page = await self.request(
                "GET", path, params=c.page_params(filters, cursor, self.page_size)
            )
            for item in page["items"]:
                yield item
            cursor = page.get("next_cursor")
            if not cursor:
                return

    async def trigger(self, project: str, job: str, parameters: JSON | None = None) -> JSON:
        """The new (pending) run of a job."""
        body = {"parameters": parameters or {}}
        result: JSON = await self.post(f"/projects/{project}/jobs/{job}/trigger", body)
        return result

    async def run(self, project: str, run: str) -> JSON:
        result: JSON = await self.get(f"/projects/{project}/runs/{run}")
        return result

    def runs(self, project: str, **filters: Any) -> AsyncIterator[JSON]:
        """Every run of a project, newest first (filters: job, status, worker)."""
        return self.items(f"/projects/{project}/runs", **filters)

    def artifacts(self, project: str, run: str) -> AsyncIterator[JSON]:
        """A run's stored files: {"path", "size", "sha256"} each, by path."""
        return self.items(f"/projects/{project}/runs/{run}/artifacts")

    async def download(
        self, project: str, run: str, path: str | None = None, output: Path | str = "."
    ) -> list[Path]:
        """As Client.download: the artifact `path` (every one when None) written under the
        folder `output` at its path there, checked; never outside `output` (UnsafePath)."""
        folder = Path(output)
        folder.mkdir(parents=True, exist_ok=True)
        wanted = [item async for item in self.artifacts(project, run)]
        if path is not None:
            wanted = [a for a in wanted if a["path"] == path]
            if not wanted:
                raise ApiError(404, f"no artifact {path!r} in run {run!r}")
        for item in wanted:
            artifact_files.target(folder, item["path"])  # every path checked before any write
        written = []
        for item in wanted:
            response = await self._send(
                "GET",
                f"/projects/{project}/runs/{run}/artifacts/{quote(item['path'])}",
                stream=True,
                timeout=c.stream_timeout(self._timeout),
            )
            try:
                if response.status_code >= 400:
                    await response.aread()
                    raise error_of(response)
                writer = artifact_files.Writer(folder, item["path"], item["sha256"])
                try:
                    async for piece in response.aiter_bytes(1 << 20):
                        await asyncio.to_thread(writer.add, piece)
                    written.append(writer.finish())
                except BaseException:
                    writer.abandon()
                    raise
            except httpx.TransportError as exc:
                raise Unreachable(0, f"connection to {self.url} lost: {exc}") from None
            finally:
                await response.aclose()
        return written

    async def rerun(self, project: str, run: str) -> JSON:
        """A new run of the same job with the same parameters."""
        result: JSON = await self.post(f"/projects/{project}/runs/{run}/rerun")
        return result

    async def wait(
        self, project: str, run: str, timeout: float | None = None, *, follow_retries: bool = True
    ) -> JSON:
        """The run once final (with `follow_retries`, its last attempt's); TimeoutError after
        `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.2
        while True:
            state = await self.run(project, run)
            if state["status"] in c.FINAL_RUN_STATUSES:
                if not (follow_retries and state.get("retried_by")):
                    return state
                run = state["retried_by"]
                continue
            pause = await _pause(deadline, pause, f"run {run} is still {state['status']}")

    async def log(self, project: str, run: str) -> str:
        """A run's whole log as it is now."""
        chunks = [chunk async for chunk in self.stream_log(project, run)]
        return b"".join(chunks).decode("utf-8", errors="replace")

    async def stream_log(
        self,
        project: str,
        run: str,
        *,
        offset: int = 0,
        follow: bool = False,
        step: int | None = None,
    ) -> AsyncIterator[bytes]:
        """A run's log (or one step's) in chunks from byte `offset`; with `follow`, until the
        run ends."""
        path = f"/projects/{project}/runs/{run}" + ("" if step is None else f"/steps/{step}")
        response = await self._send(
            "GET",
            path + "/log",
            params=c.log_params(offset, follow),
            stream=True,
            timeout=c.stream_timeout(self._timeout),
        )
        try:
            if response.status_code >= 400:
                await response.aread()
                raise error_of(response)
            try:
                async for chunk in response.aiter_bytes():
                    yield chunk
            except httpx.TransportError as exc:
                raise Unreachable(0, f"connection to {self.url} lost: {exc}") from None
        finally:
            await response.aclose()

    async def trigger_pipeline(
        self, project: str, pipeline: str, parameters: JSON | None = None
    ) -> JSON:
        """The new pipeline run."""
        body = {"parameters": parameters or {}}
        result: JSON = await self.post(f"/projects/{project}/pipelines/{pipeline}/trigger", body)
        return result

    async def pipeline_run(self, project: str, run: str) -> JSON:
        result: JSON = await self.get(f"/projects/{project}/pipeline-runs/{run}")
        return result

    async def wait_pipeline(self, project: str, run: str, timeout: float | None = None) -> JSON:
        """The pipeline run once final; TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.2
        while True:
            state = await self.pipeline_run(project, run)
            if state["status"] not in c.ACTIVE_PIPELINE_STATUSES:
                return state
            pause = await _pause(deadline, pause, f"pipeline run {run} is still {state['status']}")

    async def apply(self, path_or_document: Path | str | JSON) -> JSON:
        """Create or update the projects of a YAML file (a path) or of a mapping."""
        result: JSON = await self.post("/apply", apply_body(path_or_document))
        return result

    async def _send(
        self, method: str, path: str, *, stream: bool = False, **kwargs: Any
    ) -> httpx.Response:
        """The answer, after the retries the policy allows (retries.py says which)."""
        try:
            request = self._http.build_request(method, c.api_path(path), **kwargs)
        except httpx.InvalidURL as exc:
            raise ClientError(f"invalid URL {self.url}: {exc}") from None
        attempt = 0
        while True:
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.UnsupportedProtocol as exc:
                raise ClientError(f"cannot reach {self.url}: {exc}") from None
            except httpx.TransportError as exc:
                if attempt >= self.retry.retries or not retries_failure(method, exc):
                    raise Unreachable(0, f"cannot reach {self.url}: {exc}") from None
                await asyncio.sleep(self.retry.delay(attempt))
            else:
                if attempt >= self.retry.retries or not retries_answer(
                    method, response.status_code
                ):
                    return response
                await response.aclose()
                await asyncio.sleep(self.retry.delay(attempt, response))
            attempt += 1


async def _pause(deadline: float | None, pause: float, what: str) -> float:
    """Sleep before the next look (longer each time, up to 2 s); TimeoutError past the deadline."""
    if deadline is not None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(what)
        pause = min(pause, left)
    await asyncio.sleep(pause)
    return min(pause * 1.5, 2.0)
