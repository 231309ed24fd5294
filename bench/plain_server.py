"""The baseline: what a user would write by hand. One FastAPI endpoint per task, one ONNX Runtime
call per request, no batching, no queue. Used by bench/serve_bench.py and bench/gpu_bench.py (the
latter with --provider cuda: ONNX Runtime's CUDA provider, CPU for what it cannot run; GET
/providers says which provider each session really got).

    python bench/plain_server.py --port 8001 --generator models/digits-conditional/1/model.onnx \\
        --upscaler models/srresnet-x4/1/model.onnx [--provider cpu|cuda]
"""

from __future__ import annotations

import argparse
import base64
import io
from typing import Any

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response
from PIL import Image
from pydantic import BaseModel

from model_repository.latents import latents_from_seeds


class GenerateBody(BaseModel):
    n: int = 1
    seed: int = 0
    labels: int = 0


def providers_for(provider: str) -> list[Any]:
    """ONNX Runtime's providers for `provider` ("cpu" or "cuda"); on CUDA its libraries from the
    nvidia-* pip packages are loaded first, where this onnxruntime can (preload_dlls)."""
    if provider == "cpu":
        return ["CPUExecutionProvider"]
    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()
    return [("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"}), "CPUExecutionProvider"]


def build_app(generator: str, upscaler: str, provider: str = "cpu") -> FastAPI:
    app = FastAPI()
    providers = providers_for(provider)
    gen = ort.InferenceSession(generator, providers=providers)
    up = ort.InferenceSession(upscaler, providers=providers)
    conditional = any(i.name == "labels" for i in gen.get_inputs())
    latent = gen.get_inputs()[0].shape[1]

    @app.post("/generate")
    def generate(body: GenerateBody) -> dict[str, object]:
        feed = {"z": latents_from_seeds(list(range(body.seed, body.seed + body.n)), latent)}
        if conditional:
            feed["labels"] = np.full(body.n, body.labels, dtype=np.int64)
        images = gen.run(None, feed)[0]
        out = []
        for image in images:
            buffer = io.BytesIO()
            Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(buffer, format="PNG")
            out.append(base64.b64encode(buffer.getvalue()).decode())
        return {"images": out}

    @app.post("/upscale")
    async def upscale(request: Request) -> Response:
        data = await request.body()
        image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))[None]
        result = up.run(None, {"image": image})[0][0]
        buffer = io.BytesIO()
        Image.fromarray(result).save(buffer, format="PNG")
        return Response(buffer.getvalue(), media_type="image/png")

    @app.get("/providers")
    def providers_used() -> dict[str, str]:
        return {"generator": gen.get_providers()[0], "upscaler": up.get_providers()[0]}

    return app


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--generator", required=True)
    p.add_argument("--upscaler", required=True)
    p.add_argument("--provider", choices=("cpu", "cuda"), default="cpu")
    a = p.parse_args()
    uvicorn.run(
        build_app(a.generator, a.upscaler, a.provider), host="127.0.0.1", port=a.port, log_level="warning"
    )
