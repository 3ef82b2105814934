"""Dynamic micro-batching for the HTTP service: requests that arrive together are scored together.

A moderation API is called one item at a time, and scoring one item costs nearly what scoring ten
does (each call featurises, multiplies and applies the policy once, whatever its size). Each
request hands its items to the `MicroBatcher` and waits for its own rows; the batcher gives a free
scoring worker everything that is waiting:
- when a worker is free, the oldest waiting request waits at most `max_wait_s` after it arrived
  for company (or until `max_items` items wait), so a lone request pays at most that wait;
- when every worker is busy, requests queue, and the next worker to finish takes all of them (up
  to `max_items`) at once, since the oldest has waited long enough: under load batches grow by
  themselves and the cost per item falls.

Scoring runs in a pool of `workers` threads (the cores), off the event loop, so the loop keeps
reading requests and answering /health while a batch is scored. The queue needs no bound of its
own: the service's in-flight limit (ml/scoring/guard.py) bounds the requests that can wait here.

Each job carries a key (which model scores it: the champion or a canary) and the worker scores each
key's jobs of a batch in one call; results go back in job order, so every request gets its own rows.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

# score(key, payloads) -> one result per payload; called in a worker thread with every payload of a
# batch that shares `key`.
ScoreFn = Callable[[Hashable, Sequence[Any]], Sequence[Any]]


@dataclass
class _Job:
    key: Hashable
    payload: Any
    size: int  # items, counted against max_items
    future: asyncio.Future
    arrived: float  # loop time: the job waits for company at most max_wait_s after this


@dataclass
class _LoopState:
    """The queue of one event loop (a test client may run the app on several loops in turn)."""

    free: int
    pending: deque[_Job] = field(default_factory=deque)
    waiting_items: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    worker_freed: asyncio.Event = field(default_factory=asyncio.Event)
    drain: asyncio.Task | None = None


@dataclass
class BatchStats:
    """How batching went so far: batches scored and items in them (GET /v1/stats shows it)."""

    batches: int = 0
    items: int = 0
    largest: int = 0

    def as_dict(self) -> dict[str, float]:
        return {
            "batches": self.batches,
            "items": self.items,
            "mean_items_per_batch": round(self.items / self.batches, 2) if self.batches else 0.0,
            "largest_batch": self.largest,
        }


class MicroBatcher:
    def __init__(self, score: ScoreFn, workers: int, max_items: int, max_wait_s: float):
        if workers < 1 or max_items < 1 or max_wait_s < 0:
            raise ValueError("MicroBatcher: workers and max_items must be at least 1, max_wait_s at least 0")
        self._score = score
        self.workers, self.max_items, self.max_wait_s = workers, max_items, max_wait_s
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="score")
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = weakref.WeakKeyDictionary()
        self.stats = BatchStats()

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None:
            state = self._states[loop] = _LoopState(free=self.workers)
        return state

    async def submit(self, key: Hashable, payload: Any, size: int) -> Any:
        """Score `payload` (of `size` items) with whatever else is waiting; its own result."""
        state = self._state()
        loop = asyncio.get_running_loop()
        job = _Job(key, payload, size, loop.create_future(), loop.time())
        state.pending.append(job)
        state.waiting_items += size
        state.arrived.set()
        if state.drain is None or state.drain.done():
            state.drain = asyncio.create_task(self._drain(state))
        return await job.future

    async def _drain(self, state: _LoopState) -> None:
        """Hand waiting jobs to free workers until none wait; ends when the queue is empty."""
        loop = asyncio.get_running_loop()
        while state.pending:
            if state.free == 0:
                state.worker_freed.clear()
                await state.worker_freed.wait()
                continue
            # The oldest waiting job decides: queued while every worker was busy, it goes at once.
            deadline = state.pending[0].arrived + self.max_wait_s
            while state.waiting_items < self.max_items and (left := deadline - loop.time()) > 0:
                state.arrived.clear()
                try:
                    await asyncio.wait_for(state.arrived.wait(), left)
                except TimeoutError:
                    break
            batch = self._take(state)
            if not batch:
                continue
            state.free -= 1
            done = loop.run_in_executor(self._pool, self._run, batch)
            done.add_done_callback(lambda f, batch=batch: self._deliver(state, batch, f))

    def _take(self, state: _LoopState) -> list[_Job]:
        batch: list[_Job] = []
        items = 0
        while state.pending:
            job = state.pending[0]
            if batch and items + job.size > self.max_items:
                break
            state.pending.popleft()
            state.waiting_items -= job.size
            if job.future.cancelled():  # the client went away while it waited
                continue
            batch.append(job)
            items += job.size
        return batch

    def _run(self, batch: list[_Job]) -> list[Any]:
        """In a worker thread: each key's payloads scored in one call, results in job order."""
        results: list[Any] = [None] * len(batch)
        by_key: dict[Hashable, list[int]] = {}
        for i, job in enumerate(batch):
            by_key.setdefault(job.key, []).append(i)
        for key, positions in by_key.items():
            scored = self._score(key, [batch[i].payload for i in positions])
            if len(scored) != len(positions):
                raise RuntimeError(f"scoring returned {len(scored)} results for {len(positions)} requests")
            for i, result in zip(positions, scored):
                results[i] = result
        return results

    def _deliver(self, state: _LoopState, batch: list[_Job], done: asyncio.Future) -> None:
        state.free += 1
        state.worker_freed.set()
        size = sum(job.size for job in batch)
        self.stats.batches += 1
        self.stats.items += size
        self.stats.largest = max(self.stats.largest, size)
        error = RuntimeError("the scoring pool was shut down") if done.cancelled() else done.exception()
        for i, job in enumerate(batch):
            if job.future.done():
                continue
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(done.result()[i])

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
