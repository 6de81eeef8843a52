"""The one place where blocking work meets the event loop.

Model math knows nothing of asyncio. Each provider owns a named single-worker
:class:`Worker`; ``await worker.run(fn, ...)`` runs a blocking call there, and
:meth:`Worker.iterate` consumes a blocking (lazy) generator *inside* the worker thread,
handing items to the loop with ``call_soon_threadsafe``. Cancelling the consumer sets a
stop flag that the worker checks between items, so generation really stops.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
_DONE = object()


class Worker:
    """A named single-thread executor for one provider's blocking calls."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"avatar-{name}")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the worker thread and await its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, fn, *args)

    async def iterate(self, factory: Callable[[threading.Event], Iterator[T]],
                      maxsize: int = 0) -> AsyncIterator[T]:
        """Yield the items of ``factory(stop)`` produced in the worker thread.

        ``factory`` gets a :class:`threading.Event` that is set when the consumer stops
        early (cancel, break); it should check it between items and return.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue(maxsize=maxsize)
        stop = threading.Event()

        def put(item: Any) -> None:
            if not stop.is_set():
                queue.put_nowait(item)

        def produce() -> None:
            try:
                for item in factory(stop):
                    if stop.is_set():
                        break
                    loop.call_soon_threadsafe(put, item)
            except BaseException as exc:  # handed to the consumer, re-raised there
                loop.call_soon_threadsafe(put, _Failure(exc))
            finally:
                loop.call_soon_threadsafe(put, _DONE)

        future = loop.run_in_executor(self._pool, produce)
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                if isinstance(item, _Failure):
                    raise item.exc
                yield item
        finally:
            stop.set()
            if not future.done():
                # let the producer notice the flag; never block the loop on it
                await asyncio.wait([future], timeout=5.0)

    def close(self) -> None:
        """Stop accepting work; running calls finish in the background."""
        self._pool.shutdown(wait=False, cancel_futures=True)


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
