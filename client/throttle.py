"""Adaptive client-side throttling (Google SRE book, "Handling Overload"), so that a fleet of
clients converges to what the service can take instead of spending its capacity on refusals.

Over a recent window of `requests` attempted (held back included) and `accepts` (any answer but an
overload refusal), a try is held back with probability p = max(0, (requests - k * accepts) /
(requests + 1)), k = 2: nothing is held back until more than half the tries are refused, p < 1,
and a held-back request waits a jittered moment and asks again (counted once).
AdaptiveConcurrency (AIMD, as TCP's congestion window) limits how many tries a batch job's
workers have in flight at once, found by probing.
"""

from __future__ import annotations

import asyncio
import enum
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class AdaptiveThrottle:
    """One client's throttle; thread-safe, so one can be shared by threads (or by every task of
    an asyncio client). Counts are kept in `bucket_s` time buckets and dropped once older than
    `window_s`: memory stays constant however many requests go through."""

    k: float = 2.0  # accepts are multiplied by k: the larger, the later and gentler the throttling
    window_s: float = 30.0  # the history the probability is computed from
    hold_s: float = 1.0  # a held-back try waits about p * hold_s (jittered by +-50%) before asking again
    bucket_s: float = 1.0  # the granularity of the window
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        # isfinite refuses NaN (which compares false to everything) and infinities (inf * 0 is NaN).
        if not (math.isfinite(self.k) and self.k >= 1):
            raise ValueError(f"k must be a finite number of at least 1, got {self.k}")
        if not (math.isfinite(self.window_s) and self.window_s > 0):
            raise ValueError(f"window_s must be a finite number of seconds above 0, got {self.window_s}")
        if not (math.isfinite(self.hold_s) and self.hold_s > 0):
            raise ValueError(f"hold_s must be a finite number of seconds above 0, got {self.hold_s}")
        if not (math.isfinite(self.bucket_s) and 0 < self.bucket_s <= self.window_s):
            raise ValueError(f"bucket_s must be above 0 and at most window_s, got {self.bucket_s}")
        self._buckets_kept = math.ceil(self.window_s / self.bucket_s)
        # [bucket index, requests, accepts], oldest first; at most _buckets_kept of them.
        self._buckets: deque[list[int]] = deque()
        self._lock = threading.Lock()

    def reject_probability(self) -> float:
        """The probability that the next try is held back, from the counts in the window."""
        with self._lock:
            return self._probability(*self._counts())

    def counts(self) -> tuple[int, int]:
        """(requests, accepts) in the window: for reports and tests."""
        with self._lock:
            return self._counts()

    def hold_back(self, *, again: bool = False) -> float | None:
        """Called before each try. None: send it now (record its answer afterwards). Otherwise
        the try is held back and the caller waits that many seconds before asking again, with
        again=True. The wait is jittered, so that tries held back together do not come back
        together, and grows with p: the busier the server looks, the less often a client asks.

        A try held back counts as a request (as in the book: it is what makes the throttle hold
        back harder while the server keeps refusing), once: asking again for the same try is
        the client polling, not more demand. Were each ask counted, tries waiting in the client
        would add requests and no accepts for as long as they wait, so p would keep itself up
        (while above 1/2) long after the server had room again."""
        with self._lock:
            p = self._probability(*self._counts())
            if p <= 0 or self.rng.random() >= p:
                return None
            if not again:
                self._bucket()[1] += 1
            return p * self.hold_s * self.rng.uniform(0.5, 1.5)

    def record(self, accepted: bool) -> None:
        """After each try that got an answer: accepted is False for an overload refusal (429 or
        503), True for any other answer, an error or not. A try that got no answer (a connection
        error) is not recorded: it says nothing about the server's load."""
        with self._lock:
            bucket = self._bucket()
            bucket[1] += 1
            bucket[2] += int(accepted)

    def _probability(self, requests: int, accepts: int) -> float:
        return max(0.0, (requests - self.k * accepts) / (requests + 1))

    def _counts(self) -> tuple[int, int]:
        """Under the lock."""
        self._expire(self._now())
        return sum(b[1] for b in self._buckets), sum(b[2] for b in self._buckets)

    def _now(self) -> int:
        return math.floor(self.clock() / self.bucket_s)

    def _expire(self, now: int) -> None:
        while self._buckets and self._buckets[0][0] <= now - self._buckets_kept:
            self._buckets.popleft()

    def _bucket(self) -> list[int]:
        """The current bucket, made if need be (under the lock)."""
        now = self._now()
        self._expire(now)
        if self._buckets and self._buckets[-1][0] >= now:  # >: a clock that went back
            return self._buckets[-1]
        self._buckets.append([now, 0, 0])
        return self._buckets[-1]


