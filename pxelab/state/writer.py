"""Boot events into the state store, in batches, off the request path: the timeline's listener
queues each event and one task writes them, so a slow or absent database never delays a boot."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from pxelab.events import Event
from pxelab.state import StateStore, StoreError

log = logging.getLogger("pxelab.state")

FLUSH_EVERY = 0.2
"""Seconds between writes of the queued events."""
MAX_QUEUED = 10_000
"""Events held while the database is away; the oldest are dropped beyond this."""


class EventWriter:
    """A Timeline listener that persists events with `store.add_events`."""

    def __init__(self, store: StateStore, flush_every: float = FLUSH_EVERY) -> None:
        self.store, self.flush_every = store, flush_every
        self._queue: deque[Event] = deque(maxlen=MAX_QUEUED)
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self.written = 0
        """Events written so far (for tests and logs)."""

    def __call__(self, event: Event) -> None:
        if event.mac:  # events of clients with no known MAC are not kept across restarts
            self._queue.append(event)

    def start(self) -> None:
        """Begin writing in the background."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="event-writer")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_every)
            await self.flush()

    async def flush(self) -> None:
        """Write what is queued; on a database error keep it for the next try and say so once."""
        if not self._queue:
            return
        batch = list(self._queue)
        self._queue.clear()
        try:
            await self.store.add_events(batch)
        except StoreError as exc:
            # Back in front of what came meanwhile; past MAX_QUEUED the oldest go first.
            self._queue = deque([*batch, *self._queue], maxlen=MAX_QUEUED)
            if not self._failing:
                log.warning("boot events not saved yet (%d queued): %s", len(self._queue), exc)
            self._failing = True
            return
        self.written += len(batch)
        if self._failing:
            log.info("boot events saved again")
        self._failing = False

    async def close(self) -> None:
        """Stop the task and write what is left."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
