"""What the overload and soak benchmarks share: readings of a server process (metrics, resident
memory, CPU per thread) and a small asyncio HTTP/1.1 load generator that records the status,
latency and Retry-After of every request. The server itself is started by bench.server.

The generator speaks HTTP/1.1 over raw streams with keep-alive, one request at a time per
connection: a general-purpose client costs several times more CPU per request, and here the
client shares the machine's cores with the server. Every run is bounded in time and stops by
itself; only loopback addresses are used.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import httpx


def metric(url: str, name: str, **labels: str) -> float:
    """Sum of one metric's samples whose labels include `labels`, from the server's /metrics."""
    total = 0.0
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        head, _, value = line.rpartition(" ")
        if head.split("{", 1)[0] == name and all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


def histogram(url: str, name: str, **labels: str) -> dict[float, float]:
    """One histogram's cumulative bucket counts {upper bound: count} from /metrics, summed over
    the series whose labels include `labels` (a label given as "" must be empty)."""
    buckets: dict[float, float] = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        head, _, value = line.rpartition(" ")
        if head.split("{", 1)[0] != f"{name}_bucket" or not all(
            f'{k}="{v}"' in head for k, v in labels.items()
        ):
            continue
        le = head.split('le="', 1)[1].split('"', 1)[0]
        bound = float("inf") if le == "+Inf" else float(le)
        buckets[bound] = buckets.get(bound, 0.0) + float(value)
    return buckets


def histogram_quantile(buckets: dict[float, float], q: float) -> float | None:
    """The upper bound of the bucket holding the q-th quantile (0-1); None without observations."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    target = q * buckets[bounds[-1]]
    return next(bound for bound in bounds if buckets[bound] >= target)


