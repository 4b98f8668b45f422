"""Group commit: requests that arrive while a transaction runs wait, and go together in the next.

Many small writes at once (trigger requests, worker reports) cost mostly the transaction around
each: beginning, committing, a statement apiece. Here a request joins a queue and waits for the
transaction it went in; the first request of a quiet moment starts one at once (no delay is
added), and those arriving meanwhile share the next. `commit` writes a group and answers each of
its requests (with a result, or with an error of its own that wrote nothing). Should a group's
transaction fail as a whole, its requests are tried again one by one, each in a transaction of
its own, so that one cannot fail another.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


@dataclass(eq=False)
class Waiting(Generic[T, R]):
    """One request: what it asks, and the future its answer goes to."""

    item: T
    answer: asyncio.Future[R]

    def answer_with(self, result: R) -> None:
        if not self.answer.done():
            self.answer.set_result(result)

    def fail(self, error: BaseException) -> None:
        if self.answer.done():
            return
        if isinstance(error, asyncio.CancelledError):
            self.answer.cancel()
            return
        self.answer.set_exception(error)
        self.answer.exception()  # marked retrieved: a request given up on logs nothing more


class GroupCommit(Generic[T, R]):
    """`await submit(item)` returns what `commit` answered for it. `key` (optional) keeps two
    requests with the same key out of one group: the later one waits for the next."""

    def __init__(
        self,
        commit: Callable[[list[Waiting[T, R]]], Awaitable[None]],
        *,
        group_max: int,
        what: str,
        key: Callable[[T], Hashable] | None = None,
    ) -> None:
        self._commit = commit
        self.group_max = group_max
        self.what = what
        self._key = key
        self._waiting: list[Waiting[T, R]] = []
        self._committer: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        request: Waiting[T, R] = Waiting(item, loop.create_future())
        self._waiting.append(request)
        committer = self._committer
        if committer is None or committer.done() or committer.get_loop() is not loop:
            self._committer = loop.create_task(self._commit_waiting())
        return await request.answer

    async def _commit_waiting(self) -> None:
        group: list[Waiting[T, R]] = []
        try:
            while self._waiting:
                group = self._next_group()
                if group:
                    await self._commit_group(group)
        except BaseException as error:  # cancelled with the server: nobody is left waiting
            for request in [*group, *self._waiting]:
                request.fail(error)
            self._waiting = []
            raise

    def _next_group(self) -> list[Waiting[T, R]]:
        group: list[Waiting[T, R]] = []
        later: list[Waiting[T, R]] = []
        keys: set[Hashable] = set()
        for position, request in enumerate(self._waiting):
            if len(group) >= self.group_max:
                later.extend(self._waiting[position:])
                break
            if request.answer.done():
                continue  # given up on: dropped
            if self._key is not None:
                key = self._key(request.item)
                if key in keys:
                    later.append(request)
                    continue
                keys.add(key)
            group.append(request)
        self._waiting = later
        return group

    async def _commit_group(self, group: list[Waiting[T, R]]) -> None:
        try:
            await self._commit(group)
            return
        except Exception as error:
            if len(group) == 1:
                group[0].fail(error)
                return
            log.info("a group of %d %s failed (%s); one by one", len(group), self.what, error)
        for request in group:
            try:
                await self._commit([request])
            except Exception as alone:
                request.fail(alone)
