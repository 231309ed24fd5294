"""gan-serve: run the service with uvicorn. Every option is also a GAN_SERVE_* environment variable.

On SIGTERM (or Ctrl-C) readiness turns 503 at once; after GAN_SERVE_DRAIN_SECONDS the listener
closes, queued and in-flight requests finish (up to GAN_SERVE_GRACEFUL_TIMEOUT_S), then the
process exits.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import logging.handlers
import queue
import sys
import threading
from collections.abc import Callable, Generator
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from pydantic import ValidationError

from service.access_log import AccessLog
from service.api.app import create_service
from service.api.auth import load_api_keys
from service.config import Settings
from service.connection_guard import ConnectionGuard, ConnectionLimits
from service.engine import Engine

log = logging.getLogger("gan.serve")


class DrainingServer(uvicorn.Server):
    """uvicorn's server, but the first exit signal only marks the engine as draining; the usual
    shutdown (stop accepting, finish in-flight requests) starts drain_seconds later."""

    def __init__(
        self, config: uvicorn.Config, engine: Engine, drain_seconds: float, before_exit: Callable[[], None]
    ) -> None:
        super().__init__(config)
        self.engine = engine
        self.drain_seconds = drain_seconds
        self.before_exit = before_exit

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
        if self.engine.draining:  # a second signal: the normal (then forced) uvicorn shutdown
            super().handle_exit(sig, frame)
            return
        self.engine.draining = True
        log.info("signal %d: draining (not ready); closing in %.1f s", sig, self.drain_seconds)
        if self.drain_seconds > 0:
            timer = threading.Timer(self.drain_seconds, super().handle_exit, (sig, frame))
            timer.daemon = True
            timer.start()
        else:
            super().handle_exit(sig, frame)


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
    except ValidationError as e:
        print(f"gan-serve: error: bad setting: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
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
        return _serve(settings, access_log, stop_logging)
    finally:
        stop_logging()


def _serve(settings: Settings, access_log: AccessLog, before_exit: Callable[[], None]) -> int:
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
        port=settings.port,
        http=ConnectionGuard(limits, app.state.metrics).protocol_class(),
        ws="none",  # no WebSocket endpoints: upgrade requests are answered as plain HTTP
        timeout_keep_alive=settings.keep_alive_s,
        access_log=False,  # the service writes its own structured access log (gan.access)
        log_config=None,
        timeout_graceful_shutdown=int(settings.graceful_timeout_s),
        lifespan="on",
    )
    server = DrainingServer(config, app.state.engine, settings.drain_seconds, before_exit)
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
