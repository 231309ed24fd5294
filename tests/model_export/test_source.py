"""What export starts from: generator files, real training checkpoints, and everything else (each
with a clear error)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model_export.errors import ExportError
from model_export.export import export_source
from model_export.source import load_source
from tests.model_export.conftest import write_generator_file
from tests.training.test_train import run_cli

REPO = Path(__file__).resolve().parents[2]


def test_generator_file(generator_files: dict[str, Path]) -> None:
    source = load_source(generator_files["dcgan-conditional"])
    assert source.format == "generator file" and source.kind == "dcgan" and source.task == "generate"
    assert source.weights == "ema" and source.step == 10
    assert not source.generator.training  # eval mode: BatchNorm uses its running statistics
    assert source.parameters == sum(p.numel() for p in source.generator.parameters())
    assert load_source(generator_files["srresnet-x4"]).task == "upscale"


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (3-step) class-conditional digits run: its generator.pt and its training checkpoints."""
    out = tmp_path_factory.mktemp("runs") / "digits"
    result = run_cli("--config", "configs/digits_cdcgan.toml", "--dry-run", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def test_training_checkpoint_uses_ema_weights(dry_run: Path, tmp_path: Path) -> None:
    checkpoint = sorted((dry_run / "checkpoints").glob("step_*.pt"))[-1]
    source = load_source(checkpoint)
    assert source.format == "training checkpoint" and source.step == 3
    assert source.weights == "ema" and source.metrics == {}
    payload = torch.load(checkpoint, weights_only=True)
    ema = payload["generator_ema"]
    state = source.generator.state_dict()
    assert all(torch.equal(state[k], ema[k]) for k in ema)
    assert not all(torch.equal(payload["generator"][k], ema[k]) for k in ema if ema[k].is_floating_point())
    assert source.training["loss"] == "hinge" and source.training["steps"] == 3

    # The run's generator.pt and its last checkpoint hold the same EMA generator.
    from_file = load_source(dry_run / "generator.pt").generator.state_dict()
    assert all(torch.equal(from_file[k], state[k]) for k in state)

    result = export_source(load_source(checkpoint), tmp_path, "digits", card=False)
    m = result.manifest
    assert m["source"]["format"] == "training checkpoint" and m["source"]["step"] == 3
    assert m["generator"]["classes"]["names"] == [str(d) for d in range(10)]
    assert m["generator"]["output"] == {"height": 32, "width": 32, "channels": 1}


def test_checkpoint_without_constructor_arguments(dry_run: Path, tmp_path: Path) -> None:
    payload = torch.load(sorted((dry_run / "checkpoints").glob("step_*.pt"))[-1], weights_only=True)
    del payload["generator_kind"], payload["generator_config"]
    old = tmp_path / "old.pt"
    torch.save(payload, old)
    with pytest.raises(ExportError, match=r"without the generator's constructor arguments .* generator\.pt"):
        load_source(old)


def test_corrupt_and_truncated_files(generator_files: dict[str, Path], tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(ExportError, match="not a readable PyTorch checkpoint"):
        load_source(garbage)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(generator_files["srresnet-x2"].read_bytes()[:5000])
    with pytest.raises(ExportError, match="corrupt or truncated"):
        load_source(truncated)
    empty = tmp_path / "empty.pt"
    empty.touch()
    with pytest.raises(ExportError, match="not a readable PyTorch checkpoint"):
        load_source(empty)
    with pytest.raises(ExportError, match="no such file"):
        load_source(tmp_path / "missing.pt")


class _Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("this must never run",))


def test_foreign_files(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3), "epoch": 4}, foreign)
    with pytest.raises(ExportError, match=r"not a gan-serving generator file .*keys: epoch, weights"):
        load_source(foreign)
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(ExportError, match="holds a Tensor, not a checkpoint dictionary"):
        load_source(tensor)
    # A pickle that would run code when loaded is refused, not executed.
    hostile = tmp_path / "hostile.pt"
    torch.save({"format": _Exploit()}, hostile)
    with pytest.raises(
        ExportError,
        match=r"refused: the file would construct Python objects.*Unsupported global: .*print",
    ):
        load_source(hostile)


def test_unknown_architecture_and_bad_weights(tmp_path: Path) -> None:
    path = write_generator_file(tmp_path / "g.pt", "dcgan-transposed")
    payload = torch.load(path, weights_only=True)

    payload["kind"] = "stylegan3"
    torch.save(payload, tmp_path / "unknown.pt")
    with pytest.raises(ExportError, match="unknown architecture 'stylegan3'; this export knows mlp, dcgan"):
        load_source(tmp_path / "unknown.pt")

    payload["kind"] = "dcgan"
    payload["config"] = {**payload["config"], "width": 8}  # the weights were trained at width 4
    torch.save(payload, tmp_path / "mismatch.pt")
    with pytest.raises(ExportError, match="the weights do not fit the dcgan generator"):
        load_source(tmp_path / "mismatch.pt")

    payload["config"] = {**payload["config"], "depth": 3}
    torch.save(payload, tmp_path / "badargs.pt")
    with pytest.raises(ExportError, match=r"cannot rebuild the dcgan .*unknown arguments \['depth'\]"):
        load_source(tmp_path / "badargs.pt")

    payload["format_version"] = 99
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(ExportError, match="format_version 99"):
        load_source(tmp_path / "future.pt")


def test_export_never_imports_a_training_loop(generator_files: dict[str, Path]) -> None:
    code = (
        "import sys; from pathlib import Path; import model_export.export, model_export.source as s; "
        f"s.load_source(Path({str(generator_files['dcgan-conditional'])!r})); "
        "print(sorted(m for m in sys.modules if m.startswith('training.') and "
        "m.split('.')[1] not in ('models', 'checkpoint')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_super_resolution_training_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "sr"
    result = run_cli("--config", "configs/sr_x2.toml", "--dry-run", "--out", str(out))
    assert result.returncode == 0, result.stderr
    source = load_source(sorted((out / "checkpoints").glob("step_*.pt"))[-1])
    assert source.task == "upscale" and source.config["scale"] == 2 and source.weights == "ema"
    assert source.training["stage"] == "sr_pixel" and source.training["loss"] == "l1"
    m = export_source(source, tmp_path / "repo", "sr", card=False).manifest
    assert m["upscaler"]["scale"] == 2 and m["source"]["step"] == source.step
