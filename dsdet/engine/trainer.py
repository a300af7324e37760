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

from dsdet.engine.distributed import any_rank
from dsdet.engine.strategy import DeepSpeedStrategy
from dsdet.errors import DsdetError

log = logging.getLogger("dsdet")


@dataclass
class TrainState:
    """Everything that says where training is; checkpoints store it as client state."""

    epoch: int = 0
    batch_in_epoch: int = 0  # micro-batches of `epoch` already consumed
    global_step: int = 0  # optimizer steps
    best_metric: float | None = None
    best_tag: str | None = None
    skipped_nonfinite: int = 0
    losses: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k not in ("losses", "metrics")}

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
        self.state = TrainState()
        self.stop_requested = False  # set on every rank once any rank was asked to stop
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
        return len(self.loader)

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

    def run_step(self, batches: list[tuple[list[torch.Tensor], list[dict]]]) -> None:
        """One call into the strategy: a micro-batch (forward, loss check, backward, step at accumulation
        boundaries), or for a pipeline every micro-batch of one optimizer step."""
        self.state.batch_in_epoch += len(batches)
        if self.strategy.pipelined:
            loss_dict = self.strategy.train_batch(batches)  # forward, backward and step, all stages
            targets = [t for _, batch_targets in batches for t in batch_targets]
        else:
            images, targets = self.strategy.to_device(*batches[0])
            loss_dict = self.strategy.forward(images, targets)
        total = loss_dict["loss"] if "loss" in loss_dict else sum(loss_dict.values())
        if any_rank(not bool(torch.isfinite(total))):
            self._handle_nonfinite(loss_dict, targets)
            return
        stepped = self.strategy.pipelined or self.strategy.backward_and_step(total)
        self.state.losses = {k: float(v.detach()) for k, v in loss_dict.items()}
        self.state.losses["loss"] = float(total.detach())
        if stepped:
            self.state.global_step = self.strategy.global_step
            self.call("after_step")
            if any_rank(self.preempted):
                log.warning(
                    "stop requested (SIGTERM) at step %d: checkpointing and exiting", self.state.global_step
                )
                self.stop_requested = True

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
