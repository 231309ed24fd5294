"""A queue's pace: the seconds one batch takes on its model, measured from the batches that run,
smoothed, and trusted less the longer nothing has run to confirm it.

The pace feeds every estimate of queued work (the queue's bound in time, Retry-After, deadlines
that cannot be met). Only running batches correct it, so a pace measured slow (a model starved of
CPU) must not stop all work: the queue admits any request while its model is idle
(service.served.admission), and a pace that nothing has confirmed decays (`Pace.seconds`).
"""

from __future__ import annotations

import threading
import time

# A new batch's weight in the smoothed pace: about the last five batches count.
SMOOTHING = 0.2
# While no batch runs, the part of the pace above the fastest it has been halves every
# HALF_LIFE_S. Why 5 s: the pace bounds a queue to a few seconds of work (max_queue_ms, 4 s by
# default), so an estimate older than that bound describes a machine that may no longer exist;
# after half a minute idle (six half-lives) less than 2 % of a contended pace is left.
HALF_LIFE_S = 5.0


class Pace:
    """Seconds per batch of one queue. `resume` and `observe` are called by the lanes (any
    thread), `seconds` read on the event loop and by the lanes: a read may miss a batch that is
    just starting or ending."""

    def __init__(self, half_life_s: float = HALF_LIFE_S) -> None:
        self.half_life_s = half_life_s
        self._average = 0.0  # 0: nothing measured yet, so nothing is estimated
        self._fastest = 0.0  # the lowest the average has been: the model on a machine to itself
        self._confirmed_at = time.monotonic()  # when a batch last ended (or the pace was seeded)
        self._lock = threading.Lock()  # lanes end batches at the same time

    def seed(self, seconds: float, now: float | None = None) -> None:
        """Start from one measured batch (the warm-up's largest), as if it had just ended."""
        with self._lock:
            self._average = self._fastest = seconds
            self._confirmed_at = time.monotonic() if now is None else now

    def resume(self, now: float | None = None) -> None:
        """A batch starts while none runs: the pace it will join is the one decayed over the idle
        spell, and it holds, undecayed, while batches run (the estimates made meanwhile, and
        the batch's own measure, start from it)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._average = self._decayed(now)
            self._confirmed_at = max(self._confirmed_at, now)

    def observe(self, elapsed: float, ended_at: float | None = None) -> None:
        """A batch that ran for `elapsed` seconds and ended at `ended_at` (monotonic, default now)
        joins the smoothed pace. The fastest pace, the floor of the decay, only falls as the
        smoothed one does: a partial batch's own time would make it too low."""
        ended_at = time.monotonic() if ended_at is None else ended_at
        with self._lock:
            if self._average == 0:
                self._average = self._fastest = elapsed
            else:
                self._average = (1 - SMOOTHING) * self._average + SMOOTHING * elapsed
                self._fastest = min(self._fastest, self._average)
            self._confirmed_at = max(self._confirmed_at, ended_at)

    def seconds(self, running: bool, now: float | None = None) -> float:
        """The seconds one batch is expected to take. While a batch runs (`running`), the smoothed
        pace (decayed when the first of them started: `resume`): a new measure is on its way.
        While none runs, the part above the fastest pace halves every half-life since the last
        batch ended: contention that has ended shows in no batch, and only a batch can show it."""
        if running:
            return self._average
        return self._decayed(time.monotonic() if now is None else now)

    def _decayed(self, now: float) -> float:
        idle = max(0.0, now - self._confirmed_at)
        excess = self._average - self._fastest
        return self._fastest + excess * 0.5 ** (idle / self.half_life_s)

    @property
    def measured(self) -> float:
        """The smoothed pace as last measured, before any decay (for metrics and tests)."""
        return self._average
