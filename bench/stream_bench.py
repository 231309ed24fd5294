"""The time to the first streamed image against the whole answer, at n=64.

    python bench/stream_bench.py [--reps 20] [--out bench/results/stream.json]

One gan-serve process (default settings: batches of at most 32 images, so n=64 is two parts) on
loopback. For each generator and each scenario, `--reps` requests of n=64 in turn, each asked for
as one JSON answer and as NDJSON (Accept: application/x-ndjson), alternately: the whole answer's
latency, and the stream's first image and last image (from sending the request to the line's
arrival). Scenarios: idle (nothing else running), and loaded (4 other clients asking for n=32
again and again, so that the two parts of a request wait in a queue behind others' batches).
Medians and 90th percentiles side by side. It stops by itself (about two minutes).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.server import ServerProcess  # noqa: E402

MODELS = ("digits-conditional", "digits-style")
N = 64
LOAD_CLIENTS = 4


def whole(client: httpx.Client, body: dict[str, Any]) -> float:
    started = time.perf_counter()
    r = client.post("/generate", json=body)
    r.raise_for_status()
    assert len(r.json()["images"]) == N
    return time.perf_counter() - started


def streamed(client: httpx.Client, body: dict[str, Any]) -> tuple[float, float]:
    """(first image, last image), seconds from sending the request."""
    started = time.perf_counter()
    first = None
    images = 0
    with client.stream("POST", "/generate", json=body, headers={"accept": "application/x-ndjson"}) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if '"index"' in line:
                images += 1
                first = first or time.perf_counter() - started
    assert images == N and first is not None
    return first, time.perf_counter() - started


def load(url: str, model: str, stop: threading.Event) -> None:
    with httpx.Client(base_url=url, timeout=60) as client:
        seed = 0
        while not stop.is_set():
            client.post("/generate", json={"model": model, "n": 32, "seed": seed})
            seed += 32


def measure(url: str, model: str, reps: int, loaded: bool) -> dict[str, Any]:
    stop = threading.Event()
    threads = [
        threading.Thread(target=load, args=(url, model, stop)) for _ in range(LOAD_CLIENTS if loaded else 0)
    ]
    for thread in threads:
        thread.start()
    times: dict[str, list[float]] = {"whole": [], "first": [], "last": []}
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            for rep in range(reps + 2):
                body = {"model": model, "n": N, "seed": 1000 * rep}
                w = whole(client, body)
                first, last = streamed(client, body)
                if rep >= 2:  # the first two warm the connection and the caches
                    times["whole"].append(w)
                    times["first"].append(first)
                    times["last"].append(last)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    return {
        key: {
            "median_ms": round(1000 * float(np.median(v)), 1),
            "p90_ms": round(1000 * float(np.percentile(v, 90)), 1),
        }
        for key, v in times.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        server = ServerProcess.start(Path(scratch) / "server.log", {}, models=ROOT / "models", timeout=120)
        try:
            rows = [
                {
                    "model": model,
                    "scenario": scenario,
                    **measure(server.url, model, args.reps, scenario == "loaded"),
                }
                for model in MODELS
                for scenario in ("idle", "loaded")
            ]
        finally:
            server.stop()
    print(f"n={N}, {args.reps} requests each; median (p90) ms from sending the request")
    print(f"{'model':<20} {'scenario':<8} {'whole answer':>16} {'first streamed':>16} {'last streamed':>16}")
    for row in rows:
        cells = [
            f"{row[k]['median_ms']:>7.1f} ({row[k]['p90_ms']:>6.1f})" for k in ("whole", "first", "last")
        ]
        print(f"{row['model']:<20} {row['scenario']:<8} " + " ".join(f"{c:>16}" for c in cells))
    if args.out:
        args.out.write_text(json.dumps({"n": N, "reps": args.reps, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
