"""Generators and upscalers made elsewhere, adopted: networks that are not in training/models/
(written here), each exported three ways (a Python module with its state dict, a TorchScript
file, an ONNX file), served by a real server, and answering what the original computes; and the
one-line errors for what cannot be adopted."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model_export.cli import main as gan_export
from model_repository.latents import latents_from_seeds
from tests.live_server import Server, start_server

# A package of the user's own: three networks unlike this project's, and some that cannot be adopted.
USER_CODE = '''
import torch
from torch import nn


class SigmoidGen(nn.Module):
    """Conditional on one-hot labels; NCHW output in [0, 1]."""

    def __init__(self, zdim: int = 16, classes: int = 4, side: int = 12):
        super().__init__()
        self.side = side
        self.fc = nn.Linear(zdim + classes, 8 * (side // 4) ** 2)
        self.up = nn.Sequential(
            nn.ConvTranspose2d(8, 8, 4, 2, 1), nn.LeakyReLU(0.1), nn.ConvTranspose2d(8, 3, 4, 2, 1)
        )

    def forward(self, z, onehot):
        h = self.fc(torch.cat([z, onehot], 1)).view(-1, 8, self.side // 4, self.side // 4)
        return torch.sigmoid(self.up(h))


class NhwcGen(nn.Module):
    """Unconditional; NHWC grayscale output in [-1, 1], 10x14."""

    def __init__(self, zdim: int = 8):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(zdim, 32), nn.Tanh(), nn.Linear(32, 10 * 14))

    def forward(self, z):
        return torch.tanh(self.fc(z)).view(-1, 10, 14, 1)


class Upscaler3(nn.Module):
    """x3 by sub-pixel convolution; takes and gives NCHW in [0, 1]."""

    def __init__(self, width: int = 12):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 27, 3, padding=1),
            nn.PixelShuffle(3),
        )

    def forward(self, x):
        return self.body(x)


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3 * 8 * 8)

    def forward(self, z):
        if z.sum() > 0:
            return torch.sigmoid(self.fc(z)).view(-1, 3, 8, 8)
        return torch.zeros(z.shape[0], 3, 8, 8)


class Flat(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 10)

    def forward(self, z):
        return self.fc(z)


class Counts(nn.Module):
    def forward(self, z):
        return (z.view(-1, 1, 2, 2) * 100).to(torch.int64)


class Reshape(nn.Module):
    def forward(self, z):
        return z.view(-1, 1, 2, 2)
'''

# name -> (network, constructor kwargs, the gan-export flags that declare its interface)
MODELS = {
    "sigmoid": (
        "SigmoidGen",
        {"zdim": 16},
        [
            "--task",
            "generate",
            "--latent-size",
            "16",
            "--classes",
            "4",
            "--label-format",
            "onehot",
            "--class-names",
            "north,east,south,west",
            "--output-range",
            "0,1",
            "--layout",
            "nchw",
        ],
    ),
    "nhwc": (
        "NhwcGen",
        {},
        ["--task", "generate", "--latent-size", "8", "--output-range", "-1,1", "--layout", "nhwc"],
    ),
    "x3": ("Upscaler3", {}, ["--task", "upscale", "--scale", "3", "--output-range", "0,1"]),
}
WAYS = ("module", "torchscript", "onnx")


@pytest.fixture(scope="module")
def user_code(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The user's package on sys.path, its networks with random weights saved three ways."""
    directory = tmp_path_factory.mktemp("user")
    (directory / "usernets.py").write_text(textwrap.dedent(USER_CODE))
    sys.path.insert(0, str(directory))
    import usernets  # type: ignore[import-not-found]

    torch.manual_seed(0)
    for name, (cls, kwargs, _) in MODELS.items():
        net = getattr(usernets, cls)(**kwargs).eval()
        torch.save(net.state_dict(), directory / f"{name}.pt")
        torch.jit.script(net).save(str(directory / f"{name}.ts.pt"))
        example: tuple[torch.Tensor, ...]
        if name == "sigmoid":
            example = (torch.randn(2, 16), torch.eye(4)[:2])
            axes = {"z": {0: "n"}, "onehot": {0: "n"}, "out": {0: "n"}}
            names = ["z", "onehot"]
        elif name == "nhwc":
            example, axes, names = (torch.randn(2, 8),), {"z": {0: "n"}, "out": {0: "n"}}, ["z"]
        else:
            example = (torch.rand(1, 3, 10, 12),)
            axes, names = {"lr": {0: "n", 2: "h", 3: "w"}, "out": {0: "n", 2: "H", 3: "W"}}, ["lr"]
        torch.onnx.export(
            net,
            example,
            str(directory / f"{name}.onnx"),
            input_names=names,
            output_names=["out"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    yield directory
    sys.path.remove(str(directory))
    sys.modules.pop("usernets", None)


def export_args(directory: Path, name: str, way: str) -> list[str]:
    cls, kwargs, flags = MODELS[name]
    if way == "module":
        import json

        source = [
            "--module",
            f"usernets:{cls}",
            "--weights",
            str(directory / f"{name}.pt"),
            "--kwargs",
            json.dumps(kwargs),
        ]
    else:
        source = [str(directory / (f"{name}.ts.pt" if way == "torchscript" else f"{name}.onnx"))]
    return [*source, *flags]


@pytest.fixture(scope="module")
def adopted(user_code: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every network exported every way into one repository, as NAME-WAY version 1."""
    repo = tmp_path_factory.mktemp("adopted") / "models"
    for name in MODELS:
        for way in WAYS:
            args = export_args(user_code, name, way)
            assert gan_export([*args, "--repo", str(repo), "--name", f"{name}-{way}"]) == 0, (name, way)
    return repo


def test_every_way_publishes_a_verified_version_with_what_was_declared(adopted: Path) -> None:
    import json

    for way in WAYS:
        sigmoid = json.loads((adopted / f"sigmoid-{way}" / "1" / "manifest.json").read_text())
        g = sigmoid["generator"]
        assert g["latent_size"] == 16 and g["output"] == {"height": 12, "width": 12, "channels": 3}
        assert g["classes"] == {"count": 4, "names": ["north", "east", "south", "west"]}
        assert sigmoid["value_range"]["model"] == [0.0, 1.0]
        assert (
            sigmoid["parity"]["max_abs_error"] <= 1e-4
            and (adopted / f"sigmoid-{way}" / "1" / "README.md").exists()
        )
        nhwc = json.loads((adopted / f"nhwc-{way}" / "1" / "manifest.json").read_text())
        assert nhwc["generator"]["output"] == {"height": 10, "width": 14, "channels": 1}
        x3 = json.loads((adopted / f"x3-{way}" / "1" / "manifest.json").read_text())
        assert x3["upscaler"]["scale"] == 3 and x3["upscaler"]["channels"] == 3
        assert 2 <= x3["upscaler"]["receptive_radius"] <= 6  # two 3x3 convs, probed
        assert (
            x3["source"]["format"]
            == {"module": "Python module", "torchscript": "TorchScript file", "onnx": "ONNX file"}[way]
        )
    assert (
        subprocess.run(
            [sys.executable, "-m", "model_export", "check", "--repo", str(adopted)], capture_output=True
        ).returncode
        == 0
    )


@pytest.fixture(scope="module")
def served(adopted: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("served"), adopted)
    yield srv
    srv.stop()


def test_the_served_models_answer_what_the_originals_compute(served: Server, user_code: Path) -> None:
    import httpx
    import usernets  # type: ignore[import-not-found]

    sigmoid, nhwc, x3 = (getattr(usernets, MODELS[n][0])(**MODELS[n][1]).eval() for n in MODELS)
    for net, name in ((sigmoid, "sigmoid"), (nhwc, "nhwc"), (x3, "x3")):
        net.load_state_dict(torch.load(user_code / f"{name}.pt", weights_only=True))
    seeds, labels = [3, 4, 5], [0, 3, 1]
    z = torch.from_numpy(latents_from_seeds(seeds, 16))
    with torch.no_grad():
        expected_sigmoid = (
            (sigmoid(z, torch.eye(4)[labels]) * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        )
        z8 = torch.from_numpy(latents_from_seeds(seeds, 8))
        expected_nhwc = ((nhwc(z8) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    photo = (
        np.asarray(Image.new("RGB", (23, 17)).resize((23, 17)))
        + np.arange(23, dtype=np.uint8)[None, :, None] * 9
    )
    png = io.BytesIO()
    Image.fromarray(photo.astype(np.uint8)).save(png, "PNG")
    with torch.no_grad():
        lr = torch.from_numpy(photo.astype(np.float32) / 255).permute(2, 0, 1)[None]
        expected_x3 = (x3(lr) * 255).round().clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()
    for way in WAYS:
        r = httpx.post(
            f"{served.url}/generate",
            json={
                "model": f"sigmoid-{way}",
                "seeds": seeds,
                "labels": ["north", "west", "east"],
                "format": "npy",
            },
        )
        assert r.status_code == 200, r.text
        got = np.stack([np.load(io.BytesIO(base64.b64decode(i["data"]))) for i in r.json()["images"]])
        assert np.abs(got.astype(int) - expected_sigmoid.numpy().astype(int)).max() <= 1, way
        r = httpx.post(
            f"{served.url}/generate", json={"model": f"nhwc-{way}", "seeds": seeds, "format": "npy"}
        )
        got = np.stack([np.load(io.BytesIO(base64.b64decode(i["data"]))) for i in r.json()["images"]])
        assert (
            got.shape == (3, 10, 14, 1)
            and np.abs(got.astype(int) - expected_nhwc.numpy().astype(int)).max() <= 1
        ), way
        r = httpx.post(
            f"{served.url}/upscale?model=x3-{way}&format=png",
            content=png.getvalue(),
            headers={"Content-Type": "image/png"},
        )
        assert r.status_code == 200, r.text
        upscaled = np.asarray(Image.open(io.BytesIO(r.content))).astype(int)
        # The service mirrors an image smaller than a tile out to it; the network, run alone,
        # pads with zeros: the two agree wherever the border is out of reach (two 3x3 convs:
        # 2 input pixels, 6 output pixels).
        assert upscaled.shape == (51, 69, 3), way
        assert np.abs(upscaled - expected_x3.astype(int))[6:-6, 6:-6].max() <= 1, way


def test_a_float16_onnx_graph_is_adopted_at_its_own_precision(user_code: Path, tmp_path: Path) -> None:
    import json

    import usernets  # type: ignore[import-not-found]

    half = usernets.NhwcGen().half().eval()
    path = tmp_path / "half.onnx"
    torch.onnx.export(
        half,
        (torch.randn(2, 8).half(),),
        str(path),
        input_names=["z"],
        dynamic_axes={"z": {0: "n"}},
        dynamo=False,
        opset_version=17,
    )
    flags = ["--task", "generate", "--latent-size", "8", "--output-range", "-1,1", "--layout", "nhwc"]
    assert gan_export([str(path), *flags, "--repo", str(tmp_path / "repo"), "--name", "half"]) == 0
    manifest = json.loads((tmp_path / "repo" / "half" / "1" / "manifest.json").read_text())
    assert manifest["precision"] == "fp16" and manifest["parity"]["tolerance"] == 1e-2
    assert manifest["parity"]["max_abs_error"] <= 1e-2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            [
                "--module",
                "usernets:Branchy",
                "--task",
                "generate",
                "--latent-size",
                "4",
                "--output-range",
                "0,1",
            ],
            "does not trace: use torch.where",
        ),
        (
            [
                "--module",
                "usernets:Flat",
                "--task",
                "generate",
                "--latent-size",
                "4",
                "--output-range",
                "0,1",
            ],
            "not an image batch",
        ),
        (
            [
                "--module",
                "usernets:Counts",
                "--task",
                "generate",
                "--latent-size",
                "4",
                "--output-range",
                "0,1",
            ],
            "not a float image",
        ),
        (
            [
                "--module",
                "usernets:NhwcGen",
                "--task",
                "generate",
                "--latent-size",
                "8",
                "--output-range",
                "0,1",
            ],
            "is the layout nhwc?",
        ),
        (
            [
                "--module",
                "usernets:SigmoidGen",
                "--task",
                "generate",
                "--latent-size",
                "8",
                "--classes",
                "4",
                "--label-format",
                "onehot",
                "--output-range",
                "0,1",
            ],
            "the model fails on z of shape (2, 8)",
        ),
        (
            [
                "--module",
                "usernets:Nope",
                "--task",
                "generate",
                "--latent-size",
                "8",
                "--output-range",
                "0,1",
            ],
            "usernets has no Nope",
        ),
        (
            ["--module", "usernets", "--task", "generate", "--latent-size", "8", "--output-range", "0,1"],
            "package.module:Factory",
        ),
        (
            ["--module", "usernets:NhwcGen", "--task", "generate", "--output-range", "0,1"],
            "needs --latent-size",
        ),
        (
            ["--module", "usernets:NhwcGen", "--task", "generate", "--latent-size", "8"],
            "needs --task and --output-range",
        ),
        (
            [
                "--module",
                "usernets:NhwcGen",
                "--task",
                "generate",
                "--latent-size",
                "8",
                "--output-range",
                "1,0",
            ],
            "LOW < HIGH",
        ),
        (
            ["{dir}/x3.onnx", "--task", "upscale", "--scale", "2", "--output-range", "0,1"],
            "not x2 as declared",
        ),
        (
            ["{dir}/x3.onnx", "--task", "generate", "--latent-size", "4", "--output-range", "0,1"],
            "z is (batch, latent)",
        ),
        (
            ["{dir}/double.onnx", "--task", "generate", "--latent-size", "4", "--output-range", "0,1"],
            "is double: adopted models take float32 or float16",
        ),
        (
            ["{dir}/fixed.onnx", "--task", "generate", "--latent-size", "4", "--output-range", "0,1"],
            "fixed batch size of 2",
        ),
        (
            ["{dir}/garbage.onnx", "--task", "generate", "--latent-size", "4", "--output-range", "0,1"],
            "not a valid ONNX model",
        ),
        (
            ["{dir}/sigmoid.ts.pt", "--task", "generate", "--latent-size", "16", "--output-range", "0,1"],
            "the model fails on z of shape (2, 16)",
        ),
        (
            [
                "--module",
                "usernets:NhwcGen",
                "--weights",
                "{dir}/nhwc.ts.pt",
                "--task",
                "generate",
                "--latent-size",
                "8",
                "--output-range",
                "-1,1",
                "--layout",
                "nhwc",
            ],
            "a TorchScript file; export it as it is",
        ),
        (
            [
                "--module",
                "usernets:NhwcGen",
                "--weights",
                "{dir}/x3.pt",
                "--task",
                "generate",
                "--latent-size",
                "8",
                "--output-range",
                "-1,1",
                "--layout",
                "nhwc",
            ],
            "the weights do not fit the module",
        ),
        (
            [
                "{dir}/nhwc.onnx",
                "--task",
                "generate",
                "--latent-size",
                "8",
                "--output-range",
                "-1,1",
                "--layout",
                "nhwc",
                "--precision",
                "fp16",
            ],
            "at its own precision: --precision fp16 is not supported",
        ),
    ],
)
def test_what_cannot_be_adopted_is_one_clear_line(
    user_code: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    import usernets  # type: ignore[import-not-found]

    if not (user_code / "double.onnx").exists():
        torch.onnx.export(
            usernets.Reshape().double(),
            (torch.rand(2, 4, dtype=torch.float64),),
            str(user_code / "double.onnx"),
            input_names=["z"],
            dynamic_axes={"z": {0: "n"}},
            dynamo=False,
            opset_version=17,
        )
        torch.onnx.export(
            usernets.Reshape(),
            (torch.rand(2, 4),),
            str(user_code / "fixed.onnx"),
            input_names=["z"],
            dynamo=False,
            opset_version=17,
        )
        (user_code / "garbage.onnx").write_bytes(b"not a model")
    argv = [a.replace("{dir}", str(user_code)) for a in args]
    assert gan_export([*argv, "--repo", str(tmp_path / "repo"), "--name", "bad"]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "repo" / "bad").exists() or not any((tmp_path / "repo" / "bad").iterdir())
