"""Adaptive client-side throttling: the throttle alone (a fake clock, a seeded rng), how the
clients record answers and hold tries back (stub servers), a burst against a real server that
refuses, and the CLI's options; then the adaptive concurrency limit alone, in the clients, and
for a few jobs against a real server."""

from __future__ import annotations

import asyncio
import http.server
import json
import math
import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from client import (
    AdaptiveConcurrency,
    AdaptiveThrottle,
    AsyncGanClient,
    GanClient,
    Overloaded,
    RequestRejected,
    RetryPolicy,
)
from client.arguments import build_parser
from client.cli import _concurrency, _throttle, limit_note, main
from client.errors import ServerFailed, ServerUnreachable
from client.throttle import Outcome, Ticket
from tests.live_server import Server, free_port

FAST = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.05)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class NeverHolds(random.Random):
    """An rng under which a try is held back only when p is (almost) 1, which it never is."""

    def random(self) -> float:
        return 1.0 - 1e-12


def throttle_with(requests: int, accepts: int, **options: object) -> AdaptiveThrottle:
    """A throttle (on a fake clock unless given one) that has seen `requests` answers, `accepts`
    of them accepts."""
    options.setdefault("clock", FakeClock())
    throttle = AdaptiveThrottle(**options)  # type: ignore[arg-type]
    for i in range(requests):
        throttle.record(i < accepts)
    return throttle


# --- the throttle alone ---------------------------------------------------------------------------


def test_the_probability_is_the_books_formula() -> None:
    assert throttle_with(0, 0).reject_probability() == 0  # a new client sends everything
    assert throttle_with(10, 2).reject_probability() == pytest.approx((10 - 2 * 2) / 11)
    assert throttle_with(10, 2, k=1.0).reject_probability() == pytest.approx((10 - 2) / 11)
    assert throttle_with(10, 5).reject_probability() == 0  # half refused, K=2: nothing held back yet
    assert throttle_with(10, 9).reject_probability() == 0  # max(0, ...): never negative
    assert throttle_with(4, 0).reject_probability() == pytest.approx(4 / 5)
    assert throttle_with(10, 2).counts() == (10, 2)


