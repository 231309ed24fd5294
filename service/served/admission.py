"""Admission to a model's queue: whether work may be queued now, and the refusal when it may not
(429 with a Retry-After, 504 for a deadline that cannot be met).

One `Admission` per queue (service.served.batcher.Batcher), configured by one `QueuePolicy`: the
queue bounded in work units (memory) and in seconds of work at the model's measured pace
(service.served.pace), room held for admitted uploads while they are decoded, and shedding (once a
request is refused for want of room, all new work is, until the queue is half empty). It is apart
from the batcher so that the HTTP layer's door (service.transport.door) can ask it alone, and so
that a new rule of admission (priorities, quotas) has one place to go: the policy and this module.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from contract.errors import DeadlineExceeded, QueueFull
from service.metrics import BatcherMetrics
from service.request_ids import current_request_id
from service.served.lanes import Lanes
from service.served.pace import Pace

if TYPE_CHECKING:
    from service.config import Settings

log = logging.getLogger("gan.batching")


@dataclass(frozen=True)
class QueuePolicy:
    """What one model's queue takes before it refuses work: every rule of admission is here."""

    max_queue_units: int  # work units queued, or held for admitted requests
    max_queue_s: float  # seconds of queued work at the model's pace; 0: bounded in units only

    @classmethod
    def from_settings(cls, settings: Settings, max_queue_units: int) -> QueuePolicy:
        """max_queue_units: the bound in the model's own work units (ServedModel.batch_limits:
        images, or tiles)."""
        return cls(max_queue_units, settings.max_queue_ms / 1000)

    @property
    def resume_units(self) -> int:
        """A shedding queue takes work again once down to half its bounds: this in units..."""
        return self.max_queue_units // 2

    @property
    def resume_s(self) -> float:
        """...and this in seconds of work."""
        return self.max_queue_s / 2


class HeldRoom:
    """Room in a queue held for one request's rows between its admission and their queueing (an
    upload's decoding): a burst of uploads admitted at once cannot overfill the queue, and none
    is refused for want of room after its decoding. Made by Admission.admit; `units` is what is
    still held. `idle`: the model was idle when the request was admitted, so no estimate refuses
    its rows (see Admission.admit_rows)."""

    __slots__ = ("idle", "units")

    def __init__(self, units: int, idle: bool = False) -> None:
        self.units = units
        self.idle = idle


class Shedding:
    """The queues refusing all new work now (on the event loop): the door (service.transport.door)
    looks at requests only while there are some. `on_room` callbacks run (on the event loop) when a
    shedding queue has drained to where it takes work again."""

    def __init__(self) -> None:
        self._queues: set[Admission] = set()
        self.on_room: list[Callable[[Admission], None]] = []

    def __bool__(self) -> bool:
        if not self._queues:
            return False
        for admission in list(self._queues):
            admission.shedding  # noqa: B018 (asking ends the shedding of a queue drained enough)
        return bool(self._queues)

    def started(self, admission: Admission) -> None:
        self._queues.add(admission)

    def ended(self, admission: Admission) -> None:
        self._queues.discard(admission)

    def room(self, admission: Admission) -> None:
        """On the event loop, told by a lane: the queue is down to where it takes work."""
        if not admission.shedding:  # (which ends its shedding)
            for callback in self.on_room:
                callback(admission)
        else:  # the lane counted otherwise (a batch it had just cut, a new pace): tell again
            admission._room_told = False


