"""Memory of gan-serve on the bundled models: idle after start-up, and the peak under a mixed load;
for this checkout and, to compare, others (--checkout, e.g. a `git worktree` of an older commit),
side by side in one run.

For each checkout: one server on all five bundled models, default settings; its resident memory
once ready (idle),
each model's share as /v1/models reports it, then `--seconds` of a mixed closed-loop load
(generate clients asking n=64 images of digits-conditional, and upscale clients sending a
512x512 photo to the x4 models, alternately srgan-x4 and srresnet-x4), with the process's
high-water mark of resident memory (VmHWM: every peak, not only sampled ones) and what the load
got done. The results go to bench/results/memory.json.

    python bench/memory_bench.py                      # about 2 minutes on 2 cores
    git worktree add /tmp/before eb3993e && python bench/memory_bench.py --checkout /tmp/before
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import onnxruntime as ort
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.loadgen import Mix, closed_loop, generate_request, rss_mb, upscale_request  # noqa: E402
from bench.server import ServerProcess  # noqa: E402

MIB = 1024 * 1024


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=40.0, help="length of the mixed load")
    p.add_argument("--generate-clients", type=int, default=4)
    p.add_argument("--upscale-clients", type=int, default=2)
    p.add_argument("--side", type=int, default=512, help="the upscale input's width and height")
    p.add_argument(
        "--checkout", type=Path, action="append", default=[], help="another checkout to measure first"
    )
    p.add_argument("--out", type=Path, default=ROOT / "bench/results/memory.json")
    return p.parse_args(argv)


def high_water_mb(pid: int) -> float:
    """The process's peak resident memory so far (Linux /proc VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def photo(side: int) -> bytes:
    """A real photograph (scikit-image's astronaut), side x side, as PNG."""
    import skimage.data  # the bench runs in the dev environment

    buffer = io.BytesIO()
    Image.fromarray(skimage.data.astronaut()).resize((side, side)).save(buffer, format="PNG")
    return buffer.getvalue()


async def mixed_load(port: int, args: argparse.Namespace, image: bytes) -> dict[str, Any]:
    generate = Mix({"generate": generate_request({"model": "digits-conditional", "n": 64, "seed": 1})})
    upscale = Mix(
        {
            "srgan-x4": upscale_request(image, "srgan-x4"),
            "srresnet-x4": upscale_request(image, "srresnet-x4"),
        }
    )
    generated, upscaled = await asyncio.gather(
        closed_loop(port, generate, args.generate_clients, args.seconds),
        closed_loop(port, upscale, args.upscale_clients, args.seconds),
    )
    failed = [o.status for o in [*generated, *upscaled] if o.status != 200]
    return {
        "generated_images_per_s": round(64 * sum(o.status == 200 for o in generated) / args.seconds, 1),
        "upscales_per_s": round(sum(o.status == 200 for o in upscaled) / args.seconds, 3),
        "failed": {str(s): failed.count(s) for s in sorted(set(failed))},
    }


def measure(checkout: Path, args: argparse.Namespace, image: bytes, scratch: Path) -> dict[str, Any]:
    server = ServerProcess.start(
        scratch / f"{checkout.name}.log", {"log_level": "warning"}, models=checkout / "models", cwd=checkout
    )
    try:
        pid = server.process.pid
        idle = rss_mb(pid)
        started_peak = high_water_mb(pid)
        models = httpx.get(f"{server.url}/v1/models", timeout=10).json()["models"]
        load = asyncio.run(mixed_load(server.port, args, image))
        result = {
            "checkout": str(checkout),
            "idle_rss_mib": round(idle, 1),
            "start_up_peak_mib": round(started_peak, 1),
            "load_peak_mib": round(high_water_mb(pid), 1),
            "after_load_rss_mib": round(rss_mb(pid), 1),
            "models_mib": {m["name"]: round(m.get("memory_bytes", 0) / MIB, 1) for m in models},
            **load,
        }
    finally:
        server.stop()
    print(json.dumps(result), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    image = photo(args.side)
    checkouts = [checkout.resolve() for checkout in args.checkout] + [ROOT]
    with tempfile.TemporaryDirectory() as scratch:
        results = [measure(checkout, args, image, Path(scratch)) for checkout in checkouts]
    print(f"\n{'checkout':<24} {'idle MiB':>9} {'peak MiB':>9} {'images/s':>9} {'upscales/s':>11}  failed")
    for r in results:
        print(
            f"{r['checkout'][-24:]:<24} {r['idle_rss_mib']:>9} {r['load_peak_mib']:>9} "
            f"{r['generated_images_per_s']:>9} {r['upscales_per_s']:>11}  {r['failed'] or '-'}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
                "settings": {k: str(v) for k, v in vars(args).items()},
                "onnxruntime": ort.__version__,
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
