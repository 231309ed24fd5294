"""Keeps the served models in step with the repository while the service runs: a sync every
`repository_poll_s` seconds, and at once on SIGHUP (`kill -HUP`, `podman kill --signal HUP`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from service.lifecycle.registry import ModelRegistry

log = logging.getLogger("gan.registry")


class RepositoryWatch:
    def __init__(self, registry: ModelRegistry, poll_s: float) -> None:
        self.registry = registry
        self.poll_s = poll_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sighup = False

    def listen_for_sighup(self) -> None:
        """SIGHUP asks for a sync (its default action would end the process). Call before the
        models load, so that a SIGHUP during start-up is not fatal. Only the main thread may set
        signal handlers: elsewhere (a server run in a test's thread) SIGHUP is not handled."""
        with contextlib.suppress(ValueError, NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.wake)
            self._sighup = True

    def wake(self) -> None:
        """Sync now (then on the usual schedule)."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            timeout = self.poll_s if self.poll_s > 0 else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            if self.registry.draining:
                continue  # shutting down: nothing new goes into service
            try:
                await self.registry.sync()
            except Exception:  # a bug must not end the watch: later syncs may succeed
                log.exception("syncing with the model repository failed")

    async def stop(self) -> None:
        if self._sighup:
            with contextlib.suppress(ValueError, NotImplementedError, RuntimeError):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
