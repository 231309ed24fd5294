"""Running a batch job's work items with bounded concurrency, a progress bar and a summary."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


@dataclass
class Summary:
    """What a job did, counted in items (images)."""

    done: int = 0
    skipped: int = 0  # already there from an earlier run
    failed: int = 0
    ignored: int = 0  # inputs that are not images
    failures: list[str] = field(default_factory=list)  # one line per failed request or item
    aborted: str | None = None  # why the job stopped early, if it did
    seconds: float = 0.0

    def fail(self, items: int, reason: str) -> str:
        """Count `items` failed items for `reason`; returns the line to show the user."""
        self.failed += items
        self.failures.append(reason)
        return f"failed: {reason}"

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        parts = [f"done {self.done}", f"skipped {self.skipped}", f"failed {self.failed}"]
        if self.ignored:
            parts.append(f"not images {self.ignored}")
        return f"{', '.join(parts)} in {self.seconds:.1f} s ({self.rate:.1f} images/s)"

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.aborted is None


class Progress:
    """A progress bar in items with rate and ETA (on a terminal), and notes printed above it."""

    def __init__(self, total: int, unit: str, enabled: bool = True) -> None:
        self._bar = tqdm(
            total=total, unit=unit, dynamic_ncols=True, disable=None if enabled else True, file=sys.stderr
        )

    def advance(self, items: float) -> None:
        """Items done; a fraction of one for an item partly done (an upscale's tiles)."""
        self._bar.update(items)

    def note(self, message: str) -> None:
        self._bar.write(message, file=sys.stderr)

    def close(self) -> None:
        self._bar.close()


class JobError(Exception):
    """The job cannot start as asked (bad labels, another job's folder, unknown model, ...)."""


class Abort(Exception):
    """Raised by a worker when going on is pointless (the server cannot be reached)."""


async def run_bounded(
    items: Iterable[T], work: Callable[[T], Awaitable[None]], concurrency: int
) -> str | None:
    """Run work(item) for every item, at most `concurrency` at once, pulling items lazily (a
    100,000-item job holds `concurrency` of them in memory). Returns the reason if a worker
    raised Abort: the other workers finish what they hold and take no more."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    source = iter(items)
    aborted: list[str] = []

    async def worker() -> None:
        for item in source:  # the iterator is shared: each item goes to one worker
            if aborted:
                return
            try:
                await work(item)
            except Abort as e:
                aborted.append(str(e))
                return

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return aborted[0] if aborted else None