class Admission:
    """Admission to one queue. On the event loop, but `queued_units` (kept by the batcher under
    its lanes' condition) and `room_found` (on a lane)."""

    def __init__(
        self,
        name: str,
        policy: QueuePolicy,
        lanes: Lanes,
        metrics: BatcherMetrics,
        shedding: Shedding | None = None,
        unit: str = "row",
    ) -> None:
        self.name = name
        self.unit = unit  # what a work unit is, for messages: an image, a tile
        self.policy = policy
        self.lanes = lanes
        # Seconds per batch, measured by the lanes (service.served.pace): for the bound in time,
        # Retry-After and deadlines.
        self.pace = Pace()
        # The numbers every request is checked against, copied out of the policy and the lanes.
        self._max_units = policy.max_queue_units
        self._max_s = policy.max_queue_s
        self._resume_units = policy.resume_units
        self._resume_s = policy.resume_s
        self._batch_units = lanes.max_units
        self._lane_count = lanes.count
        self._metrics = metrics
        self.queued_units = 0  # in the queue (the batcher's, under the lanes' condition)
        self.held_units = 0  # held for admitted requests, not queued yet (HeldRoom)
        # Shedding: written on the event loop only. The lanes read the flag (and _room_told, set
        # once per shedding) to tell the loop of room again; it ends when the event loop next
        # asks and finds the queue drained enough.
        self._shedding = False
        self._room_told = False  # the lanes told the event loop the shedding queue has room again
        self._shedding_message = (
            f"model {name}: overloaded; new work is refused until its queue is half empty; retry later"
        )
        self._shedding_queues = shedding if shedding is not None else Shedding()

    # --- room --------------------------------------------------------------------------------

    def check_room(self, units: int) -> None:
        """Raise QueueFull unless `units` more work units are taken now: the queue is not shedding
        and they fit."""
        if (
            self.shedding
            or self.queued_units + self.held_units + units > self._max_units
            or self._over_time()
        ):
            raise self.refuse()

    @contextlib.contextmanager
    def admit(self, units: int) -> Iterator[HeldRoom]:
        """check_room, then room for `units` held until they are queued (the batcher's enqueue,
        `held`) or the block ends (what was not queued is given back)."""
        self.check_room(units)
        held = HeldRoom(units, idle=self.idle())
        self.held_units += units
        try:
            yield held
        finally:
            self.held_units -= held.units

    def admit_rows(self, units: int, deadline: float, now: float, held: HeldRoom | None) -> int | None:
        """Whether one job's `units` rows may be queued now (QueueFull when there is no room):
        None when they can be done by `deadline`, else the units queued ahead of them (too_late
        says why not). held: the room admit() held for them (the request was admitted before
        some work of its own, an upload's decoding); they are then taken whatever came meanwhile.
        The estimate refuses nothing while the model is idle (when the request was admitted, with
        held room): it can only be corrected by running work (service.served.pace)."""
        if held is None:
            self.check_room(units)
            idle, before = self.idle(), self.queued_units + self.held_units
        elif units > held.units:
            raise ValueError(f"{units} rows, but room was held for {held.units}")
        else:  # what is queued, then these rows: others' held rows will queue behind them
            idle, before = held.idle, self.queued_units
        done_in = self._rounds(before + units) * self.batch_seconds()  # until these rows are done
        if not idle and now + done_in > deadline:
            self._metrics.rejected("deadline")
            return before
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "model %s: request %s queued %d %ss (%s; about %.3f s until they are done)",
                self.name,
                current_request_id(),
                units,
                self.unit,
                "model idle" if idle else f"{before} {self.unit}s queued before them",
                done_in,
            )
        return None

    def queued_held(self, held: HeldRoom, units: int) -> None:
        """`units` rows of held room are queued now (and counted in queued_units)."""
        held.units -= units
        self.held_units -= units

    def idle(self) -> bool:
        """Whether the model has nothing to do: no batch running on its lanes, nothing queued on
        them, no room held in this queue for an admitted request (every served model has one
        queue). Read on the event loop without the lanes' condition: a batch ending meanwhile
        only makes it idle a moment later."""
        return self.lanes.running == 0 and not self.lanes.ready and self.held_units == 0

    # --- estimates -----------------------------------------------------------------------------

    def batch_seconds(self) -> float:
        """The pace now: as measured while a batch runs, decaying while none does."""
        return self.pace.seconds(self.lanes.running > 0)

    def estimated_wait(self, extra_units: int = 0) -> float:
        """Seconds until `extra_units` more rows would be done: the batches ahead of them and the
        running ones, `lanes` at a time."""
        return self._rounds(self.queued_units + self.held_units + extra_units) * self.batch_seconds()

    def _rounds(self, units: int | None = None) -> int:
        """The rounds of batches (one per lane at a time) before `units` (default: all taken)
        would be done, after the running ones."""
        units = self.queued_units + self.held_units if units is None else units
        batches = math.ceil(units / self._batch_units) + self.lanes.running
        return math.ceil(batches / self._lane_count)

    def _over_time(self) -> bool:
        """Whether the work queued now would take the lanes longer than max_queue_s. Never while
        it is at most the running batches and one more for each lane: a model whose batches are
        slow keeps its lanes busy."""
        if self._max_s <= 0:
            return False
        rounds = self._rounds()
        return rounds > 2 and rounds * self.batch_seconds() > self._max_s

    # --- shedding and refusals -----------------------------------------------------------------

    def _room_again(self) -> bool:
        """Whether a shedding queue is down to half its bounds (from the event loop or a lane)."""
        if self.queued_units + self.held_units > self._resume_units:
            return False
        if self._max_s <= 0:
            return True
        rounds = self._rounds()
        return rounds <= 1 or rounds * self.batch_seconds() <= self._resume_s

    @property
    def shedding(self) -> bool:
        """Whether all new work is refused now (on the event loop)."""
        if self._shedding and self._room_again():
            self._end_shedding()
        return self._shedding

    def _end_shedding(self) -> None:
        self._shedding = False
        self._metrics.shedding.dec()
        self._shedding_queues.ended(self)

    def close(self) -> None:
        """The queue is retired: it sheds no more."""
        if self._shedding:
            self._end_shedding()

    def room_found(self) -> bool:
        """On a lane, under the lanes' condition, once a batch is cut: whether a shedding queue is
        down to where it takes work again, and the event loop is yet to hear of it (room_again)."""
        # (a bool the event loop writes, read here: at worst the loop hears of it one batch late)
        if self._shedding and not self._room_told and self._room_again():
            self._room_told = True
            return True
        return False

    def room_again(self) -> None:
        """On the event loop, from a lane that found room (room_found)."""
        self._shedding_queues.room(self)

    def refuse(self) -> QueueFull:
        """Count a refusal for want of room and shed from now on (on the event loop): the error to
        answer with."""
        message, retry_after = self.refusal()
        return QueueFull(message, retry_after=retry_after)

    def refusal(self, request_id: str | None = None) -> tuple[str, int]:
        """As refuse, for the door (service.transport.door), which writes its answer without an
        exception (and names the request, which no context names there): (the message, the
        Retry-After in whole seconds: the time the work ahead takes)."""
        self._metrics.rejected("queue_full")
        wait = self.estimated_wait()
        retry_after = max(1, math.ceil(wait))
        taken = self.queued_units + self.held_units
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "model %s: request %s refused: %s (%d %ss queued or held, about %.3f s of work)",
                self.name,
                request_id or current_request_id(),
                "shedding" if self._shedding else "queue full",
                taken,
                self.unit,
                wait,
            )
        if self._shedding:
            return self._shedding_message, retry_after
        self._shedding = True
        self._room_told = False
        self._metrics.shedding.inc()
        self._shedding_queues.started(self)
        return (
            f"model {self.name}: the queue is full ({taken} {self.unit}s waiting, about "
            f"{wait:.1f} s of work); retry later",
            retry_after,
        )

    def too_late(self, before: int, units: int, own_queued: int, left: float) -> DeadlineExceeded:
        """Why rows cannot be done in the `left` seconds (admit_rows said `before` units are ahead
        of them): the work queued ahead of their request and the request's own (`own_queued`: its
        rows queued earlier, an upload's rows of tiles), apart."""
        pace = self.batch_seconds()
        ahead = self._rounds(before - own_queued) * pace
        own = self._rounds(before + units) * pace - ahead
        log.debug(
            "model %s: request %s refused: deadline (%.3f s left)", self.name, current_request_id(), left
        )
        return DeadlineExceeded(
            f"model {self.name}: the deadline cannot be met: about {ahead:.3f} s of work is queued ahead of "
            f"this request, and its own {own_queued + units} {self.unit}s take about {own:.3f} s more; "
            f"{max(0.0, left):.3f} s were left"
        )
