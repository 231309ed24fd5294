"""When to try a request again, and how long to wait first: exponential backoff with full jitter
(so many clients that failed together do not come back together), never sooner than the server's
Retry-After."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from client.errors import GanClientError


@dataclass
class RetryPolicy:
    attempts: int = 8  # tries in all, the first included; 1: never retry
    base_delay_s: float = 0.25  # the backoff ceiling doubles from here: 0.25, 0.5, 1, 2, ...
    max_delay_s: float = 30.0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")
        if not 0 <= self.base_delay_s <= self.max_delay_s:
            raise ValueError("need 0 <= base_delay_s <= max_delay_s")

    def should_retry(self, error: Exception, attempt: int) -> bool:
        """attempt: how many tries have been made (1 after the first)."""
        return isinstance(error, GanClientError) and error.retryable and attempt < self.attempts

    def patience(self) -> float:
        """The longest the backoff alone may wait over a call's tries (the sum of its ceilings,
        Retry-After aside). It is also how long a client's own throttle may hold one call back in
        all (client.throttle): a call held back that long is sent regardless, so throttling
        delays a call by at most what its retries could have."""
        return sum(min(self.max_delay_s, self.base_delay_s * 2**i) for i in range(self.attempts - 1))

    def delay(self, error: Exception, attempt: int) -> float:
        """Seconds to wait before try attempt + 1."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        backoff = self.rng.uniform(0, ceiling)
        retry_after = getattr(error, "retry_after", None)
        if retry_after is None:
            return backoff
        # The server's word is a minimum; a little jitter above it spreads the returning clients.
        return max(backoff, retry_after * self.rng.uniform(1.0, 1.2))


NO_RETRY = RetryPolicy(attempts=1)
