"""The client's style-model calls against a real server with the bundled digits-style: psi, noise
seeds, latents out and back in, /mix from the library (sync and async) and from gan-client."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from client import AsyncGanClient, GanClient
from tests.client.test_cli import gan_client
from tests.live_server import Server

MODEL = "digits-style"


def test_psi_noise_and_latents_round_trip(server: Server) -> None:
    with GanClient(server.url) as gan:
        result = gan.generate(2, model=MODEL, seed=5, labels=3, truncation_psi=0.6, return_latents=True)
        first = result.images[0]
        assert (first.seed, first.label, first.noise_seed) == (5, 3, 5) and first.w is not None
        ws = np.load(io.BytesIO(first.w))
        assert ws.shape == (8, 128) and ws.dtype == np.float32
        again = gan.generate(model=MODEL, ws=[first.w], noise_seed=5)
        # the same pixels; the files' provenance records differ (one names a seed, one a given w)
        decoded = [Image.open(io.BytesIO(i.data)).tobytes() for i in (again.images[0], first)]
        assert decoded[0] == decoded[1] and again.images[0].seed is None
        other_noise = gan.generate(model=MODEL, seed=5, labels=3, truncation_psi=0.6, noise_seed=6)
        assert other_noise.images[0].data != first.data and other_noise.images[0].noise_seed == 6
        walk = gan.walk(5, 9, 3, model=MODEL, label=3, noise="const")
        assert walk.method == "lerp" and len(walk.images) == 3


def test_mix_sync_and_async(server: Server) -> None:
    with GanClient(server.url) as gan:
        mixed = gan.mix([1, 2], [3, 4, 5], model=MODEL, crossover="fine", grid=True)
    assert mixed.layers_from_row == [6, 7] and mixed.crossover == "fine"
    assert len(mixed.cells) == 2 and all(len(row) == 3 for row in mixed.cells)
    assert [image.seed for image in mixed.rows] == [1, 2] and mixed.grid is not None
    assert Image.open(io.BytesIO(mixed.grid)).size == (4 * 34 - 2, 3 * 34 - 2)

    async def scenario() -> list[list[bytes]]:
        async with AsyncGanClient(server.url) as gan:
            result = await gan.mix([1, 2], [3, 4, 5], model=MODEL, crossover="fine")
            return [[cell.data for cell in row] for row in result.cells]

    assert asyncio.run(scenario()) == [[cell.data for cell in row] for row in mixed.cells]


def test_gan_client_mix_and_psi(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "mixing"
    run = gan_client(
        "mix", "--model", MODEL, "--rows", "1-2", "--cols", "3,4,5", "--crossover", "4", "--out", str(out),
        url=server.url,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "2x3 mixing grid" in run.stdout and "layers [0, 1, 2, 3]" in run.stdout
    names = {p.name for p in out.iterdir()}
    assert names == {"grid.png", "row-0.png", "row-1.png", "col-0.png", "col-1.png", "col-2.png"} | {
        f"cell-{r}-{c}.png" for r in range(2) for c in range(3)
    }
    bad = gan_client(
        "mix", "--model", MODEL, "--rows", "1,x", "--cols", "3", "--out", str(tmp_path / "b"), url=server.url
    )
    assert bad.returncode == 2 and "--rows" in bad.stderr
    job = tmp_path / "threes"
    run = gan_client(
        "generate", "--model", MODEL, "--n", "4", "--labels", "3", "--psi", "0.5", "--seed", "10",
        "--out", str(job), url=server.url,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert json.loads((job / "job.json").read_text())["truncation_psi"] == 0.5
    with GanClient(server.url) as gan:
        expected = gan.generate(model=MODEL, seeds=[10], labels=3, truncation_psi=0.5).images[0].data
    assert (job / "3" / "seed10_label3.png").read_bytes() == expected
