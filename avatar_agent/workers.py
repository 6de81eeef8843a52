"""The one place where blocking work meets the event loop.

Model math knows nothing of asyncio. Each provider owns a named single-thread
:class:`Worker`; ``await worker.run(fn, ...)`` runs a blocking call there, and
:meth:`Worker.iterate` consumes a blocking (lazy) generator *inside* the worker thread,
handing items to the loop with ``call_soon_threadsafe``. Cancelling the consumer sets a
stop flag that the worker checks between items, so generation really stops.

Worker threads are daemon threads and nobody ever waits for them: a cancelled call
returns at once to the loop while the model finishes its current step in the
background, and quitting the program (Ctrl-C while a model loads or decodes) is never
held up by a model call. ``concurrent.futures.ThreadPoolExecutor`` is not used for that
reason: the interpreter joins its threads at exit, so a 3 s model load would delay
Ctrl-C by 3 s. :func:`busy` names the workers still inside a call, so a command that
must exit now can skip the interpreter's teardown (see ``cli``).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")
_DONE = object()
_STOP = object()

_busy_lock = threading.Lock()
_busy: dict[int, str] = {}  # thread ident -> worker name, while a call runs


def busy() -> list[str]:
    """Names of the workers whose thread is inside a call right now."""
    with _busy_lock:
        return sorted(_busy.values())


class Worker:
    """A named single daemon thread that runs one provider's blocking calls in order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    # ---------------------------------------------------------------- any thread
    def submit(self, fn: Callable[..., T], *args: Any) -> Future:
        """Queue ``fn(*args)``; returns its :class:`concurrent.futures.Future`."""
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError(f"worker {self.name} is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, args=(self._jobs,),
                                                name=f"avatar-{self.name}", daemon=True)
                self._thread.start()
            self._jobs.put((future, fn, args))
        return future

    def close(self) -> None:
        """Stop accepting work; queued calls are cancelled, a running one ends by itself."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            while True:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is not _STOP:
                    job[0].cancel()
            self._jobs.put(_STOP)

    def abandon(self) -> bool:
        """A call hangs (a stage timed out): leave it to its thread, serve later calls on
        a fresh one. The old thread exits when (if ever) that call returns; queued calls
        move to the new thread in order. Returns False when no call was running."""
        with self._lock:
            with _busy_lock:
                running = self._thread is not None and self._thread.ident in _busy
            if self._closed or not running:
                return False
            old, self._jobs = self._jobs, queue.SimpleQueue()
            while True:
                try:
                    job = old.get_nowait()
                except queue.Empty:
                    break
                if job is not _STOP:
                    self._jobs.put(job)
            old.put(_STOP)
            self._thread = None
            if not self._jobs.empty():
                self._thread = threading.Thread(target=self._serve, args=(self._jobs,),
                                                name=f"avatar-{self.name}", daemon=True)
                self._thread.start()
            return True

    # ---------------------------------------------------------------- worker thread
    def _serve(self, jobs: queue.SimpleQueue) -> None:
        me = threading.get_ident()
        while True:
            job = jobs.get()
            if job is _STOP:
                return
            future, fn, args = job
            if not future.set_running_or_notify_cancel():
                continue  # cancelled while queued
            with _busy_lock:
                _busy[me] = self.name
            try:
                result = fn(*args)
            except BaseException as exc:  # handed to whoever awaits the future
                future.set_exception(exc)
            else:
                future.set_result(result)
            finally:
                with _busy_lock:
                    _busy.pop(me, None)
                del job, future, fn, args  # do not keep the last call's data alive

    # ---------------------------------------------------------------- loop thread
    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the worker thread and await its result.

        Cancelling the await returns at once; a call already running finishes in the
        background (its result is dropped), a queued one never starts.
        """
        return await asyncio.wrap_future(self.submit(fn, *args))

    async def iterate(self, factory: Callable[[threading.Event], Iterator[T]],
                      maxsize: int = 0) -> AsyncIterator[T]:
        """Yield the items of ``factory(stop)`` produced in the worker thread.

        ``factory`` gets a :class:`threading.Event` that is set when the consumer stops
        early (cancel, break); it should check it between items and return. The
        consumer never waits for the producer to notice: the next call on this worker
        simply queues behind it.
        """
        loop = asyncio.get_running_loop()
        items: asyncio.Queue = asyncio.Queue(maxsize=maxsize)
        stop = threading.Event()

        def put(item: Any) -> None:
            if not stop.is_set():
                items.put_nowait(item)

        def hand(item: Any) -> None:
            if not stop.is_set():
                try:
                    loop.call_soon_threadsafe(put, item)
                except RuntimeError:  # the loop is gone (program exiting)
                    stop.set()

        def produce() -> None:
            try:
                for item in factory(stop):
                    if stop.is_set():
                        break
                    hand(item)
            except BaseException as exc:  # handed to the consumer, re-raised there
                hand(_Failure(exc))
            finally:
                hand(_DONE)

        future = self.submit(produce)
        try:
            while True:
                item = await items.get()
                if item is _DONE:
                    break
                if isinstance(item, _Failure):
                    raise item.exc
                yield item
        finally:
            stop.set()
            future.cancel()  # still queued: never start it


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
