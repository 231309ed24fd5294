"""The loop skeleton on its own (training/loop.py): when it samples, evaluates and checkpoints,
what Ctrl-C saves, and that the end of a run happens only for a loop that completed."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch

from training.artifacts import read_jsonl
from training.distributed import DistInfo
from training.loop import RunDir, TrainingLoop


@dataclasses.dataclass
class LoopCfg:
    steps: int = 10
    log_every: int = 1
    sample_every: int = 5
    eval_every: int = 4
    checkpoint_every: int = 3
    keep_checkpoints: int = 2
    lr_schedule: str = "constant"
    lr_decay_start: float = 0.5

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class FakeLoop:
    """A training loop with no network: it records what the skeleton asks of it, and can raise
    KeyboardInterrupt in one step's body or while writing one step's samples."""

    def __init__(self, interrupt: tuple[str, int] | None = None) -> None:
        self.interrupt = interrupt
        self.calls: list[tuple[Any, ...]] = []

    def checkpoint_state(self, step: int, all_ranks: bool) -> dict[str, Any]:
        self.calls.append(("state", step, all_ranks))
        return {"weights": torch.full((2,), float(step))}

    def write_samples(self, step: int, path: Path) -> None:
        if self.interrupt == ("samples", step):
            raise KeyboardInterrupt
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(str(step))

    def evaluate(self, step: int) -> dict[str, Any]:
        self.calls.append(("eval", step))
        return {"step": step, "score": 0.5}

    def plot(self, records: list[dict[str, Any]], path: Path) -> None:
        self.calls.append(("plot", [r["step"] for r in records]))

    def save_generator(self, path: Path, quality: dict[str, Any]) -> None:
        self.calls.append(("generator", dict(quality)))
        path.write_text(json.dumps(quality))

    def run(self, run: RunDir, start_step: int = 0) -> dict[str, Any]:
        """The shape of training/train.py's and training/sr/train.py's loops."""
        with TrainingLoop(
            run,
            start_step,
            generator_kind="toy",
            generator_config={"width": 4},
            checkpoint_state=self.checkpoint_state,
            write_samples=self.write_samples,
            evaluate=self.evaluate,
            plot=self.plot,
        ) as loop:
            for step in loop.steps():
                if self.interrupt == ("step", step):
                    raise KeyboardInterrupt
                done = step + 1
                if loop.due(done, run.cfg.log_every):
                    loop.log({"step": done, "event": "train"}, loss="0.0")
                loop.periodic(done)
        return loop.finish(self.save_generator, final_eval=lambda: self.evaluate(run.cfg.steps))


def checkpoints(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "checkpoints").iterdir())


def new_run(out: Path, cleanup: contextlib.ExitStack, cfg: LoopCfg | None = None) -> RunDir:
    run = RunDir.prepare(out, cfg or LoopCfg(), resume=False, resumable=())
    run.write_config(cleanup)
    return run


def test_a_completed_loop_saves_every_n_steps_then_finishes(tmp_path: Path) -> None:
    out, fake = tmp_path / "run", FakeLoop()
    with contextlib.ExitStack() as cleanup:
        final = fake.run(new_run(out, cleanup))
    # checkpoints every 3 steps and after the last, on every rank (all_ranks=True); 2 kept
    assert [c for c in fake.calls if c[0] == "state"] == [("state", s, True) for s in (3, 6, 9, 10)]
    assert checkpoints(out) == ["step_00000009.pt", "step_00000010.pt"]
    saved = torch.load(out / "checkpoints" / "step_00000010.pt", weights_only=False)
    assert list(saved) == ["step", "config", "generator_kind", "generator_config", "weights"]
    assert saved["step"] == 10 and saved["config"] == LoopCfg().to_dict()
    assert saved["generator_kind"] == "toy" and saved["generator_config"] == {"width": 4}
    assert torch.equal(saved["weights"], torch.full((2,), 10.0))
    # samples every 5 steps and after the last; latest.png is the newest
    assert sorted(p.name for p in (out / "samples").iterdir()) == [
        "latest.png",
        "step_00000005.png",
        "step_00000010.png",
    ]
    assert (out / "samples" / "latest.png").read_text() == "10"
    # mid-run evaluations (each followed by the plot) at 4 and 8; the final one belongs to finish,
    # between two saves of the generator, then eval.json and the plot
    rest = [c for c in fake.calls if c[0] != "state"]
    assert rest == [
        ("eval", 4),
        ("plot", [1, 2, 3, 4]),
        ("eval", 8),
        ("plot", [1, 2, 3, 4, 5, 6, 7, 8]),
        ("generator", {}),
        ("eval", 10),
        ("generator", final),
        ("plot", list(range(1, 11))),
    ]
    assert final == {"step": 10, "score": 0.5}
    assert json.loads((out / "eval.json").read_text()) == final
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == list(range(1, 11))


@pytest.mark.parametrize(
    "interrupt,saved_at,periodic",
    [
        (("step", 7), 7, 6),  # in step 8's update: steps 1..7 are complete
        (("samples", 5), 4, 3),  # in step 5's bookkeeping: step 5 is not complete
    ],
)
def test_ctrl_c_saves_the_last_completed_step_and_skips_the_end(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    interrupt: tuple[str, int],
    saved_at: int,
    periodic: int,
) -> None:
    out, fake = tmp_path / "run", FakeLoop(interrupt)
    with contextlib.ExitStack() as cleanup, pytest.raises(KeyboardInterrupt):
        fake.run(new_run(out, cleanup))
    assert ("state", saved_at, False) in fake.calls  # rank 0 alone: no collectives
    assert checkpoints(out) == [f"step_{periodic:08d}.pt", f"step_{saved_at:08d}.pt"]
    saved = torch.load(out / "checkpoints" / f"step_{saved_at:08d}.pt", weights_only=False)
    assert saved["step"] == saved_at and torch.equal(saved["weights"], torch.full((2,), float(saved_at)))
    assert f"interrupted: checkpoint saved at step {saved_at}; continue with --resume" in caplog.text
    # the end of a run is for completed loops only
    assert not (out / "generator.pt").exists() and not (out / "eval.json").exists()
    assert not [c for c in fake.calls if c[0] == "generator"]

    # resuming drops the records past the checkpoint (the resumed run writes them again)
    with caplog.at_level(logging.INFO, logger="training"):
        run = RunDir.prepare(out, LoopCfg(), resume=True, resumable=())
        run.resumed_at(saved_at)
    assert run.resume_from == out / "checkpoints" / f"step_{saved_at:08d}.pt"
    assert f"resumed from {run.resume_from} at step {saved_at}" in caplog.text
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == list(range(1, saved_at + 1))
    resumed = FakeLoop()
    assert resumed.run(run, start_step=saved_at) == {"step": 10, "score": 0.5}
    assert checkpoints(out) == ["step_00000009.pt", "step_00000010.pt"]


def test_ctrl_c_before_a_step_completes_saves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with contextlib.ExitStack() as cleanup, pytest.raises(KeyboardInterrupt):
        FakeLoop(("step", 0)).run(new_run(out, cleanup))
    assert not (out / "checkpoints").exists()


def test_other_ranks_take_part_but_do_not_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[int] = []
    monkeypatch.setattr("training.loop.barrier", lambda dist: waits.append(dist.rank))
    out, fake = tmp_path / "run", FakeLoop()
    run = RunDir.prepare(out, LoopCfg(), resume=False, resumable=(), dist=DistInfo(rank=1, world_size=2))
    with contextlib.ExitStack() as cleanup:
        run.write_config(cleanup)
        assert fake.run(run) == {}
    # every rank builds its checkpoint state (a DDP loop gathers its random streams there) ...
    assert [c for c in fake.calls if c[0] == "state"] == [("state", s, True) for s in (3, 6, 9, 10)]
    # ... and waits for rank 0 at the start and at the end; rank 0 alone writes
    assert waits == [1, 1] and not out.exists()
    with pytest.raises(KeyboardInterrupt):
        FakeLoop(("step", 5)).run(run)
    assert not out.exists()
