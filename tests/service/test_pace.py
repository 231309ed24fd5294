"""A queue's pace (service.served.pace) and the rule that an estimate never stops the work that would
correct it: an idle model admits whatever its pace says; a stale pace decays."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from contract.errors import DeadlineExceeded
from service.metrics import BatcherMetrics, ServiceMetrics
from service.served.admission import Admission, QueuePolicy
from service.served.batcher import Batcher, CancelToken
from service.served.lanes import Lanes
from service.served.pace import SMOOTHING, Pace


def test_a_pace_nothing_confirms_decays_to_the_fastest_it_has_been() -> None:
    pace = Pace(half_life_s=5.0)
    pace.seed(0.1, now=100.0)
    pace.observe(4.1, ended_at=104.1)  # a starved batch right after: no idle time, usual weight
    slow = (1 - SMOOTHING) * 0.1 + SMOOTHING * 4.1
    assert pace.measured == pytest.approx(slow)
    assert pace.seconds(running=False, now=104.1) == pytest.approx(slow)
    # while nothing runs, the part above the fastest pace (0.1) halves every 5 s
    assert pace.seconds(running=False, now=109.1) == pytest.approx(0.1 + (slow - 0.1) / 2)
    assert pace.seconds(running=False, now=134.1) == pytest.approx(0.1 + (slow - 0.1) / 64)
    # while a batch runs, a new measure is on its way: the pace as measured
    assert pace.seconds(running=True, now=134.1) == pytest.approx(slow)


def test_the_first_batch_after_an_idle_spell_starts_from_the_decayed_pace() -> None:
    pace = Pace(half_life_s=5.0)
    pace.seed(0.1, now=0.0)
    pace.observe(2.1, ended_at=2.1)
    stale = pace.measured
    pace.resume(now=12.1)  # a batch starts after 10 s idle, two half-lives
    decayed = 0.1 + (stale - 0.1) / 4
    # while it runs, the estimate is the decayed pace, not the stale one, however long it runs
    assert pace.seconds(running=True, now=20.0) == pytest.approx(decayed)
    pace.observe(0.1, ended_at=12.2)
    assert pace.measured == pytest.approx((1 - SMOOTHING) * decayed + SMOOTHING * 0.1)
    # a second lane's batch, started while the first ran: no idle spell, no decay
    before = pace.measured
    pace.observe(0.5, ended_at=12.6)
    assert pace.measured == pytest.approx((1 - SMOOTHING) * before + SMOOTHING * 0.5)


def test_nothing_measured_estimates_nothing() -> None:
    assert Pace().seconds(running=False) == 0.0


def queue(max_units: int = 1, lanes: int = 2) -> tuple[Batcher, Admission]:
    """A started queue whose lanes never run (what is queued stays queued); on the event loop."""
    pool = Lanes("m", lanes, max_units)
    metrics = BatcherMetrics(ServiceMetrics(), "m")
    admission = Admission("m", QueuePolicy(1000, 0.0), pool, metrics, unit="tile")
    batcher = Batcher("m", lambda feed: feed["x"], pool, admission, metrics)
    batcher.start()
    return batcher, admission


def rows(count: int) -> dict[str, np.ndarray]:
    return {"x": np.zeros(count, dtype=np.int64)}


def test_an_idle_model_admits_a_request_whatever_its_pace_says() -> None:
    async def scenario() -> None:
        batcher, admission = queue()
        batcher.pace.seed(30.0)  # 30 s a tile: measured while starved of CPU
        deadline = time.monotonic() + 10  # the request's own 8 tiles would take 120 s at that pace
        assert admission.idle()
        batcher.enqueue(rows(8), deadline, CancelToken())
        # not idle any more: the estimate counts, and says what it counts
        with pytest.raises(DeadlineExceeded) as refused:
            batcher.enqueue(rows(2), deadline, CancelToken())
        message = refused.value.message
        assert "about 120.000 s of work is queued ahead of this request" in message
        assert "its own 2 tiles take about 30.000 s more" in message

    asyncio.run(scenario())


def test_an_upload_admitted_while_idle_queues_every_row_of_tiles() -> None:
    async def scenario() -> None:
        batcher, admission = queue()
        batcher.pace.seed(30.0)
        deadline = time.monotonic() + 10
        with admission.admit(12) as held:
            for _ in range(4):  # rows of tiles, queued one after another behind the request's own
                batcher.enqueue(rows(3), deadline, CancelToken(), held=held)
        assert admission.queued_units == 12
        # the next upload finds the model busy: its first row of tiles is done in time (8 rounds of
        # 30 s), its second is not; the refusal counts its first row as its own, not as ahead
        token = CancelToken()
        with admission.admit(6) as late, pytest.raises(DeadlineExceeded) as refused:
            batcher.enqueue(rows(3), time.monotonic() + 250, token, held=late)
            batcher.enqueue(rows(3), time.monotonic() + 250, token, held=late)
        assert admission.queued_units == 15
        assert "about 180.000 s of work is queued ahead" in refused.value.message
        assert "its own 6 tiles take about 90.000 s more" in refused.value.message

    asyncio.run(scenario())
