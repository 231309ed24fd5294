"""gan-serve: run the service with uvicorn. Every option is also a GAN_SERVE_* environment variable.

The port is opened before any model loads: one that another server holds stops gan-serve at once
(exit 2). Connections made while the models load wait, and are answered once they are ready.

On SIGTERM (or Ctrl-C) readiness turns 503 at once; after GAN_SERVE_DRAIN_SECONDS (or at a second
signal, if sooner) the listener closes, queued and in-flight requests finish (up to
GAN_SERVE_GRACEFUL_TIMEOUT_S), then the process exits. A Ctrl-C after that exits at once.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import logging.handlers
import queue
import socket
import sys
import threading
from collections.abc import Callable, Generator
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from pydantic import ValidationError

from service.api.app import create_service
from service.api.auth import load_admin_keys, load_api_keys
from service.config import Settings
from service.lifecycle.registry import ModelRegistry
from service.served.providers import ProviderUnavailable, choose_providers
from service.transport.access_log import AccessLog
from service.transport.connection_guard import ConnectionGuard, ConnectionLimits
from service.transport.listener import ListenError, address, listen
from service.transport.uvicorn_internals import IncompatibleUvicorn, check_uvicorn

log = logging.getLogger("gan.serve")
BACKLOG = 2048  # uvicorn's default: it listens again with config.backlog, which is left at that


class DrainingServer(uvicorn.Server):
    """uvicorn's server, but the first exit signal only marks the registry as draining; the usual
    shutdown (stop accepting, finish in-flight requests) starts drain_seconds later, or at a second
    signal, whichever comes first; a signal after that is uvicorn's (a Ctrl-C forces the exit)."""

    def __init__(
        self,
        config: uvicorn.Config,
        registry: ModelRegistry,
        drain_seconds: float,
        before_exit: Callable[[], None],
    ) -> None:
        super().__init__(config)
        self.registry = registry
        self.drain_seconds = drain_seconds
        self.before_exit = before_exit
        self._drain_timer: threading.Timer | None = None
        # Taken by whichever starts the graceful shutdown, the drain timer (its own thread) or a
        # signal: it starts once. A second uvicorn.Server.handle_exit(SIGINT) would force the exit.
        self._shutdown_started = threading.Lock()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            # uvicorn says where it listens only for sockets it opened itself: here, the same line.
            host, port = self.config.host, self.config.port
            logging.getLogger("uvicorn.error").info(
                "Uvicorn running on http://%s (Press CTRL+C to quit)", address(host, port)
            )

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # After a signal-initiated shutdown uvicorn re-raises the signal when this context exits,
        # which ends the process at once: flush what must not be lost (the log queue) first.
        with super().capture_signals():
            try:
                yield
            finally:
                self.before_exit()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.registry.draining:  # the first signal
            self.registry.draining = True
            log.info("signal %d: draining (not ready); closing in %.1f s", sig, self.drain_seconds)
            if self.drain_seconds > 0:
                self._drain_timer = threading.Timer(self.drain_seconds, self._shut_down, (sig, frame))
                self._drain_timer.daemon = True
                self._drain_timer.start()
                return
        elif self._drain_timer is not None and not self._shutdown_started.locked():
            # A second signal while draining: the graceful shutdown starts now, and the timer must
            # not repeat the signal later (a second SIGINT forces the exit, cutting requests off).
            log.info("signal %d: closing now, before the drain period is over", sig)
            self._drain_timer.cancel()
            self._shut_down(sig, frame)  # (unless the timer is starting it at this very moment)
            return
        if not self._shut_down(sig, frame) and self.should_exit:
            # The graceful shutdown is under way (not just being started by the timer): uvicorn's
            # handling, where SIGINT forces the exit.
            super().handle_exit(sig, frame)

    def _shut_down(self, sig: int, frame: FrameType | None) -> bool:
        """Start uvicorn's graceful shutdown unless it was already: whether it was started now."""
        if not self._shutdown_started.acquire(blocking=False):
            return False
        super().handle_exit(sig, frame)
        return True


