"""Python client for the GAN service: GanClient (blocking) and AsyncGanClient (asyncio), typed
errors, adaptive client-side overload control (AdaptiveThrottle, AdaptiveConcurrency), and the
`gan-client` batch CLI (client.cli)."""

from client.asynchronous import AsyncGanClient
from client.blocking import GanClient
from client.errors import (
    ApiError,
    GanClientError,
    Overloaded,
    RequestRejected,
    ServerFailed,
    ServerUnreachable,
)
from client.results import (
    AnimationResult,
    GeneratedImage,
    GenerateResult,
    MixResult,
    UpscaleResult,
    WalkResult,
)
from client.retry import RetryPolicy
from client.throttle import AdaptiveConcurrency, AdaptiveThrottle

__all__ = [
    "AdaptiveConcurrency",
    "AdaptiveThrottle",
    "AnimationResult",
    "ApiError",
    "AsyncGanClient",
    "GanClient",
    "GanClientError",
    "GenerateResult",
    "GeneratedImage",
    "MixResult",
    "Overloaded",
    "RequestRejected",
    "RetryPolicy",
    "ServerFailed",
    "ServerUnreachable",
    "UpscaleResult",
    "WalkResult",
]
