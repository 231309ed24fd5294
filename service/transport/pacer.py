"""Pacing: a connection whose request was refused for overload (by the door, or by the
application) is not read again for a pause, so that clients sending again at once cannot keep the
event loop's core busy refusing while the lanes starve. The client waits in its own socket
meanwhile (TCP back-pressure, at no cost to the server); its refusal itself was not delayed. The
pause adapts to what refusing costs the event loop (see Pacer).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from service.served.admission import Admission
from service.transport.connection_guard import GuardedHttpToolsProtocol


class Pacer:
    """Connections not read for a while after an overload refusal (`pause`).

    The pause adapts to what refusing costs: every ADAPT_S while connections are being paused,
    the event loop's own CPU time is read, and the bytes of refused bodies it read and dropped
    (an upload refused at its headers still sends its body); with the event loop over
    `loop_share` of its core, or more than `discard_bytes_s` dropped a second, pauses grow by a
    quarter (up to `max_pause_s`); under half of both, they shrink by a fifth (down to
    `min_pause_s`). With N clients sending again at once, refusals come at about N / pause a
    second: the pause is the shortest that keeps that work within its share, so the lanes keep
    the rest of the cores however many clients push. A client that waits out its Retry-After
    (a second or more, longer than any pause) never meets one.

    All current pauses have about the same length, so they end in about the order they began: one
    deque and one timer release them, every connection due within GRAIN_S at once (one wake-up
    of the event loop for many)."""

    GRAIN_S = 0.002
    ADAPT_S = 0.1
    ROOM_BATCH = 4  # connections read at a time when a queue has room again
    ROOM_SCAN = 256  # paused connections looked at for them, from the last paused

    def __init__(
        self, min_pause_s: float, max_pause_s: float, loop_share: float, discard_bytes_s: float = 32 << 20
    ) -> None:
        self.min_pause_s = min_pause_s
        self.max_pause_s = max(min_pause_s, max_pause_s)
        self.loop_share = loop_share
        self.discard_bytes_s = discard_bytes_s
        self.pause_s = min_pause_s
        # (due, connection, the queue that refused it: None when the application did)
        self._paused: deque[tuple[float, GuardedHttpToolsProtocol, Admission | None]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._adapting: asyncio.TimerHandle | None = None
        self._paused_since_adapt = 0
        self._discarded = 0  # bytes of refused bodies read and dropped since the last look
        self._cpu = self._wall = 0.0

    def pause(self, connection: GuardedHttpToolsProtocol, refused_by: Admission | None = None) -> None:
        if self.min_pause_s <= 0 or connection.transport.is_closing():
            return
        loop = connection.loop
        connection.flow.pause_reading()
        now = loop.time()
        due = now + self.pause_s
        if self._paused and due < self._paused[-1][0]:  # the pause just shrank: keep the order
            due = self._paused[-1][0]
        self._paused.append((due, connection, refused_by))
        self._paused_since_adapt += 1
        if self._timer is None:
            self._timer = loop.call_at(due, self._release, loop)
        if self._adapting is None:
            self._cpu, self._wall, self._discarded = time.thread_time(), now, 0
            self._adapting = loop.call_at(now + self.ADAPT_S, self._adapt, loop)

    def discarded(self, size: int) -> None:
        """Bytes of a refused request's body read and dropped: moving them costs the client, the
        kernel and the event loop, most of it outside the event loop's own CPU time."""
        self._discarded += size

    def room(self, admission: Admission) -> None:
        """A shedding queue takes work again: read the connections it refused last (their requests
        have waited least; those refused by another queue, or by the application, stay paused), a
        few at a time, for as long as it does, rather than wait for pauses to end; a request let in
        this way waits in the queue, not in its socket."""
        released: list[GuardedHttpToolsProtocol] = []
        kept: list[tuple[float, GuardedHttpToolsProtocol, Admission | None]] = []
        while self._paused and len(released) < self.ROOM_BATCH and len(kept) < self.ROOM_SCAN:
            entry = self._paused.pop()
            if entry[2] is not admission:
                kept.append(entry)
            elif not entry[1].transport.is_closing():
                released.append(entry[1])
        self._paused.extend(reversed(kept))
        for connection in released:
            connection.flow.resume_reading()
        if released and self._paused:
            # their requests are read in the next turn of the event loop; then, if there is room still
            released[0].loop.call_later(self.GRAIN_S, self._room_left, admission)

    def _room_left(self, admission: Admission) -> None:
        if not admission.shedding:
            self.room(admission)

    def _release(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        until = loop.time() + self.GRAIN_S
        while self._paused and self._paused[0][0] <= until:
            _, connection, _ = self._paused.popleft()
            if not connection.transport.is_closing():
                connection.flow.resume_reading()
        if self._paused:
            self._timer = loop.call_at(self._paused[0][0], self._release, loop)

    def _adapt(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the event loop (its thread's CPU time is the one read)."""
        cpu, wall = time.thread_time(), loop.time()
        elapsed = max(wall - self._wall, 1e-6)
        busy, discarding = (cpu - self._cpu) / elapsed, self._discarded / elapsed
        self._cpu, self._wall, self._discarded = cpu, wall, 0
        if self._paused_since_adapt == 0 and not self._paused:  # none paced in a period: the burst is over
            self._adapting = None
            self.pause_s = self.min_pause_s
            return
        self._paused_since_adapt = 0
        if busy > self.loop_share or discarding > self.discard_bytes_s:
            self.pause_s = min(self.max_pause_s, self.pause_s * 1.25)
        elif busy < self.loop_share / 2 and discarding < self.discard_bytes_s / 2:
            self.pause_s = max(self.min_pause_s, self.pause_s * 0.8)
        # The next look once a pause of the new length has passed: only then does it show.
        self._adapting = loop.call_at(wall + max(self.ADAPT_S, self.pause_s), self._adapt, loop)