# --- a limit on the tries in flight ---------------------------------------------------------------


class Outcome(enum.Enum):
    """What became of a try, for AdaptiveConcurrency.release and record."""

    ACCEPTED = "accepted"  # any answer but an overload refusal, errors included
    REFUSED = "refused"  # an overload refusal: 429 or 503
    NO_ANSWER = "no answer"  # a connection error, a timeout, a call cancelled: says nothing of the load


@dataclass(eq=False)
class Ticket:
    """A slot of the limit, held by one try from acquire() to release()."""

    seq: int  # the order in which tries were sent: a refusal of one sent before a decrease is old news
    in_flight: int  # tries in flight when it was sent, itself included
    limit: float  # the limit when it was sent
    sent: float = 0.0  # when it was sent (the limit's clock)
    recorded: bool = False  # its outcome has been counted
    released: bool = False  # its slot has been given back


class _Waiter:
    """A caller waiting for a slot: an asyncio future (on its loop) or a threading event."""

    __slots__ = ("event", "future", "loop", "ticket")

    def __init__(
        self,
        future: asyncio.Future[Ticket] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        event: threading.Event | None = None,
    ) -> None:
        self.future, self.loop, self.event = future, loop, event
        self.ticket: Ticket | None = None  # set (under the lock) when a slot is handed to it


def _resolve(future: asyncio.Future[Ticket], ticket: Ticket) -> None:
    if not future.done():  # (a cancelled waiter gives its slot back itself)
        future.set_result(ticket)


