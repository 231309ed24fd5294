"""One Settings object, read from the environment (prefix GAN_SERVE_) and the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from model_repository.version_policy import VersionPolicies


# Here, not with the buckets (service.served.buckets): the settings import nothing of the service.
def parse_buckets(text: str) -> tuple[int, ...]:
    """'1, 8,64' -> (1, 8, 64); '' -> () (the provider's default). Raises ValueError."""
    if not text.strip():
        return ()
    try:
        sizes = sorted({int(part) for part in text.split(",")})
    except ValueError:
        raise ValueError(f"batch_buckets must be batch sizes separated by commas, got {text!r}") from None
    if sizes[0] < 1:
        raise ValueError(f"batch_buckets must be sizes of at least 1, got {text!r}")
    return tuple(sizes)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GAN_SERVE_", extra="forbid")

    models_dir: Path = Field(
        Path("models"), description="model repository: NAME/VERSION/{model.onnx,manifest.json}"
    )
    version_policy: str = Field(
        "latest:1",
        description="versions served per model: latest:N, all or versions:V,V; a model's own as NAME=POLICY, "
        "entries separated by ';' (e.g. 'latest:1; digits=latest:2')",
    )
    repository_poll_s: float = Field(
        5.0,
        ge=0,
        description="seconds between looks at the repository for new, replaced and removed versions "
        "(also on SIGHUP); 0: only at start-up, on SIGHUP and through the admin API",
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)

    # Batching, counted in work units (generated images, upscale tiles), not requests.
    max_batch_size: int = Field(
        0,
        ge=0,
        description="largest batch of generated images sent to the model; 0: 32 on CPU, 256 on CUDA",
    )
    batch_buckets: str = Field(
        "",
        description="the batch sizes a model runs, comma-separated (e.g. '1,4,16,64'): a batch is padded "
        "up to the next one, and the warm-up runs each; '': every size on CPU (where a padded row "
        "costs as much as a real one), powers of two and the largest batch on CUDA (where a batch "
        "costs about the same for any size up to the device's width, and each new shape costs a "
        "warm-up)",
    )
    max_batch_delay_ms: float = Field(
        2.0, ge=0, description="longest a batch waits for more work when more is known to be on its way"
    )
    max_queue_units: int = Field(1024, ge=1, description="queued work units per model before answering 429")
    max_queue_ms: float = Field(
        4000.0,
        ge=0,
        description="most work a model's queue holds, in milliseconds at the model's measured pace: new "
        "requests are answered 429 while the work queued ahead of them would take longer (but always "
        "one more batch per lane; the unit bounds, max_queue_units and max_queue_tiles, still hold); "
        "0: the unit bounds alone",
    )
    default_deadline_ms: int = Field(
        30_000, ge=1, description="deadline when a request sends no X-Deadline-Ms"
    )

    # Request limits.
    max_n: int = Field(64, ge=1, description="most images one /generate request may ask for")
    max_body_bytes: int = Field(20 * 1024 * 1024, ge=1)
    max_input_pixels: int = Field(1024 * 1024, ge=1, description="largest upscale input, width x height")
    max_batch_tiles: int = Field(
        0,
        ge=0,
        description="largest upscaler batch, in tiles; 0: 1 on CPU (a batch of tiles is no faster per "
        "tile there and holds that many times the memory), 8 on CUDA",
    )
    max_queue_tiles: int = Field(512, ge=1, description="queued tiles per upscaler before answering 429")
    # Overload (service.transport.door).
    refuse_early: bool = Field(
        True,
        description="while a model's queue is shedding, answer its requests' 429 in the HTTP protocol as "
        "soon as they name the model, before the application (an upload before its body is read)",
    )
    refusal_pause_ms: float = Field(
        30.0,
        ge=0,
        le=1000,
        description="a connection whose request was refused for overload is not read again for at least "
        "this long (a client that sends again at once waits in its socket); 0: no pauses",
    )
    refusal_pause_max_ms: float = Field(
        800.0,
        ge=0,
        le=1000,
        description="the longest such pause: pauses grow toward it while refusing costs more than "
        "overload_loop_share and overload_discard_mb_s allow; below the shortest Retry-After (1 s), so "
        "that a client waiting out Retry-After never meets a pause",
    )
    overload_discard_mb_s: float = Field(
        32.0,
        gt=0,
        description="while refusing for overload, the MiB a second of refused uploads' bodies read and "
        "dropped before refused connections' pauses grow (moving them costs the clients and the kernel)",
    )
    overload_loop_share: float = Field(
        0.35,
        gt=0,
        le=1,
        description="while refusing for overload, the share of a core the event loop may use before "
        "refused connections' pauses grow: on CPU the rest of the cores stays with the models (a GPU "
        "host, whose models do not share the event loop's core, can allow more)",
    )

    # ONNX Runtime.
    provider: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="auto: CUDA when ONNX Runtime has it, else CPU; cpu; cuda: CUDA, or CPU with an error "
        "logged and a warning in /readyz when it cannot be had (see provider_strict)",
    )
    provider_strict: bool = Field(
        False,
        description="with provider=cuda: refuse to start (exit non-zero) rather than serve on CPU when "
        "CUDA cannot be had or a model's session lands on CPU",
    )
    precision: Literal["auto", "fp32", "fp16"] = Field(
        "auto",
        description="which graph of a version runs: auto: its fp16 graph on CUDA when its manifest lists "
        "one (variants.fp16), else model.onnx; fp32: always model.onnx; fp16: the fp16 graph wherever "
        "listed (on CPU too, where it is slower)",
    )
    io_binding: Literal["auto", "on", "off"] = Field(
        "auto",
        description="run batches through ONNX Runtime's IO binding (inputs and output in buffers kept "
        "per batch shape and reused); auto: on CUDA only",
    )
    cuda_graphs: bool = Field(
        False,
        description="on CUDA, capture one CUDA graph per batch bucket and replay it (needs IO binding, "
        "one lane per model); off unless measured to pay (bench/gpu_bench.py)",
    )
    concurrent_batches: int = Field(
        0,
        ge=0,
        description="batches of one model run at once; 0: one per CPU core on CPU, 1 on CUDA",
    )
    intra_op_threads: int = Field(
        0, ge=0, description="ONNX Runtime threads per run; 0: the cores divided among concurrent batches"
    )
    inter_op_threads: int = Field(0, ge=0)
    inference_nice: int = Field(
        0,
        ge=0,
        le=19,
        description="nice value of the inference threads (Linux); 0: the priority of every other process, "
        "higher: the model yields the CPU to HTTP work and to other processes",
    )
    pin_inference_threads: bool = Field(
        True,
        description="on CPU with single-threaded runs, pin each model's inference thread i to core i (Linux)",
    )
    warmup: bool = True

    encode_threads: int = Field(
        0, ge=0, description="threads that decode and encode images; 0: 2 on CPU, the cores less two on CUDA"
    )
    drain_seconds: float = Field(
        0.0, ge=0, description="on SIGTERM, report not-ready this long before closing the listener"
    )
    graceful_timeout_s: float = Field(
        30.0, gt=0, description="on SIGTERM, how long in-flight requests may take"
    )
    # Slow and stalled clients (service.transport.connection_guard); checked about once a second.
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="a request's headers must arrive within this long of the connection opening "
        "(of the request's first byte on a kept-alive connection)",
    )
    body_timeout_s: float = Field(
        20.0,
        gt=0,
        description="a request body must arrive within this long, plus 1 s per min_body_rate bytes received",
    )
    min_body_rate: int = Field(
        1024, ge=1, description="bytes per second a slow upload must keep up to extend its body_timeout_s"
    )
    write_timeout_s: float = Field(
        30.0,
        gt=0,
        description="a client that leaves its response unread (send buffer full) this long is disconnected",
    )
    keep_alive_s: int = Field(5, ge=1, description="an idle kept-alive connection is closed after this long")
    playground: bool = Field(
        True, description="serve the playground page at GET / (its files under /playground/); false: 404"
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    # Authentication (off while no key is configured).
    api_keys: str = Field("", description="comma-separated API keys; requests must send one (X-API-Key)")
    api_keys_file: Path | None = Field(None, description="a file of API keys, one per line (# comments)")
    admin_keys: str = Field(
        "",
        description="comma-separated keys for the admin API (load, unload, default, canary); none: it is off",
    )
    auth_health: bool = Field(False, description="require a key on /healthz and /readyz too")
    auth_metrics: bool = Field(False, description="require a key on /metrics too")

    @model_validator(mode="after")
    def _pauses_fit(self) -> Settings:
        # A paused connection is not read; uvicorn's keep-alive timer still runs and would close it
        # with a request unread in its socket.
        if self.refusal_pause_max_ms >= self.keep_alive_s * 1000:
            raise ValueError("refusal_pause_max_ms must be under keep_alive_s")
        if self.refusal_pause_ms > self.refusal_pause_max_ms:
            raise ValueError("refusal_pause_ms must be at most refusal_pause_max_ms")
        return self

    @field_validator("batch_buckets")
    @classmethod
    def _buckets_parse(cls, value: str) -> str:
        parse_buckets(value)  # a ValueError is a validation error
        return value

    @model_validator(mode="after")
    def _graphs_fit(self) -> Settings:
        # A captured graph replays at fixed addresses: the kept buffers of IO binding, one lane's.
        if self.cuda_graphs and self.io_binding == "off":
            raise ValueError("cuda_graphs needs io_binding (auto or on)")
        if self.cuda_graphs and self.concurrent_batches > 1:
            raise ValueError("cuda_graphs runs one batch at a time: concurrent_batches must be 0 or 1")
        return self

    @field_validator("version_policy")
    @classmethod
    def _policy_parses(cls, value: str) -> str:
        VersionPolicies.parse(value)  # a PolicyError (ValueError) is a validation error
        return value