def rss_mb(pid: int) -> float:
    """Resident memory of a process (Linux /proc), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) of each thread of a process: {tid: (name, seconds)}."""
    tick = os.sysconf("SC_CLK_TCK")
    threads = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError):
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2 :].split()  # fields[11], [12]: utime, stime
            threads[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return threads


def cpu_split(pid: int, before: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds since `before`: the main thread (the event loop) and all the others together."""
    after = thread_cpu(pid)
    used = {tid: seconds - before.get(tid, (name, 0.0))[1] for tid, (name, seconds) in after.items()}
    return {
        "event_loop": used.get(pid, 0.0),
        "other_threads": sum(v for tid, v in used.items() if tid != pid),
    }


class RssSampler:
    """Samples a process's resident memory every `interval` seconds on a thread: (time, MiB)."""

    def __init__(self, pid: int, interval: float) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                self.samples.append((time.monotonic(), rss_mb(self.pid)))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, start: float, end: float) -> list[float]:
        return [mb for t, mb in self.samples if start <= t <= end]


# --- requests -------------------------------------------------------------------------------------


def generate_request(body: dict[str, object]) -> bytes:
    data = json.dumps(body).encode()
    head = (
        "POST /generate HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}"
    )
    return head.encode() + b"\r\n\r\n" + data


def upscale_request(image: bytes, model: str, media_type: str = "image/png") -> bytes:
    head = (
        f"POST /upscale?model={model} HTTP/1.1\r\nHost: bench\r\nContent-Type: {media_type}\r\n"
        f"Content-Length: {len(image)}"
    )
    return head.encode() + b"\r\n\r\n" + image


@dataclass(frozen=True)
class Outcome:
    kind: str  # which request template
    sent: float  # when it was due (open loop) or sent (closed loop), time.monotonic()
    latency: float  # seconds until the whole answer was read
    status: int  # 0: no answer (the connection failed)
    retry_after: float | None  # the answer's Retry-After, seconds
    matched: bool = True  # the answer named this request's X-Request-ID (when one was sent)


class Answer(NamedTuple):
    status: int
    retry_after: float | None
    request_id: bytes | None  # the answer's X-Request-ID


class _AnswerReader(asyncio.Protocol):
    """Reads HTTP/1.1 answers off one connection: an asyncio.Protocol rather than streams, so that
    a load generator sharing the server's cores costs it little."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[Answer] | None = None
        self.closed = False
        self.close_after = False  # the last answer said Connection: close

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is not None and not self.waiter.done():
            answer = self._answer()
            if answer is not None:
                self.waiter.set_result(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the server closed the connection"))

    def _answer(self) -> Answer | None:
        """The first whole answer in the buffer, taken out of it; None until one is in."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(self.buffer[:end]).lower()
        length = int(_header(head, b"content-length") or b"0")
        if len(self.buffer) < end + 4 + length:
            return None
        del self.buffer[: end + 4 + length]
        retry_after = _header(head, b"retry-after")
        self.close_after = b"close" in (_header(head, b"connection") or b"")
        return Answer(
            int(head[9:12]),
            None if retry_after is None else float(retry_after),
            _header(head, b"x-request-id"),
        )


def _header(head: bytes, name: bytes) -> bytes | None:
    """One header's value in a lower-cased head, or None."""
    at = head.find(b"\r\n" + name + b":")
    if at < 0:
        return None
    start = at + len(name) + 3
    stop = head.find(b"\r\n", start)
    return head[start : None if stop < 0 else stop].strip()


class Connection:
    """One keep-alive HTTP/1.1 connection, one request at a time; reconnects after the server
    closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: _AnswerReader | None = None

    async def request(self, raw: bytes, request_id: bytes | None = None) -> Answer:
        """Sends one request (with X-Request-ID: request_id, when given) and reads its whole answer."""
        reader = self.reader
        if reader is None or reader.closed:  # the server closed it while idle (keep-alive)
            loop = asyncio.get_running_loop()
            _, reader = await loop.create_connection(_AnswerReader, "127.0.0.1", self.port)
            self.reader = reader
        assert reader.transport is not None
        if request_id is not None:
            head, _, body = raw.partition(b"\r\n\r\n")
            raw = head + b"\r\nX-Request-ID: " + request_id + b"\r\n\r\n" + body
        reader.waiter = asyncio.get_running_loop().create_future()
        try:
            reader.transport.write(raw)
            answer = reader._answer() or await reader.waiter
        except (OSError, ValueError, IndexError):
            self.close()
            raise
        finally:
            reader.waiter = None
        if reader.close_after:
            self.close()
        return answer

    def close(self) -> None:
        if self.reader is not None and self.reader.transport is not None:
            self.reader.transport.close()
        self.reader = None


@dataclass
class Mix:
    """Request templates and how often each is sent (weights), picked in a fixed rotation."""

    requests: dict[str, bytes]
    weights: dict[str, int] = field(default_factory=dict)

    def rotation(self) -> list[str]:
        """One round of kinds, interleaved (a, b, c, a, b, a, ...) rather than each in a run."""
        remaining = {kind: self.weights.get(kind, 1) for kind in self.requests}
        order: list[str] = []
        while any(remaining.values()):
            for kind, left in remaining.items():
                if left > 0:
                    order.append(kind)
                    remaining[kind] = left - 1
        return order


async def _one(
    connection: Connection, kind: str, raw: bytes, due: float, request_id: bytes | None = None
) -> Outcome:
    try:
        status, retry_after, answered = await connection.request(raw, request_id)
    except (OSError, ValueError, IndexError):
        status, retry_after, answered = 0, None, None
    matched = request_id is None or answered == request_id.lower()
    return Outcome(kind, due, time.monotonic() - due, status, retry_after, matched)


async def closed_loop(
    port: int, mix: Mix, clients: int, seconds: float, honor_retry_after: bool = False, ids: bool = False
) -> list[Outcome]:
    """`clients` connections, each sending its next request as soon as the last is answered; or,
    with honor_retry_after, after a refusal's Retry-After plus up to 50 % of jitter (as gan-client
    does). With ids, every request carries an X-Request-ID of its own, and each Outcome says
    whether its answer named it (an answer lost, or one request answered twice, shows as a
    mismatch on its connection)."""
    stop = time.monotonic() + seconds
    jitter = random.Random(0)
    rotation = mix.rotation()
    outcomes: list[Outcome] = []
    prefix = os.urandom(4).hex()

    async def client(offset: int) -> None:
        connection = Connection(port)
        i = offset
        n = 0
        while time.monotonic() < stop:
            kind = rotation[i % len(rotation)]
            request_id = f"{prefix}-{offset}-{n}".encode() if ids else None
            outcome = await _one(connection, kind, mix.requests[kind], time.monotonic(), request_id)
            outcomes.append(outcome)
            i += 1
            n += 1
            if honor_retry_after and outcome.retry_after is not None:
                pause = outcome.retry_after * (1 + jitter.random() / 2)
                await asyncio.sleep(min(pause, stop - time.monotonic()))
        connection.close()

    await asyncio.gather(*(client(i) for i in range(clients)))
    return outcomes


async def open_loop(
    port: int, mix: Mix, rate: float, seconds: float, max_connections: int = 512
) -> list[Outcome]:
    """Requests due at a steady `rate` per second for `seconds`, each on a free connection (a new one
    when all are busy, up to max_connections). Latency counts from when a request was due, so a
    server that falls behind shows it (no coordinated omission)."""
    start = time.monotonic()
    rotation = mix.rotation()
    idle: list[Connection] = []
    outcomes: list[Outcome] = []
    tasks: set[asyncio.Task[None]] = set()
    capacity = asyncio.Semaphore(max_connections)

    async def send(kind: str, due: float) -> None:
        async with capacity:
            connection = idle.pop() if idle else Connection(port)
            outcomes.append(await _one(connection, kind, mix.requests[kind], due))
            idle.append(connection)

    i = 0
    while True:
        due = start + i / rate
        if due - start >= seconds:
            break
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        kind = rotation[i % len(rotation)]
        task = asyncio.create_task(send(kind, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
    if tasks:
        await asyncio.wait(tasks, timeout=120)
    for connection in idle:
        connection.close()
    return outcomes


# --- figures -------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100, nearest rank) or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f} ms"


def windows(
    outcomes: Sequence[Outcome], start: float, width: float, ok: Callable[[Outcome], bool]
) -> list[int]:
    """Counts of `ok` answers per window of `width` seconds from `start` (by completion time)."""
    slots = [int((o.sent + o.latency - start) // width) for o in outcomes if o.sent + o.latency >= start]
    counts = [0] * (max(slots) + 1 if slots else 0)
    for o in outcomes:
        done = o.sent + o.latency
        if done >= start and ok(o):
            counts[int((done - start) // width)] += 1
    return counts