@dataclass(eq=False)
class AdaptiveConcurrency:
    """One client's limit on its tries in flight at once, shared by all its concurrent calls;
    thread-safe, so asyncio tasks (acquire) and threads (acquire_blocking) may share one.

    Slow start: the limit starts at `initial` and grows by 1 per accepted try (it doubles per
    round trip) until the first overload refusal, or until a try takes `slow_start_exit` times
    as long as the fastest so far (a queue is building: HyStart's delay rule, which ends slow
    start before the overshoot that a refusal would end it with). After that, additive increase, deliberately
    slow: 1 / (limit * increase_every) per accepted try, so the limit grows by about 1 every
    `increase_every` round trips. An overload refusal multiplies the limit by `backoff` (at
    least 1), at most once per round trip: a refusal of a try sent before the last decrease was
    an answer to the old limit and is not counted again. A try that got no answer changes
    nothing. The limit stays within 1 to `maximum`, and grows only while it is in use (an
    accepted try counts when at least half the limit it was sent under was in flight as it was
    sent or as it came back), so that a client sending little does not build up a limit it never
    tested. The round trips are told by the order in which tries were sent; time is read only for
    the delay rule.

    Each try takes a slot (acquire) and gives it back with its outcome (release). A refused try
    that will be sent again after the server's Retry-After records its refusal at once (record)
    and keeps its slot through that wait: the clients do so (client.core.Slot).
    """

    maximum: int  # e.g. a job's --concurrency
    initial: float = 1.0
    increase_every: float = 4.0  # round trips per +1 after the first refusal
    backoff: float = 0.5  # the factor on a refusal
    # Slow start also ends, with no decrease, when a try comes back this many times slower than the
    # fastest seen (a queue is building at the server: the limit is near what it takes).
    slow_start_exit: float = 2.0
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.maximum, bool) or not isinstance(self.maximum, int) or self.maximum < 1:
            raise ValueError(f"maximum must be a whole number of at least 1, got {self.maximum!r}")
        if not (math.isfinite(self.initial) and 1 <= self.initial <= self.maximum):
            raise ValueError(f"initial must be from 1 to maximum ({self.maximum}), got {self.initial}")
        if not (math.isfinite(self.increase_every) and self.increase_every > 0):
            raise ValueError(f"increase_every must be a finite number above 0, got {self.increase_every}")
        if not (math.isfinite(self.slow_start_exit) and self.slow_start_exit > 1):
            raise ValueError(f"slow_start_exit must be a finite number above 1, got {self.slow_start_exit}")
        if not (math.isfinite(self.backoff) and 0 < self.backoff < 1):
            raise ValueError(f"backoff must be a number between 0 and 1 (both excluded), got {self.backoff}")
        self._limit = float(self.initial)
        self._slow_start = True
        self._in_flight = 0
        self._next_seq = 0
        self._recover_seq = 0  # refusals of tries sent before this one decrease nothing
        self._decreases = 0
        self._lowest: float | None = None  # the lowest limit after a decrease
        self._fastest: float | None = None  # the shortest round trip of an accepted try
        self._waiters: deque[_Waiter] = deque()
        self._lock = threading.Lock()

    # -- what it stands at (for reports and tests)

    @property
    def limit(self) -> float:
        """The limit; floor(limit) tries may be in flight."""
        return self._limit

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def decreases(self) -> int:
        """Refusals that decreased the limit."""
        return self._decreases

    @property
    def lowest(self) -> float | None:
        """The lowest the limit was after a decrease; None while it never decreased."""
        return self._lowest

    @property
    def waiting(self) -> int:
        """Callers waiting for a slot."""
        return len(self._waiters)

    # -- taking and giving back slots

    async def acquire(self) -> Ticket:
        """Wait until fewer than floor(limit) tries are in flight; the slot is this try's until
        release(ticket, outcome). Callers are served first come, first served. A caller
        cancelled while it waits gives up its place (or the slot, if it had just got one)."""
        with self._lock:
            if not self._waiters and self._in_flight < self._slots():
                return self._grant()
            loop = asyncio.get_running_loop()
            waiter = _Waiter(future=loop.create_future(), loop=loop)
            self._waiters.append(waiter)
        assert waiter.future is not None
        try:
            return await waiter.future
        except BaseException:
            self._give_up(waiter)
            raise

    def acquire_blocking(self) -> Ticket:
        """As acquire(), for threads: blocks the calling thread."""
        with self._lock:
            if not self._waiters and self._in_flight < self._slots():
                return self._grant()
            waiter = _Waiter(event=threading.Event())
            self._waiters.append(waiter)
        assert waiter.event is not None
        try:
            waiter.event.wait()
        except BaseException:  # e.g. KeyboardInterrupt
            self._give_up(waiter)
            raise
        assert waiter.ticket is not None
        return waiter.ticket

    def release(self, ticket: Ticket, outcome: Outcome) -> None:
        """Give the try's slot back and record what became of it (see the class), unless
        record() did already."""
        with self._lock:
            if ticket.released:
                raise ValueError("this ticket's slot was given back already")
            if not ticket.recorded:
                self._record(ticket, outcome)
            ticket.released = True
            self._in_flight -= 1
            self._wake()

    def record(self, ticket: Ticket, outcome: Outcome) -> None:
        """Record what became of a try now, and keep its slot until release(): for a refused try
        that waits out the server's Retry-After before it is sent again. Such a try is still the
        client's work in flight (as a lost packet is to TCP until it is sent again): were its
        slot free, another try would go at once to a server that has just said it takes none."""
        with self._lock:
            if ticket.released or ticket.recorded:
                raise ValueError("this ticket's outcome was recorded already")
            self._record(ticket, outcome)
            self._wake()  # a larger limit has room for more

    # -- under the lock

    def _record(self, ticket: Ticket, outcome: Outcome) -> None:
        ticket.recorded = True
        in_use = max(ticket.in_flight, self._in_flight)  # this try included both times
        if outcome is Outcome.REFUSED:
            if ticket.seq >= self._recover_seq:
                self._limit = max(1.0, self._limit * self.backoff)
                self._slow_start = False
                self._recover_seq = self._next_seq
                self._decreases += 1
                self._lowest = self._limit if self._lowest is None else min(self._lowest, self._limit)
        elif outcome is Outcome.ACCEPTED:
            took = self.clock() - ticket.sent
            if self._slow_start and self._fastest is not None and took > self.slow_start_exit * self._fastest:
                self._slow_start = False  # (HyStart's delay rule: leave before the queue overflows)
            self._fastest = took if self._fastest is None else min(self._fastest, took)
            if 2 * in_use >= ticket.limit:
                step = 1.0 if self._slow_start else 1.0 / (self._limit * self.increase_every)
                self._limit = min(float(self.maximum), self._limit + step)

    def _slots(self) -> int:
        return math.floor(self._limit)

    def _grant(self) -> Ticket:
        self._in_flight += 1
        self._next_seq += 1
        return Ticket(self._next_seq - 1, self._in_flight, self._limit, self.clock())

    def _wake(self) -> None:
        """Hand free slots to the callers waiting longest."""
        while self._waiters and self._in_flight < self._slots():
            waiter = self._waiters.popleft()
            waiter.ticket = self._grant()
            if waiter.event is not None:
                waiter.event.set()
                continue
            assert waiter.future is not None and waiter.loop is not None
            try:
                waiter.loop.call_soon_threadsafe(_resolve, waiter.future, waiter.ticket)
            except RuntimeError:  # its loop has closed: nobody is waiting there any more
                waiter.ticket = None
                self._in_flight -= 1

    def _give_up(self, waiter: _Waiter) -> None:
        """A waiter that stops waiting: out of the queue, or its slot back (unused: no outcome)."""
        with self._lock:
            if waiter.ticket is None:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                return
            waiter.ticket.released = True
            self._in_flight -= 1
            self._wake()
