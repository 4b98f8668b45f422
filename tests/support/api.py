"""An HTTP client of the API (/api/v1) with a token, and helpers for projects, jobs, runs and
workers: trigger a run, wait for its status or for a project to drain, read its log."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import httpx

from tests.support.processes import API
from tests.support.waiting import wait_until

FINAL_STATUSES = frozenset({"succeeded", "failed", "aborted", "cancelled", "exception"})
Run = str | Mapping[str, Any]  # a run's identifier, or the run as the API returned it


def run_id(run: Run) -> str:
    return run if isinstance(run, str) else str(run["identifier"])


class Api:
    """An httpx client on URL/api/v1 that sends `token` as a bearer token."""

    def __init__(self, url: str, token: str, timeout: float = 30.0) -> None:
        self.url = url
        self.token = token
        self.http = httpx.Client(
            base_url=url + API,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(timeout),
        )

    def close(self) -> None:
        self.http.close()

    def request(
        self, method: str, path: str, expect: int | tuple[int, ...] | None = None, **kwargs: Any
    ) -> httpx.Response:
        """The response; with `expect`, fails unless its status is that (or one of those)."""
        response = self.http.request(method, path, **kwargs)
        wanted = (expect,) if isinstance(expect, int) else expect
        if wanted is not None and response.status_code not in wanted:
            raise AssertionError(
                f"{method} {path}: expected {expect}, got {response.status_code}: "
                f"{response.text[:500]}"
            )
        return response

    def pages(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Every item of a listing, following its cursor 500 items at a time."""
        cursor: str | None = None
        while True:
            query = {"limit": 500, **params, **({"cursor": cursor} if cursor else {})}
            page = self.request("GET", path, 200, params=query).json()
            yield from (dict(item) for item in page["items"])
            cursor = page["next_cursor"]
            if not cursor:
                return

    # Projects and jobs.

    def put_project(self, project: str = "p", **fields: Any) -> dict[str, Any]:
        return dict(self.request("PUT", f"/projects/{project}", (200, 201), json=fields).json())

    def patch_project(self, project: str, **fields: Any) -> dict[str, Any]:
        return dict(self.request("PATCH", f"/projects/{project}", 200, json=fields).json())

    def put_job(
        self,
        job: str,
        steps: Iterable[list[str] | Mapping[str, Any]],
        project: str = "p",
        **fields: Any,
    ) -> dict[str, Any]:
        """Create or replace a job; each step is a command, or a mapping with name and command."""
        body = {
            **fields,
            "steps": [
                dict(s) if isinstance(s, Mapping) else {"name": f"step{i}", "command": s}
                for i, s in enumerate(steps)
            ],
        }
        path = f"/projects/{project}/jobs/{job}"
        return dict(self.request("PUT", path, (200, 201), json=body).json())

    def patch_job(self, job: str, project: str = "p", **fields: Any) -> dict[str, Any]:
        path = f"/projects/{project}/jobs/{job}"
        return dict(self.request("PATCH", path, 200, json=fields).json())

    # Runs.

    def trigger(
        self, job: str, project: str = "p", parameters: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        path = f"/projects/{project}/jobs/{job}/trigger"
        body = {"parameters": dict(parameters or {})}
        return dict(self.request("POST", path, 201, json=body).json())

    def get_run(self, run: Run, project: str = "p") -> dict[str, Any]:
        """GET /projects/P/runs/R (a pending run there also says why it waits)."""
        return dict(self.request("GET", f"/projects/{project}/runs/{run_id(run)}", 200).json())

    def runs(self, project: str = "p", **filters: str) -> list[dict[str, Any]]:
        """Every run of the project (that the filters keep), newest first."""
        return list(self.pages(f"/projects/{project}/runs", **filters))

    def cancel(self, run: Run, project: str = "p") -> httpx.Response:
        return self.request("POST", f"/projects/{project}/runs/{run_id(run)}/cancel")

    def abort(self, run: Run, project: str = "p") -> httpx.Response:
        return self.request("POST", f"/projects/{project}/runs/{run_id(run)}/abort")

    def wait_for_status(
        self, run: Run, statuses: str | Iterable[str], timeout: float = 30.0, project: str = "p"
    ) -> dict[str, Any]:
        """Poll the run until its status is one of `statuses`; fail at once if it reaches
        another final status, and after `timeout` seconds."""
        wanted = {statuses} if isinstance(statuses, str) else set(statuses)
        deadline = time.monotonic() + timeout
        while True:
            current = self.get_run(run, project)
            if current["status"] in wanted:
                return current
            if current["status"] in FINAL_STATUSES:
                raise AssertionError(
                    f"run {current['identifier']} ended {current['status']} "
                    f"(reason: {current.get('reason')!r}), not {sorted(wanted)}: {current}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"run {current['identifier']} still {current['status']} after "
                    f"{timeout:g}s, not {sorted(wanted)}"
                )
            time.sleep(0.05)

    def drained(self, project: str = "p") -> bool:
        """No run of the project is pending or running."""
        return not self._any_run(project, "pending") and not self._any_run(project, "running")

    def wait_drained(self, timeout: float, what: str, project: str = "p") -> None:
        """Until `drained`: every 0.25 s while runs are pending, then every 10 ms (the last
        few running runs end within a few of their cycles), so that the end is seen within
        about 10 ms, not 250, without polling the server 100 times a second meanwhile."""
        deadline = time.monotonic() + timeout
        wait_until(lambda: not self._any_run(project, "pending"), timeout, what, interval=0.25)
        wait_until(lambda: self.drained(project), deadline - time.monotonic(), what, 0.01)

    def _any_run(self, project: str, status: str) -> bool:
        params = {"status": status, "limit": 1}
        page = self.request("GET", f"/projects/{project}/runs", 200, params=params).json()
        return bool(page["items"])

    def log(
        self, run: Run, project: str = "p", *, step: int | None = None, offset: int | None = None
    ) -> bytes:
        path = f"/projects/{project}/runs/{run_id(run)}"
        path += "/log" if step is None else f"/steps/{step}/log"
        params = {} if offset is None else {"offset": offset}
        return self.request("GET", path, 200, params=params).content

    # Workers.

    def workers(self) -> list[dict[str, Any]]:
        return list(self.pages("/workers"))

    def worker(self, identifier: str) -> dict[str, Any] | None:
        response = self.request("GET", f"/workers/{identifier}", (200, 404))
        return None if response.status_code == 404 else dict(response.json())

    def patch_worker(self, identifier: str, **fields: Any) -> dict[str, Any]:
        return dict(self.request("PATCH", f"/workers/{identifier}", 200, json=fields).json())

    def wait_for_worker(self, identifier: str, is_active: bool, timeout: float = 30.0) -> None:
        def seen() -> bool:
            worker = self.worker(identifier)
            return worker is not None and worker["is_active"] is is_active

        wait_until(seen, timeout, f"worker {identifier} is_active={is_active}")
