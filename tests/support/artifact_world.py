"""The world of the artifact tests (tests/integration/artifacts): users with tokens, project p
with job j, workers `w` (of user wk) and `w2` (of user other), runs made to run on them, and the
upload protocol as a worker speaks it."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import sqlalchemy as sa

from orchestra.protocol import messages as m
from orchestra.services.container import Services
from orchestra.services.master_side import MasterSide
from orchestra.storage.schema import run as run_table
from tests.helpers import RecordingClient, auth

MIB = 1 << 20
CHUNK = 5 * MIB
MAX_FILE = 24 * MIB
MAX_RUN = 40 * MIB
STEPS = [{"name": "s", "command": ["true"]}]


class World:
    def __init__(self, services: Services, api: RecordingClient) -> None:
        self.services = services
        self.api = api
        self.tokens: dict[str, str] = {}

    async def setup(self) -> None:
        users = self.services.users
        for name, roles in (
            ("wk", ["worker"]),
            ("other", ["worker"]),
            ("viewer", ["viewer"]),
            ("admin", ["administrator"]),
        ):
            await users.create_user(name, roles=roles)
            self.tokens[name] = (await users.create_token(name, "test", None))[1]
        await self.services.projects.create_project({"identifier": "p"})
        job = {"identifier": "j", "steps": STEPS, "artifacts": [{"path": "out/**"}]}
        await self.services.projects.create_job("p", job)
        registry = MasterSide.build(self.services, "m1").registry
        for owner, worker in (("wk", "w"), ("other", "w2")):
            hello = m.Hello(
                protocol=m.PROTOCOL_VERSION,
                identifier=worker,
                display_name=worker,
                version="test",
                properties={},
                executors=1,
            )
            await registry.register(owner, hello)

    async def running_run(self, worker: str = "w") -> str:
        run = await self.services.runs.trigger("p", "j", {}, {"type": "api", "user": "admin"})
        await self.set_run(run.identifier, status="running", worker=worker)
        return run.identifier

    async def set_run(self, run: str, **values: Any) -> None:
        values.setdefault("start_date", self.services.clock.now())
        async with self.services.db.transaction() as conn:
            await conn.execute(
                sa.update(run_table).where(run_table.c.identifier == run).values(**values)
            )

    async def begin(
        self, run: str, path: str, data: bytes, who: str = "wk", **extra: Any
    ) -> httpx.Response:
        body = {"path": path, "size": len(data), "sha256": sha(data), **extra}
        return await self.api.request(
            "POST", f"/api/v1/artifact-uploads/{run}", json=body, headers=auth(self.tokens[who])
        )

    async def put(
        self, run: str, path: str, offset: int, chunk: bytes, who: str = "wk", digest: str = ""
    ) -> httpx.Response:
        headers = {**auth(self.tokens[who]), "X-Chunk-SHA256": digest or sha(chunk)}
        return await self.api.request(
            "PUT",
            f"/api/v1/artifact-uploads/{run}",
            params={"path": path, "offset": offset},
            content=chunk,
            headers=headers,
        )

    async def upload(self, run: str, path: str, data: bytes, **extra: Any) -> None:
        answer = await self.begin(run, path, data, **extra)
        assert answer.status_code == 200, answer.text
        offset = answer.json()["offset"]
        while True:
            chunk = data[offset : offset + 8 * MIB]
            answer = await self.put(run, path, offset, chunk)
            assert answer.status_code == 200, answer.text
            offset = answer.json()["offset"]
            if answer.json().get("complete"):
                return

    async def get(self, url: str, who: str = "viewer", **headers: str) -> httpx.Response:
        return await self.api.request("GET", url, headers={**auth(self.tokens[who]), **headers})


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
