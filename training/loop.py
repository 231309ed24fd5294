"""The skeleton both training loops share: the GAN loop (training/train.py) and the
super-resolution loop (training/sr/train.py) keep only their networks, losses, training step and
evaluation, and hand the rest to two small objects:

- `RunDir`, the run directory: it refuses a run that would mix with another, writes the config
  and the log file, holds metrics.jsonl and names the checkpoint to resume from.
- `TrainingLoop`, the frame around the steps: the progress bar; samples, evaluation and
  checkpoints every N steps; Ctrl-C (a checkpoint at the last completed step, then the
  KeyboardInterrupt goes on); and the end of a completed run (generator.pt, final evaluation,
  eval.json, plot).

A loop using them reads:

    run = RunDir.prepare(out_dir, cfg, resume, RESUMABLE_CHANGES, dist_info)
    run.write_config(cleanup)
    ... data, models, optimisers; on resume: restore run.resume_from, run.resumed_at(step) ...
    with TrainingLoop(run, start_step, generator_kind=..., ...) as loop:
        for step in loop.steps():
            ... one training step ...
            if loop.due(done, cfg.log_every):
                loop.log(record, loss=...)
            loop.periodic(done)
    return loop.finish(save_generator, final_eval)

Under torchrun every rank runs all of this and rank 0 alone writes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from training.artifacts import MetricsLog
from training.checkpoint import atomic_save, checkpoint_path, prune_checkpoints
from training.distributed import DistInfo, barrier
from training.runtime import RunConfig, prepare_run_dir, progress_bar, write_run_config

log = logging.getLogger("training")

Records = list[dict[str, Any]]


class LoopConfig(RunConfig, Protocol):
    """The keys the skeleton reads; TrainConfig and SRConfig both have them."""

    log_every: int
    sample_every: int
    eval_every: int  # 0: only the final evaluation
    checkpoint_every: int
    keep_checkpoints: int


@dataclass
class RunDir:
    """config.toml/json, train.log, metrics.jsonl, samples/, plots/, checkpoints/, generator.pt
    and eval.json of one run. Rank 0 writes; the other ranks only read."""

    path: Path
    cfg: LoopConfig
    dist: DistInfo
    resume_from: Path | None  # the newest checkpoint when resuming; None for a new run
    metrics: MetricsLog

    @classmethod
    def prepare(
        cls,
        path: Path,
        cfg: LoopConfig,
        resume: bool,
        resumable: Collection[str],
        dist: DistInfo | None = None,
    ) -> RunDir:
        """Checks that `path` may take this run (a new run, or a resume whose config changes only
        `resumable` keys) and writes nothing yet, so a run refused after this leaves no trace."""
        resume_from = prepare_run_dir(path, cfg, resume, resumable)
        return cls(path, cfg, dist or DistInfo(), resume_from, MetricsLog(path / "metrics.jsonl"))

    @property
    def main(self) -> bool:
        return self.dist.is_main

    def write_config(self, cleanup: contextlib.ExitStack) -> None:
        """config.toml, config.json and train.log (which takes every log record until `cleanup`)."""
        barrier(self.dist)  # every rank has checked the directory before rank 0 writes into it
        if self.main:
            write_run_config(self.path, self.cfg, cleanup)

    def resumed_at(self, step: int) -> None:
        """Call once the loop has restored `resume_from`: the records past its step go, since the
        resumed run writes them again."""
        if self.main:
            self.metrics.truncate_after(step)
            log.info("resumed from %s at step %d", self.resume_from, step)


class TrainingLoop:
    """Steps `start_step` .. `cfg.steps - 1` of a run, and what happens around them.

    Used as `with TrainingLoop(...) as loop: for step in loop.steps(): ...`. A step counts as
    completed once its whole body, bookkeeping included, has run; Ctrl-C (KeyboardInterrupt)
    anywhere in the block saves a checkpoint at the last completed step, then propagates, so
    `finish` (the final save) runs only for a loop that got to the end.

    What the loop supplies, each specific to it:
    - generator_kind, generator_config: G's constructor arguments, stored in every checkpoint so
      that export can rebuild G from a checkpoint without this code.
    - checkpoint_state(step, all_ranks): the rest of a checkpoint (weights, optimisers, random
      streams). all_ranks=True for a periodic checkpoint, called on every rank, so a DDP loop may
      gather its ranks' streams; False after Ctrl-C, called on rank 0 alone, since the other ranks
      may be gone and a collective would hang.
    - write_samples(step, path): a picture of the served generator's output, to `path`.
    - evaluate(step): a mid-run evaluation, which writes its own metrics record.
    - plot(records, path): the training plot from metrics.jsonl's records.
    """

    def __init__(
        self,
        run: RunDir,
        start_step: int,
        *,
        generator_kind: str,
        generator_config: dict[str, Any],
        checkpoint_state: Callable[[int, bool], dict[str, Any]],
        write_samples: Callable[[int, Path], None],
        evaluate: Callable[[int], dict[str, Any]],
        plot: Callable[[Records, Path], None],
    ) -> None:
        self.run = run
        self.cfg = run.cfg
        self.start_step = start_step
        self.completed = start_step  # steps whose body has run to its end
        self.generator_kind = generator_kind
        self.generator_config = generator_config
        self.checkpoint_state = checkpoint_state
        self.write_samples = write_samples
        self.evaluate = evaluate
        self.plot = plot
        self.progress = progress_bar(self.cfg.steps, start_step, run.main)

    def __enter__(self) -> TrainingLoop:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.close()
        step = self.completed
        interrupted = exc_type is not None and issubclass(exc_type, KeyboardInterrupt)
        if interrupted and self.run.main and step > self.start_step:
            # The interrupted step's updates are incomplete; the state after `step` steps is not
            # recoverable exactly, so save what we have under the completed-step count.
            self.save_checkpoint(step, self.checkpoint_state(step, False))
            log.warning("interrupted: checkpoint saved at step %d; continue with --resume", step)
        # returns None: the exception, KeyboardInterrupt included, goes on to the caller

    def steps(self) -> Iterator[int]:
        """The 0-based index of each step still to run."""
        for step in range(self.start_step, self.cfg.steps):
            yield step
            # reached only once the body has run to its end (not on Ctrl-C or an error)
            self.progress.update(1)
            self.completed = step + 1

    def due(self, done: int, every: int) -> bool:
        """Every `every` steps, and after the last step whatever `every` is."""
        return done % every == 0 or done == self.cfg.steps

    def log(self, record: dict[str, Any], **postfix: str) -> None:
        """A train record to metrics.jsonl (rank 0) and its summary beside the progress bar."""
        if self.run.main:
            self.run.metrics.write(record)
            self.progress.set_postfix(refresh=False, **postfix)

    def periodic(self, done: int) -> None:
        """After `done` steps: samples (rank 0), a mid-run evaluation and the plot (rank 0; the
        final evaluation is `finish`'s) and a checkpoint (every rank builds its part; rank 0
        writes), each when due."""
        cfg, main = self.cfg, self.run.main
        if main and self.due(done, cfg.sample_every):
            samples = self.run.path / "samples"
            self.write_samples(done, samples / f"step_{done:08d}.png")
            shutil.copyfile(samples / f"step_{done:08d}.png", samples / "latest.png")
        if main and cfg.eval_every and done % cfg.eval_every == 0 and done != cfg.steps:
            self.evaluate(done)
            self.write_plot()
        if self.due(done, cfg.checkpoint_every):
            state = self.checkpoint_state(done, True)
            if main:
                self.save_checkpoint(done, state)

    def write_plot(self) -> None:
        self.plot(self.run.metrics.read(), self.run.path / "plots" / "training.png")

    def save_checkpoint(self, step: int, state: dict[str, Any]) -> None:
        """checkpoints/step_XXXXXXXX.pt, written atomically; only the newest `keep_checkpoints` stay."""
        header = {
            "step": step,
            "config": self.cfg.to_dict(),
            # G's own constructor arguments: export rebuilds G from a checkpoint without this loop.
            "generator_kind": self.generator_kind,
            "generator_config": self.generator_config,
        }
        directory = self.run.path / "checkpoints"
        atomic_save({**header, **state}, checkpoint_path(directory, step))
        prune_checkpoints(directory, self.cfg.keep_checkpoints)

    def finish(
        self,
        save_generator: Callable[[Path, dict[str, Any]], None],
        final_eval: Callable[[], dict[str, Any]],
    ) -> dict[str, Any]:
        """The end of a completed run, on rank 0: generator.pt (the served weights with their
        quality), eval.json and the plot. Returns the final evaluation; {} on the other ranks,
        which wait here for rank 0."""
        result: dict[str, Any] = {}
        if self.run.main:
            path = self.run.path / "generator.pt"
            # Saved before the evaluation too: an evaluation that fails must not cost the weights.
            save_generator(path, {})
            result = final_eval()
            save_generator(path, result)
            (self.run.path / "eval.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
            self.write_plot()
            log.info("done: %s", path)
        barrier(self.run.dist)
        return result