def test_the_probability_never_reaches_one() -> None:
    for k in (1.0, 2.0, 10.0):
        for requests in (1, 2, 3, 10, 100, 5000):
            for accepts in sorted({0, 1, requests // 3, requests}):
                p = throttle_with(requests, accepts, k=k).reject_probability()
                assert 0 <= p < 1, (k, requests, accepts, p)
    # A client that has only ever been refused, and whose every hold-back counts as a request,
    # still sends a try in the end.
    throttle = throttle_with(100, 0, rng=random.Random(1))
    holds = 0
    while throttle.hold_back() is not None:
        holds += 1
        assert holds < 100_000
    assert throttle.counts() == (100 + holds, 0) and throttle.reject_probability() < 1


def test_counts_expire_with_the_window() -> None:
    clock = FakeClock(0.0)
    throttle = AdaptiveThrottle(window_s=10, clock=clock)
    for _ in range(20):
        throttle.record(False)  # at t=0
    clock.now = 5.5
    for _ in range(4):
        throttle.record(True)
    assert throttle.counts() == (24, 4)
    clock.now = 9.9  # still within 10 s of the first bucket
    assert throttle.counts() == (24, 4)
    clock.now = 10.0  # the first second of history has gone
    assert throttle.counts() == (4, 4) and throttle.reject_probability() == 0
    clock.now = 16.0
    assert throttle.counts() == (0, 0)
    # Memory stays constant: one bucket per second of the window at most.
    for second in range(100):
        clock.now = 20.0 + second
        throttle.record(False)
    assert throttle.counts() == (10, 0) and len(throttle._buckets) <= 10


def test_a_held_back_request_counts_as_a_request() -> None:
    throttle = throttle_with(30, 0, rng=random.Random(3))
    before = throttle.counts()
    wait = throttle.hold_back()
    while wait is None:  # p = 30/31: almost always held back
        wait = throttle.hold_back()
    assert throttle.counts() == (before[0] + 1, 0)
    # Asking again for the same try is not more demand: it is not counted again.
    for _ in range(50):
        throttle.hold_back(again=True)
    assert throttle.counts() == (before[0] + 1, 0)
    # A try let through is not counted until its answer is recorded.
    free = throttle_with(0, 0)
    assert free.hold_back() is None and free.counts() == (0, 0)
    free.record(True)
    assert free.counts() == (1, 1)


def test_tries_waiting_in_the_client_do_not_keep_it_throttled() -> None:
    """After a burst refused but for one (p = 14/17), the server has room again: the 15 tries
    held in the client go out as they ask again, and p falls rather than feeding on their asks."""
    throttle = throttle_with(16, 1, rng=random.Random(2))
    start = throttle.reject_probability()
    waiting = {i: False for i in range(15)}  # try -> held back before
    rounds = 0
    while waiting:
        rounds += 1
        for i, again in list(waiting.items()):
            if throttle.hold_back(again=again) is None:
                throttle.record(True)  # the server accepts what is sent
                del waiting[i]
            else:
                waiting[i] = True
        assert rounds < 100
    requests, accepts = throttle.counts()
    assert accepts == 16 and requests <= 16 + 15 + 15  # the burst, each try held once at most, sent
    assert throttle.reject_probability() < start


def test_the_wait_is_jittered_and_bounded() -> None:
    throttle = throttle_with(50, 0, rng=random.Random(7), hold_s=2.0)
    waits = []
    for _ in range(300):
        p = throttle.reject_probability()
        wait = throttle.hold_back()
        if wait is not None:
            assert 0.5 * p * 2.0 <= wait <= 1.5 * p * 2.0  # about p * hold_s, +-50%
            waits.append(wait)
    assert len(waits) > 250 and len({round(w, 6) for w in waits}) > 200  # spread out, not in step
    assert max(waits) <= 3.0  # p < 1: never above 1.5 * hold_s
    # The busier the server looks, the longer a client waits.
    low = throttle_with(10, 4, rng=random.Random(7), hold_s=2.0)  # p = 2/11
    first = next(w for w in iter(low.hold_back, 0.0) if w is not None)  # tries let through count nothing
    assert first <= 1.5 * 2 / 11 * 2.0 < 0.5 * 50 / 51 * 2.0 <= min(waits)


def test_bad_parameters_are_refused() -> None:
    for options, words in [
        ({"k": 0.5}, "k must be"),
        ({"k": math.nan}, "k must be"),
        ({"k": math.inf}, "k must be"),
        ({"window_s": 0}, "window_s must be"),
        ({"window_s": -1.0}, "window_s must be"),
        ({"hold_s": 0}, "hold_s must be"),
        ({"window_s": 2.0, "bucket_s": 3.0}, "bucket_s must be"),
    ]:
        with pytest.raises(ValueError, match=words):
            AdaptiveThrottle(**options)  # type: ignore[arg-type]
    assert AdaptiveThrottle(k=1.0).k == 1.0


def test_threads_can_share_one() -> None:
    throttle = AdaptiveThrottle(clock=FakeClock())

    def work() -> None:
        for i in range(2000):
            throttle.hold_back()
            throttle.record(i % 2 == 0)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    requests, accepts = throttle.counts()
    assert accepts == 4000 and requests == 8000  # half accepted, K=2: nothing was held back


# --- the clients: what they record, how long they hold a call back -----------------------------


class _Scripted(http.server.BaseHTTPRequestHandler):
    """Answers each request with the next status of `script` (the last one over and over): JSON
    for GET /v1/models and POST /generate, an NDJSON stream when asked for one; records paths."""

    script: ClassVar[list[int]] = []
    seen: ClassVar[list[str]] = []

    def _answer(self) -> None:
        if self.command == "POST":
            self.rfile.read(int(self.headers["Content-Length"]))
        status = self.script[min(len(self.seen), len(self.script) - 1)]
        self.seen.append(self.path)
        kind = "application/json"
        if status >= 400:
            body = b'{"error":{"code":"busy","message":"scripted"}}'
        elif self.path.startswith("/v1/models"):
            body = b'{"models":[],"failed":{}}'
        elif self.headers.get("Accept") == "application/x-ndjson":
            kind = "application/x-ndjson"
            image = '{"index":0,"seed":1,"label":null,"label_name":null,"data":"aGk="}'
            body = f'{{"model":"m","n":1}}\n{image}\n'.encode()
        else:
            image = {"seed": 1, "label": None, "label_name": None, "data": "aGk="}
            answer = {"model": "m", "version": 1, "format": "png", "height": 1, "width": 1, "channels": 1}
            body = json.dumps({**answer, "images": [image]}).encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[Callable[[list[int]], str]]:
    """scripted([429, 200]): a stub's URL, answering those statuses in turn."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(script: list[int]) -> str:
        _Scripted.script, _Scripted.seen = script, []
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()


def test_429_and_503_are_refusals_any_other_answer_an_accept(scripted: Callable[[list[int]], str]) -> None:
    throttle = AdaptiveThrottle(rng=NeverHolds())
    with GanClient(scripted([429, 503, 200]), retry=FAST, throttle=throttle) as gan:
        assert gan.models() == []
    assert throttle.counts() == (3, 1)
    with GanClient(scripted([404]), retry=FAST, throttle=throttle) as gan, pytest.raises(RequestRejected):
        gan.models()
    assert throttle.counts() == (4, 2)  # an error about the request: the server took it on
    with (
        GanClient(scripted([502, 504, 500]), retry=FAST, throttle=throttle) as gan,
        pytest.raises(ServerFailed),
    ):
        gan.models()
    assert throttle.counts() == (7, 5)
    # A stream: its answer's status is recorded, whatever the stream does afterwards.
    with GanClient(scripted([429, 200]), retry=FAST, throttle=throttle) as gan:
        assert [i for i, _ in gan.generate_stream(1)] == [0]
    assert throttle.counts() == (9, 6)
    # No answer at all says nothing about the server's load.
    unreachable = f"http://127.0.0.1:{free_port()}"
    with GanClient(unreachable, retry=FAST, throttle=throttle) as gan, pytest.raises(ServerUnreachable):
        gan.models()
    assert throttle.counts() == (9, 6)


def test_the_async_client_records_the_same(scripted: Callable[[list[int]], str]) -> None:
    throttle = AdaptiveThrottle(rng=NeverHolds())

    async def scenario() -> None:
        async with AsyncGanClient(scripted([503, 429, 200]), retry=FAST, throttle=throttle) as gan:
            assert (await gan.generate(1)).images[0].data == b"hi"
        async with AsyncGanClient(scripted([429, 200]), retry=FAST, throttle=throttle) as gan:
            assert [i async for i, _ in gan.generate_stream(1)] == [0]

    asyncio.run(scenario())
    assert throttle.counts() == (5, 2)


@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_held_back_try_spends_no_attempt_and_a_call_is_held_at_most_its_patience(
    scripted: Callable[[list[int]], str], asynchronous: bool
) -> None:
    """A server that refuses everything: the throttle holds the first try back (p = 1000/1001),
    but never longer in all than the retry policy's own patience; every attempt is still made."""
    policy = RetryPolicy(attempts=3, base_delay_s=0.04, max_delay_s=0.04)
    assert policy.patience() == pytest.approx(0.08)
    throttle = throttle_with(1000, 0, rng=random.Random(5), hold_s=0.01, clock=lambda: 0.0)
    held: list[float] = []
    url = scripted([429])
    options = {"retry": policy, "throttle": throttle, "on_hold": held.append}
    if asynchronous:

        async def scenario() -> None:
            async with AsyncGanClient(url, **options) as gan:  # type: ignore[arg-type]
                await gan.models()

        with pytest.raises(Overloaded):
            asyncio.run(scenario())
    else:
        with GanClient(url, **options) as gan, pytest.raises(Overloaded):  # type: ignore[arg-type]
            gan.models()
    assert len(_Scripted.seen) == 3  # every attempt went out
    assert len(held) > 1 and sum(held) == pytest.approx(policy.patience())
    assert throttle.counts() == (1000 + 1 + 3, 0)  # the held try once, however often it asked; 3 tries


def test_a_client_gets_its_own_throttle_unless_told_otherwise() -> None:
    with GanClient("http://127.0.0.1:9") as one, GanClient("http://127.0.0.1:9") as two:
        assert isinstance(one.throttle, AdaptiveThrottle) and one.throttle is not two.throttle
        assert one.throttle.k == 2.0
    shared = AdaptiveThrottle(k=3.0)
    with (
        GanClient("http://127.0.0.1:9", throttle=shared) as gan,
        GanClient("http://127.0.0.1:9", throttle=None) as off,
    ):
        assert gan.throttle is shared and off.throttle is None


# --- against a real server that refuses ---------------------------------------------------------


def test_a_throttled_burst_is_refused_less_and_still_all_done(make_server: Callable[..., Server]) -> None:
    """The same burst of concurrent requests twice, against a queue that holds one of them: each
    call is retried until it is done. Unthrottled, the refused calls all come back after the
    server's Retry-After and are refused again; throttled, the client holds most of them back
    (p is about 0.9 after the first wave), and fewer of its tries are refused."""
    srv = make_server(["digits"], max_queue_units=16)
    policy = RetryPolicy(attempts=40, base_delay_s=0.05, max_delay_s=0.5)  # every call gets done

    def burst(throttle: AdaptiveThrottle | None) -> tuple[int, int]:
        """(images made, tries refused, as the server counted them)."""
        before = srv.metric("gan_rejections_total", reason="queue_full")

        async def scenario() -> int:
            async with AsyncGanClient(srv.url, retry=policy, throttle=throttle) as gan:
                results = await asyncio.gather(*(gan.generate(16, seed=100 * i) for i in range(32)))
            return sum(len(r.images) for r in results)

        made = asyncio.run(scenario())
        return made, int(srv.metric("gan_rejections_total", reason="queue_full") - before)

    made_plain, refused_plain = burst(None)
    made_throttled, refused_throttled = burst(AdaptiveThrottle(rng=random.Random(0)))
    assert made_plain == made_throttled == 32 * 16
    assert refused_plain > 0  # the burst did overload the server
    assert refused_throttled < refused_plain, (refused_throttled, refused_plain)


# --- the CLI -------------------------------------------------------------------------------------


def test_cli_throttle_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nowhere = "http://127.0.0.1:9"  # nothing listens: a request would fail with exit 1, not 2
    for k in ("0.5", "nan", "-3"):
        args = ["generate", "--n", "4", "--out", str(tmp_path / "out"), "--url", nowhere]
        assert main([*args, "--throttle-k", k]) == 2
        assert "--throttle-k must be a number of at least 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before anything was done

    parser = build_parser()
    default = parser.parse_args(["generate", "--n", "4", "--out", "x"])
    throttle = _throttle(default)
    assert isinstance(throttle, AdaptiveThrottle) and throttle.k == 2.0  # on by default
    gentle = _throttle(parser.parse_args(["upscale", "in", "out", "--throttle-k", "3"]))
    assert gentle is not None and gentle.k == 3.0
    off = parser.parse_args(["generate", "--n", "4", "--out", "x", "--no-throttle"])
    assert off.no_throttle and _throttle(off) is None
    with pytest.raises(SystemExit) as both:
        parser.parse_args(["generate", "--n", "4", "--out", "x", "--no-throttle", "--throttle-k", "3"])
    assert both.value.code == 2


# --- the concurrency limit alone ------------------------------------------------------------------
# No clock: a round trip is told by the order tries were sent in, so these need no fake time.


def take(limit: AdaptiveConcurrency, tries: int | None = None) -> list[Ticket]:
    """`tries` slots (default: all the free ones), each available at once."""
    count = math.floor(limit.limit) - limit.in_flight if tries is None else tries
    tickets = []
    for _ in range(count):
        assert limit.in_flight < math.floor(limit.limit), "no free slot"
        tickets.append(limit.acquire_blocking())
    return tickets


def round_trip(limit: AdaptiveConcurrency, outcome: Outcome = Outcome.ACCEPTED) -> int:
    """Every free slot taken, then every answer in: the tries sent."""
    tickets = take(limit)
    for ticket in tickets:
        limit.release(ticket, outcome)
    return len(tickets)


def still() -> float:
    """A clock that never moves: every round trip takes as long as the fastest (no delay rule)."""
    return 0.0


def test_slow_start_doubles_per_round_trip_up_to_the_maximum() -> None:
    limit = AdaptiveConcurrency(maximum=40, clock=still)
    assert limit.limit == 1 and limit.lowest is None
    sent = [round_trip(limit) for _ in range(7)]
    assert sent == [1, 2, 4, 8, 16, 32, 40]  # +1 per accepted try (slow start); capped at the maximum
    assert limit.limit == 40 and limit.in_flight == 0 and limit.decreases == 0
    assert AdaptiveConcurrency(maximum=40, initial=3).limit == 3


def test_slow_start_ends_without_a_decrease_when_round_trips_grow() -> None:
    now = [0.0]
    limit = AdaptiveConcurrency(maximum=64, clock=lambda: now[0])

    def round_trip_taking(seconds: float) -> None:
        tickets = take(limit)
        now[0] += seconds
        for ticket in tickets:
            limit.release(ticket, Outcome.ACCEPTED)

    round_trip_taking(0.010)
    round_trip_taking(0.012)  # a little slower: still doubling (slow start)
    assert limit.limit == 4
    round_trip_taking(0.030)  # three times the fastest: a queue is building at the server
    assert limit.decreases == 0
    assert 4 < limit.limit < 6  # the first try of the round still doubled; the others, the slow increase
    before = limit.limit
    round_trip_taking(0.010)  # as fast as ever: slow start is over all the same, no doubling
    assert before < limit.limit < before + 1
    with pytest.raises(ValueError, match="slow_start_exit"):
        AdaptiveConcurrency(maximum=4, slow_start_exit=1.0)


def test_the_first_refusal_halves_the_limit_and_ends_slow_start() -> None:
    limit = AdaptiveConcurrency(maximum=64, clock=still)
    for _ in range(4):
        round_trip(limit)
    assert limit.limit == 16
    tickets = take(limit)
    limit.release(tickets[0], Outcome.REFUSED)
    assert limit.limit == 8
    assert limit.decreases == 1 and limit.lowest == 8
    for ticket in tickets[1:]:  # the rest of the round trip accepted: the slow increase (slow start over)
        limit.release(ticket, Outcome.ACCEPTED)
    assert 8 < limit.limit < 8 + 15 / 32 + 1e-9


def test_a_burst_of_refusals_of_tries_sent_before_the_decrease_halves_once() -> None:
    limit = AdaptiveConcurrency(maximum=16, initial=16)
    tickets = take(limit)
    assert len(tickets) == 16
    for ticket in tickets:  # the server refused a whole round trip
        limit.release(ticket, Outcome.REFUSED)
    assert limit.limit == 8 and limit.decreases == 1
    # A try sent after the decrease is refused: that one is news, and halves again.
    early = take(limit, 2)
    later = limit.acquire_blocking()
    limit.release(early[0], Outcome.REFUSED)
    assert limit.limit == 4 and limit.decreases == 2
    limit.release(early[1], Outcome.REFUSED)  # sent before that decrease
    limit.release(later, Outcome.REFUSED)
    assert limit.limit == 4 and limit.decreases == 2 and limit.lowest == 4
    assert limit.in_flight == 0


def test_after_the_first_refusal_the_limit_grows_by_one_every_few_round_trips() -> None:
    limit = AdaptiveConcurrency(maximum=64, initial=20)
    limit.release(limit.acquire_blocking(), Outcome.REFUSED)
    assert limit.limit == 10
    for _ in range(4):  # increase_every 4: 1 / (limit * 4) per accepted try, +1/4 per round trip
        round_trip(limit)
    assert limit.limit == pytest.approx(11, abs=0.1) and limit.decreases == 1
    for _ in range(8):
        round_trip(limit)
    assert limit.limit == pytest.approx(13, abs=0.2)
    quick = AdaptiveConcurrency(maximum=64, initial=20, increase_every=1)
    quick.release(quick.acquire_blocking(), Outcome.REFUSED)
    round_trip(quick)
    assert quick.limit == pytest.approx(11, abs=0.05)  # increase_every 1: about +1 per round trip


def test_the_limit_stays_between_one_and_the_maximum() -> None:
    limit = AdaptiveConcurrency(maximum=8, initial=8, backoff=0.3)
    for _ in range(10):  # each refused try was sent after the last decrease
        limit.release(limit.acquire_blocking(), Outcome.REFUSED)
    assert limit.limit == 1 and limit.lowest == 1 and limit.decreases == 10
    for _ in range(500):
        round_trip(limit)
    assert limit.limit == 8
    # No answer (a connection error, a cancelled call): no change either way.
    limit.release(limit.acquire_blocking(), Outcome.NO_ANSWER)
    assert limit.limit == 8 and limit.decreases == 10


def test_the_limit_grows_only_while_it_is_in_use() -> None:
    """A caller with one try out at a time does not build up a limit it never tested."""
    limit = AdaptiveConcurrency(maximum=64)
    for _ in range(100):
        limit.release(limit.acquire_blocking(), Outcome.ACCEPTED)
    assert limit.limit == 3  # 1 -> 2 (1 of 1 in use) -> 3 (1 of 2: half) -> no more


def test_acquire_waits_at_the_limit_and_wakes_in_turn_on_release() -> None:
    async def scenario() -> None:
        limit = AdaptiveConcurrency(maximum=4, initial=2)
        first, second = await limit.acquire(), await limit.acquire()
        third = asyncio.create_task(limit.acquire())
        fourth = asyncio.create_task(limit.acquire())
        fifth = asyncio.create_task(limit.acquire())
        await asyncio.sleep(0.01)
        assert not (third.done() or fourth.done() or fifth.done()) and limit.waiting == 3
        fourth.cancel()  # gives up its place
        await asyncio.sleep(0.01)
        assert limit.waiting == 2
        limit.release(first, Outcome.NO_ANSWER)  # a slot frees: the longest waiting gets it
        await asyncio.sleep(0.01)
        assert third.done() and not fifth.done() and limit.in_flight == 2
        # A refusal halves the limit to 1: the slot it frees is not handed on.
        limit.release(second, Outcome.REFUSED)
        await asyncio.sleep(0.01)
        assert limit.limit == 1 and not fifth.done() and limit.in_flight == 1
        limit.release(third.result(), Outcome.ACCEPTED)
        assert (await asyncio.wait_for(fifth, 1)).seq == 3  # 2 went to the third
        limit.release(fifth.result(), Outcome.ACCEPTED)
        assert limit.in_flight == 0 and limit.waiting == 0

    asyncio.run(scenario())


def test_a_waiter_cancelled_as_it_gets_a_slot_gives_it_back() -> None:
    async def scenario() -> None:
        limit = AdaptiveConcurrency(maximum=1)
        held = await limit.acquire()
        waiting = asyncio.create_task(limit.acquire())
        await asyncio.sleep(0.01)
        limit.release(held, Outcome.ACCEPTED)  # the slot is handed to the waiter...
        waiting.cancel()  # ...which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert limit.in_flight == 0
        limit.release(await asyncio.wait_for(limit.acquire(), 1), Outcome.ACCEPTED)

    asyncio.run(scenario())


def test_a_refusal_recorded_counts_at_once_and_its_slot_stays_taken() -> None:
    """record(): what a refused try that waits out the server's Retry-After does."""
    limit = AdaptiveConcurrency(maximum=4, initial=4)
    tickets = take(limit)
    limit.record(tickets[0], Outcome.REFUSED)
    assert limit.limit == 2 and limit.in_flight == 4  # halved now; the slot still taken
    with pytest.raises(ValueError, match="recorded already"):
        limit.record(tickets[0], Outcome.REFUSED)
    limit.release(tickets[0], Outcome.REFUSED)  # after the wait: only the slot comes back
    assert limit.limit == 2 and limit.in_flight == 3 and limit.decreases == 1
    for ticket in tickets[1:]:
        limit.release(ticket, Outcome.ACCEPTED)
    assert limit.in_flight == 0


def test_a_slot_is_given_back_once() -> None:
    limit = AdaptiveConcurrency(maximum=2)
    ticket = limit.acquire_blocking()
    limit.release(ticket, Outcome.ACCEPTED)
    with pytest.raises(ValueError, match="given back already"):
        limit.release(ticket, Outcome.ACCEPTED)
    assert limit.in_flight == 0


def test_threads_share_one_limit() -> None:
    limit = AdaptiveConcurrency(maximum=3)
    lock = threading.Lock()
    peak = [0, 0]  # in flight now, the most at once

    def work(refuse: bool) -> None:
        for i in range(300):
            ticket = limit.acquire_blocking()
            with lock:
                peak[0] += 1
                peak[1] = max(peak[1], peak[0])
                assert peak[0] <= math.floor(limit.limit) or limit.decreases  # a decrease may trail
                peak[0] -= 1
            limit.release(ticket, Outcome.REFUSED if refuse and i % 50 == 0 else Outcome.ACCEPTED)

    threads = [threading.Thread(target=work, args=(i == 0,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert limit.in_flight == 0 and limit.waiting == 0 and 1 <= peak[1] <= 3
    assert 1 <= limit.limit <= 3


def test_bad_concurrency_parameters_are_refused() -> None:
    for options, words in [
        ({"maximum": 0}, "maximum must be"),
        ({"maximum": 2.5}, "maximum must be"),
        ({"maximum": True}, "maximum must be"),
        ({"maximum": 4, "initial": 0.5}, "initial must be"),
        ({"maximum": 4, "initial": 5}, "initial must be"),
        ({"maximum": 4, "initial": math.nan}, "initial must be"),
        ({"maximum": 4, "increase_every": 0}, "increase_every must be"),
        ({"maximum": 4, "increase_every": math.inf}, "increase_every must be"),
        ({"maximum": 4, "backoff": 1.0}, "backoff must be"),
        ({"maximum": 4, "backoff": 0}, "backoff must be"),
        ({"maximum": 4, "backoff": math.nan}, "backoff must be"),
    ]:
        with pytest.raises(ValueError, match=words):
            AdaptiveConcurrency(**options)  # type: ignore[arg-type]
    assert AdaptiveConcurrency(maximum=1).limit == 1


# --- the concurrency limit in the clients ---------------------------------------------------------


@pytest.mark.parametrize("asynchronous", [False, True])
def test_the_clients_take_a_slot_per_try_and_tell_its_outcome(
    scripted: Callable[[list[int]], str], asynchronous: bool
) -> None:
    """A call refused twice, then done: three tries, each in a slot; the first refusal halves
    the limit, the second (a try sent after that decrease) halves it again, the accept adds
    1 / (2 * 4); a stream the same; a connection error changes nothing. No slot is left taken."""
    limit = AdaptiveConcurrency(maximum=8, initial=8)
    url = scripted([429, 503, 200, 429, 200])
    unreachable = f"http://127.0.0.1:{free_port()}"
    options = {"retry": FAST, "throttle": None, "concurrency": limit}
    if asynchronous:

        async def scenario() -> None:
            async with AsyncGanClient(url, **options) as gan:  # type: ignore[arg-type]
                assert (await gan.generate(1)).images[0].data == b"hi"
                assert (limit.limit, limit.in_flight) == (2.125, 0)
                assert [i async for i, _ in gan.generate_stream(1)] == [0]
            async with AsyncGanClient(unreachable, **options) as gan:  # type: ignore[arg-type]
                with pytest.raises(ServerUnreachable):
                    await gan.models()

        asyncio.run(scenario())
    else:
        with GanClient(url, **options) as gan:  # type: ignore[arg-type]
            assert gan.generate(1).images[0].data == b"hi"
            assert (limit.limit, limit.in_flight) == (2.125, 0)
            assert [i for i, _ in gan.generate_stream(1)] == [0]
        with GanClient(unreachable, **options) as gan, pytest.raises(ServerUnreachable):  # type: ignore[arg-type]
            gan.models()
    assert len(_Scripted.seen) == 5 and limit.decreases == 3 and limit.lowest == 2.125 / 2
    assert limit.in_flight == 0 and limit.limit == 2.125 / 2 + 1 / (2.125 / 2 * 4)


@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_refused_try_waits_out_its_retry_in_its_slot(
    scripted: Callable[[list[int]], str], asynchronous: bool
) -> None:
    """429, then 502, then 200: while the call waits after the 429 its slot stays taken (the
    limit halved already), so no other try goes to a server that has just refused; after the
    502 (not a refusal) the slot is free during the wait."""
    limit = AdaptiveConcurrency(maximum=4, initial=4)
    seen: list[tuple[int | None, int, float]] = []

    def on_retry(error: Exception, wait: float) -> None:
        seen.append((getattr(error, "status", None), limit.in_flight, limit.limit))

    url = scripted([429, 502, 200])
    options = {"retry": FAST, "throttle": None, "concurrency": limit, "on_retry": on_retry}
    if asynchronous:

        async def scenario() -> None:
            async with AsyncGanClient(url, **options) as gan:  # type: ignore[arg-type]
                await gan.models()

        asyncio.run(scenario())
    else:
        with GanClient(url, **options) as gan:  # type: ignore[arg-type]
            gan.models()
    assert seen == [(429, 1, 2), (502, 0, 2.125)]  # a 502 is an answer, so an accept: +1 / (2 * 4)
    assert limit.in_flight == 0 and limit.decreases == 1
    # Retries spent on a refusal: the slot comes back all the same.
    url = scripted([429])
    with GanClient(url, **options) as gan, pytest.raises(Overloaded):  # type: ignore[arg-type]
        gan.models()
    assert limit.in_flight == 0


def test_a_client_limits_its_tries_in_flight(scripted: Callable[[list[int]], str]) -> None:
    """32 concurrent calls through a limit of 3: at most 3 tries reach the server at once."""
    _Scripted.peak = _Scripted.now = 0  # type: ignore[attr-defined]
    lock = threading.Lock()
    original = _Scripted._answer

    def counting(self: _Scripted) -> None:
        # Counted while the answer is held back, not while it is written: a client that has its
        # answer may send its next try before this handler's thread runs again.
        with lock:
            _Scripted.now += 1  # type: ignore[attr-defined]
            _Scripted.peak = max(_Scripted.peak, _Scripted.now)  # type: ignore[attr-defined]
        threading.Event().wait(0.01)
        with lock:
            _Scripted.now -= 1  # type: ignore[attr-defined]
        original(self)

    url = scripted([200])
    limit = AdaptiveConcurrency(maximum=3)

    async def scenario() -> None:
        async with AsyncGanClient(url, throttle=None, concurrency=limit) as gan:
            await asyncio.gather(*(gan.generate(1) for _ in range(32)))

    _Scripted.do_POST = counting  # type: ignore[assignment]
    try:
        asyncio.run(scenario())
    finally:
        _Scripted.do_POST = original  # type: ignore[method-assign]
    assert len(_Scripted.seen) == 32 and _Scripted.peak == 3  # type: ignore[attr-defined]
    assert limit.limit == 3 and limit.in_flight == 0


def test_a_client_has_no_concurrency_limit_unless_given_one() -> None:
    with GanClient("http://127.0.0.1:9") as gan:
        assert gan.concurrency is None
    limit = AdaptiveConcurrency(maximum=4)
    with GanClient("http://127.0.0.1:9", concurrency=limit) as gan:
        assert gan.concurrency is limit


def test_cli_jobs_limit_their_tries_in_flight_unless_told_not_to() -> None:
    parser = build_parser()
    limit = _concurrency(parser.parse_args(["generate", "--n", "4", "--out", "x", "--concurrency", "16"]))
    assert isinstance(limit, AdaptiveConcurrency) and limit.maximum == 16 and limit.limit == 1
    assert _concurrency(parser.parse_args(["upscale", "in", "out", "--no-throttle"])) is None
    assert limit_note(None) is None and limit_note(limit) is None  # never came down: nothing to say
    limit = AdaptiveConcurrency(maximum=16, initial=12)
    limit.release(limit.acquire_blocking(), Outcome.REFUSED)
    limit.release(limit.acquire_blocking(), Outcome.REFUSED)
    limit.release(limit.acquire_blocking(), Outcome.ACCEPTED)
    note = limit_note(limit)
    assert note is not None and "to 3 at the lowest, 3 at the end (of --concurrency 16)" in note


# --- a few jobs against a real server --------------------------------------------------------------


def test_jobs_with_a_concurrency_limit_are_refused_much_less(make_server: Callable[..., Server]) -> None:
    """4 clients, each like one gan-client job (its own throttle, 16 workers each always with a
    call out), against a queue that holds 4 of their requests: the same work twice, without and
    with a concurrency limit per client. Every image arrives both ways; without the limit about a
    third of the tries are refused (the throttle alone holds back single tries, not 64 workers),
    with it a small share. Only counts of one run are compared, never times."""
    srv = make_server(["digits"], max_queue_units=64)
    policy = RetryPolicy(attempts=40, base_delay_s=0.05, max_delay_s=0.5)  # every call gets done
    clients, workers, requests = 4, 16, 24

    def jobs(limited: bool) -> tuple[int, int, int, list[AdaptiveConcurrency]]:
        """(images made, requests the server counted, of them refused, the limits)."""
        refused_before = srv.metric("gan_requests_total", endpoint="/generate", status="429")
        requests_before = srv.metric("gan_requests_total", endpoint="/generate")
        limits = [AdaptiveConcurrency(maximum=workers) for _ in range(clients)] if limited else []

        async def job(c: int) -> int:
            todo = list(range(requests))
            made = []
            async with AsyncGanClient(
                srv.url,
                retry=policy,
                throttle=AdaptiveThrottle(rng=random.Random(c)),
                concurrency=limits[c] if limited else None,
                max_connections=workers,
            ) as gan:

                async def worker() -> None:
                    while todo:
                        i = todo.pop()
                        result = await gan.generate(16, seed=100_000 * c + 16 * i)
                        made.append(len(result.images))

                await asyncio.gather(*(worker() for _ in range(workers)))
            return sum(made)

        async def scenario() -> list[int]:
            return await asyncio.gather(*(job(c) for c in range(clients)))

        made = sum(asyncio.run(scenario()))
        sent = srv.metric("gan_requests_total", endpoint="/generate") - requests_before
        refused = srv.metric("gan_requests_total", endpoint="/generate", status="429") - refused_before
        return made, int(sent), int(refused), limits

    made_plain, sent_plain, refused_plain, _ = jobs(limited=False)
    made_limited, sent_limited, refused_limited, limits = jobs(limited=True)
    assert made_plain == made_limited == clients * requests * 16
    share_plain, share_limited = refused_plain / sent_plain, refused_limited / sent_limited
    assert share_plain > 0.15, (refused_plain, sent_plain)  # the load did overload the server
    assert share_limited < share_plain / 2, (refused_limited, sent_limited, refused_plain, sent_plain)
    assert all(limit.in_flight == 0 for limit in limits)
