"""A small trainer: the loop, its state, and hooks for everything around it (logging, eval, checkpoints)."""

from __future__ import annotations

import contextlib
import logging
import math
import signal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from dsdet.engine.strategy import Batch, DeepSpeedStrategy, total_loss
from dsdet.errors import DsdetError

log = logging.getLogger("dsdet")


@dataclass
class TrainState:
    """Everything that says where training is; checkpoints store it as client state."""

    epoch: int = 0
    batch_in_epoch: int = 0  # micro-batches of `epoch` already consumed
    global_step: int = 0  # optimizer steps
    best_metric: float | None = None
    best_tag: str | None = None  # the checkpoint saved after the best evaluation
    metrics_step: int | None = None  # the step `metrics` were evaluated at
    skipped_nonfinite: int = 0
    # What the hooks share and checkpoints leave out: the last step's losses and the last evaluation.
    losses: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    eval_images: list[torch.Tensor] = field(default_factory=list)  # val images with detections drawn (rank 0)

    def to_dict(self) -> dict[str, Any]:
        transient = ("losses", "metrics", "metrics_step", "eval_images")
        return {k: v for k, v in vars(self).items() if k not in transient}

    def load(self, saved: dict[str, Any]) -> None:
        for key in self.to_dict():
            if key in saved:
                setattr(self, key, saved[key])


class Hook:
    """Override what you need; the trainer calls each method on every rank."""

    def before_train(self, trainer: Trainer) -> None: ...

    def before_epoch(self, trainer: Trainer) -> None: ...

    def after_step(self, trainer: Trainer) -> None: ...

    def after_epoch(self, trainer: Trainer) -> None: ...

    def after_train(self, trainer: Trainer) -> None: ...


class Trainer:
    """Runs epochs of micro-batches through a DeepSpeedStrategy and calls hooks around them."""

    def __init__(
        self,
        strategy: DeepSpeedStrategy,
        loader: Iterable,
        batch_sampler: Any,
        *,
        epochs: int,
        max_steps: int | None,
        nonfinite_loss: str,
        hooks: Sequence[Hook] = (),
    ):
        self.strategy = strategy
        self.loader = loader
        self.batch_sampler = batch_sampler
        self.epochs = epochs
        self.max_steps = max_steps
        self.nonfinite_loss = nonfinite_loss
        self.hooks = list(hooks)
        self.batch_sampler.whole_steps_of(strategy.micro_batches_per_step)  # every epoch ends on a step
        self.state = TrainState()
        self.stop_agreed = False  # every rank knows some rank was asked to stop
        self.stop_requested = False  # ... and the optimizer step then under way has finished: stop now
        self.preempted = False  # set by SIGTERM on this rank

    @contextlib.contextmanager
    def _catch_sigterm(self):
        def on_sigterm(signum, frame):
            self.preempted = True

        previous = signal.signal(signal.SIGTERM, on_sigterm)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)

    @property
    def batches_per_epoch(self) -> int:
        return len(self.batch_sampler)

    def call(self, event: str) -> None:
        for hook in self.hooks:
            getattr(hook, event)(self)

    def finished(self) -> bool:
        if self.max_steps is not None and self.state.global_step >= self.max_steps:
            return True
        return self.state.epoch >= self.epochs

    def train(self) -> TrainState:
        """Train until `epochs` or `max_steps` (or SIGTERM), resuming from `state` (set by a checkpoint load)."""
        with self._catch_sigterm():
            return self._train()

    def _train(self) -> TrainState:
        self.call("before_train")
        while not self.finished() and not self.stop_requested:
            self.batch_sampler.set_epoch(self.state.epoch)
            self.batch_sampler.skip(self.state.batch_in_epoch)
            self.call("before_epoch")
            pending: list = []
            for batch in self.loader:
                pending.append(batch)
                if len(pending) < self.strategy.micro_batches_per_call:
                    continue
                self.run_step(pending)
                pending = []
                if self.finished() or self.stop_requested:
                    break
            if self.state.batch_in_epoch >= self.batches_per_epoch:
                self.state.epoch += 1
                self.state.batch_in_epoch = 0
                self.call("after_epoch")
        self.call("after_train")
        return self.state

    def run_step(self, batches: list[Batch]) -> None:
        """One call into the strategy (a micro-batch, or for a pipeline every micro-batch of one optimizer step),
        then the hooks after each optimizer step; a stop request takes effect at the next optimizer step."""
        self.state.batch_in_epoch += len(batches)
        result = self.strategy.train_step(batches, stop=self.preempted)
        if result.stop and not self.stop_agreed:
            self.stop_agreed = True
            log.warning(
                "stop requested (SIGTERM) at step %d: checkpointing at the end of this step and exiting",
                self.state.global_step + 1,
            )
        if not result.finite:
            self._handle_nonfinite(result.losses, [t for _, targets in batches for t in targets])
            return
        self.state.losses = {k: float(v.detach()) for k, v in result.losses.items()}
        self.state.losses["loss"] = float(total_loss(result.losses).detach())
        if result.stepped:
            self.state.global_step = self.strategy.global_step
            self.call("after_step")
            self.stop_requested = self.stop_agreed

    def _handle_nonfinite(self, loss_dict: dict[str, torch.Tensor], targets: list[dict]) -> None:
        bad = {k: float(v) for k, v in loss_dict.items() if not math.isfinite(float(v))}
        state = self.state
        where = f"step {state.global_step + 1} (epoch {state.epoch}, batch {state.batch_in_epoch})"
        image_ids = [int(t["image_id"]) for t in targets]
        what = f"on images {image_ids}: {bad}" if bad else "on another rank"
        if self.nonfinite_loss == "stop":
            raise DsdetError(
                f"non-finite loss in {where} {what}; lower train.lr or set train.nonfinite_loss=skip"
            )
        state.skipped_nonfinite += 1
        if bad:
            log.warning(
                "non-finite loss in %s %s: micro-batch skipped (%d so far)",
                where,
                what,
                state.skipped_nonfinite,
            )
