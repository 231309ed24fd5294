"""Versions swapped under load: a model's default version replaced `--swaps` times while clients
send requests, with memory and every answer checked.

    python bench/swap_bench.py [--swaps 200] [--clients 4] [--out bench/results/swap.json]

One gan-serve process (no repository polling; an admin key) on a repository of its own holding
`digits`: version 1 (the bundled digits generator), loaded by the admin API so that it stays
beside the policy's (latest:1) newest version, and version 2 (the bundled digits-conditional
generator's files). A swap publishes the next version (atomically, as gan-export does; the two
generators in turn), asks the server to sync (POST /v1/repository/sync: the new version is
verified, warmed up and put in service, the old one taken out and released), and removes the old
version's files. Meanwhile `--clients` threads ask for one image after another, alternately
pinned to version 1 (`digits@1`) and unpinned, from 8 seeds. Each answer must be a 200 whose
image is byte for byte the one its version's generator gives for that seed (so no answer mixes
versions), and each pinned answer must come from version 1. The server's resident memory is read
after every swap; its least-squares slope over the second half of the swaps says whether swapping
leaks. Loopback only; it stops by itself.
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.loadgen import rss_mb  # noqa: E402
from bench.server import ServerProcess  # noqa: E402
from model_repository.manifest import dump_manifest  # noqa: E402
from model_repository.repository import publish_version  # noqa: E402

ADMIN_KEY = "swap-bench-admin-key-0123456789"
SOURCES = ("digits-conditional", "digits")  # version v has the files of SOURCES[v % 2]
SEEDS = range(8)
KIB = 1024


def publish(repo: Path, version: int, source: str | None = None) -> None:
    """`digits` version `version` in `repo`, with a bundled generator's files."""
    source_dir = ROOT / "models" / (source or SOURCES[version % 2]) / "1"

    def write(staging: Path, v: int) -> None:
        for path in source_dir.iterdir():
            shutil.copy2(path, staging / path.name)
        manifest = json.loads((staging / "manifest.json").read_text())
        manifest["name"], manifest["version"] = "digits", v
        (staging / "manifest.json").write_text(dump_manifest(manifest))

    publish_version(repo, "digits", write, version)


def image(client: httpx.Client, model: str, seed: int) -> tuple[int, int | None, bytes]:
    """(status, version, image bytes) of one /generate answer."""
    r = client.post("/generate", json={"model": model, "seed": seed, "format": "npy"})
    if r.status_code != 200:
        return r.status_code, None, b""
    body = r.json()
    return 200, body["version"], base64.b64decode(body["images"][0]["data"])


class Clients:
    """Threads asking for images until stopped, checking every answer."""

    def __init__(self, url: str, count: int, expected: dict[int, dict[int, bytes]]) -> None:
        self.url = url
        self.expected = expected  # source parity (version % 2) -> seed -> image bytes
        self.statuses: Counter[int] = Counter()
        self.by_version: Counter[int] = Counter()
        self.mixed = 0  # answers whose image is not their version's
        self.wrong_pin = 0  # pinned answers from another version
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(count)]

    def run(self, index: int) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            i = index
            while not self.stop.is_set():
                pinned = i % 2 == 0
                seed = SEEDS[i % len(SEEDS)]
                status, version, data = image(client, "digits@1" if pinned else "digits", seed)
                i += 1
                with self.lock:
                    self.statuses[status] += 1
                    if version is None:
                        continue
                    self.by_version[version] += 1
                    self.mixed += data != self.expected[version % 2][seed]
                    self.wrong_pin += pinned and version != 1

    def __enter__(self) -> Clients:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def slope_kib_per_swap(rss_mib: list[float]) -> float:
    """Least-squares slope of resident memory over the second half of the swaps, KiB per swap."""
    half = rss_mib[len(rss_mib) // 2 :]
    if len(half) < 3:
        return 0.0
    return float(np.polyfit(np.arange(len(half)), np.array(half), 1)[0] * KIB)


def run(workdir: Path, swaps: int, clients: int) -> dict[str, Any]:
    repo = workdir / "models"
    publish(repo, 1)
    publish(repo, 2)
    settings = {"repository_poll_s": 0, "admin_keys": ADMIN_KEY, "log_level": "warning", "max_batch_size": 8}
    server = ServerProcess.start(
        workdir / "server.log", settings, models=repo, env={"GAN_SERVE_INTRA_OP_THREADS": "1"}
    )
    admin = {"X-API-Key": ADMIN_KEY}
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            client.post("/v1/models/digits/load", json={"version": 1}, headers=admin).raise_for_status()
            expected = {
                v % 2: {seed: image(client, f"digits@{v}", seed)[2] for seed in SEEDS} for v in (1, 2)
            }
            rss: list[float] = []
            seconds: list[float] = []
            started = time.monotonic()
            with Clients(server.url, clients, expected) as load:
                for version in range(3, 3 + swaps):
                    publish(repo, version)
                    swap_started = time.monotonic()
                    answer = client.post("/v1/repository/sync", headers=admin)
                    answer.raise_for_status()
                    seconds.append(time.monotonic() - swap_started)
                    state = answer.json()["models"]["digits"]
                    if state["default"] != version or state["loaded"] != [1, version]:
                        raise RuntimeError(f"after publishing version {version}: {state}")
                    if version - 1 != 1:
                        shutil.rmtree(repo / "digits" / str(version - 1))
                    rss.append(rss_mb(server.process.pid))
            elapsed = time.monotonic() - started
            final = client.get("/v1/models").json()
    finally:
        server.stop()
    return {
        "swaps": swaps,
        "clients": clients,
        "seconds": round(elapsed, 1),
        "swap_seconds_median": round(float(np.median(seconds)), 3),
        "requests": sum(load.statuses.values()),
        "statuses": {str(k): v for k, v in sorted(load.statuses.items())},
        "answers_by_version": len(load.by_version),
        "mixed_answers": load.mixed,
        "pinned_answered_by_another_version": load.wrong_pin,
        "versions_loaded_at_end": [m["version"] for m in final["models"]],
        "rss_mib_first": round(rss[0], 1),
        "rss_mib_last": round(rss[-1], 1),
        "rss_mib_peak": round(max(rss), 1),
        "rss_slope_kib_per_swap": round(slope_kib_per_swap(rss), 1),
        "rss_mib_every_25_swaps": [round(x, 1) for x in rss[::25]],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--swaps", type=int, default=200)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "swap.json")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        result = run(Path(scratch), args.swaps, args.clients)
    for key, value in result.items():
        print(f"{key:40s} {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