def parse_args(argv: list[str]) -> dict[str, Any]:
    p = argparse.ArgumentParser(
        prog="gan-serve", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--models", type=Path, help="model repository (GAN_SERVE_MODELS_DIR, default models)")
    p.add_argument("--host", help="address to listen on (GAN_SERVE_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (GAN_SERVE_PORT, default 8000; 0 picks a free one)")
    args = p.parse_args(argv)
    overrides = {"models_dir": args.models, "host": args.host, "port": args.port}
    return {k: v for k, v in overrides.items() if v is not None}


def main(argv: list[str] | None = None) -> int:
    overrides = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = Settings(**overrides)
        load_api_keys(settings)  # a broken keys setting stops here, not after the models load
        load_admin_keys(settings)
        check_uvicorn()  # the connection guard relies on uvicorn's internals: a mismatch stops here too
        if settings.provider_strict:  # CUDA asked for strictly but not in this ONNX Runtime: stop here
            choose_providers(settings)
        # Last: a port another server holds is then found before the models load, not after.
        sockets = listen(settings.host, settings.port, BACKLOG)
    except ValidationError as e:
        print(f"gan-serve: error: bad setting: {e}", file=sys.stderr)
        return 2
    except (ValueError, IncompatibleUvicorn, ListenError, ProviderUnavailable) as e:
        print(f"gan-serve: error: {e}", file=sys.stderr)
        return 2
    # Log records are formatted where they happen but written by a listener thread: a write to
    # stderr per request would otherwise be paid on the event loop.
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    stream = logging.StreamHandler()
    stream.setFormatter(logging.Formatter("%(message)s"))  # already formatted by the queue handler
    listener = logging.handlers.QueueListener(records, stream)
    listener.start()
    to_queue = logging.handlers.QueueHandler(records)
    to_queue.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=settings.log_level.upper(), handlers=[to_queue])
    access_log = AccessLog(sys.stderr)
    access_log.start()
    stopped = False

    def stop_logging() -> None:  # writes out every queued record and access line; safe to call twice
        nonlocal stopped
        if not stopped:
            stopped = True
            access_log.stop()
            listener.stop()

    try:
        return _serve(settings, sockets, access_log, stop_logging)
    finally:
        stop_logging()
        for sock in sockets:  # uvicorn closes them when it shuts down, but not when startup fails
            sock.close()


def _serve(
    settings: Settings, sockets: list[socket.socket], access_log: AccessLog, before_exit: Callable[[], None]
) -> int:
    asgi, app = create_service(settings, access_log)
    limits = ConnectionLimits(
        header_timeout_s=settings.header_timeout_s,
        body_timeout_s=settings.body_timeout_s,
        min_body_rate=settings.min_body_rate,
        write_timeout_s=settings.write_timeout_s,
    )
    config = uvicorn.Config(
        asgi,
        host=settings.host,
        port=sockets[0].getsockname()[1],  # the one picked, with port 0
        http=app.state.door.protocol_class(ConnectionGuard(limits, app.state.metrics)),
        ws="none",  # no WebSocket endpoints: upgrade requests are answered as plain HTTP
        timeout_keep_alive=settings.keep_alive_s,
        access_log=False,  # the service writes its own structured access log (gan.access)
        log_config=None,
        # uvicorn annotates an int but hands the value to asyncio.wait_for, which takes float seconds:
        # 0.5 s stays 0.5 s (int() made it 0 s, which cancelled every request still in flight).
        timeout_graceful_shutdown=settings.graceful_timeout_s,  # type: ignore[arg-type]
        lifespan="on",
    )
    server = DrainingServer(config, app.state.registry, settings.drain_seconds, before_exit)
    server.run(sockets=sockets)
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
