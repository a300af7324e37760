"""Hooks around the training loop: progress and console summary, TensorBoard, evaluation, checkpoints."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm import tqdm

from dsdet.engine.checkpoint import Checkpointer, tag_for_step
from dsdet.engine.trainer import Hook, Trainer, TrainState
from dsdet.eval import draw_detections, format_metrics

log = logging.getLogger("dsdet")


class ProgressHook(Hook):
    """Rank 0: a progress bar with ETA per epoch and a one-line summary after it; other ranks stay quiet."""

    def __init__(self, is_main: bool, images_per_step: int, enabled: bool = True):
        self.is_main = is_main
        self.images_per_step = images_per_step
        self.enabled = enabled and is_main
        self.bar: tqdm | None = None
        self.epoch_start = 0.0
        self.last_step_end = 0.0
        self.steps_at_start = 0

    def before_epoch(self, trainer: Trainer) -> None:
        self.epoch_start = self.last_step_end = time.perf_counter()
        self.steps_at_start = trainer.state.global_step
        if self.enabled:
            self.bar = tqdm(
                total=trainer.batches_per_epoch,
                initial=trainer.state.batch_in_epoch,
                desc=f"epoch {trainer.state.epoch + 1}/{trainer.epochs}",
                dynamic_ncols=True,
                leave=False,
            )

    def after_step(self, trainer: Trainer) -> None:
        self.last_step_end = time.perf_counter()
        if self.bar is not None:
            self.bar.n = trainer.state.batch_in_epoch
            self.bar.set_postfix(
                loss=f"{trainer.state.losses.get('loss', float('nan')):.3f}", lr=f"{trainer.strategy.lr:.2e}"
            )

    def images_per_second(self, trainer: Trainer) -> float:
        """Training images per second over this epoch's steps (its evaluation left out)."""
        elapsed = max(self.last_step_end - self.epoch_start, 1e-9)
        return (trainer.state.global_step - self.steps_at_start) * self.images_per_step / elapsed

    def after_epoch(self, trainer: Trainer) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.is_main:
            state = trainer.state
            parts = [
                f"epoch {state.epoch}/{trainer.epochs}",
                f"step {state.global_step}",
                f"loss {state.losses.get('loss', float('nan')):.4f}",
                f"lr {trainer.strategy.lr:.2e}",
                f"{self.images_per_second(trainer):.1f} img/s",
                f"{time.perf_counter() - self.epoch_start:.0f} s",
            ]
            if state.metrics and state.metrics_step == state.global_step:  # this epoch's evaluation
                parts.append(format_metrics(state.metrics))
            log.info(" | ".join(parts))


class ScalarLogHook(Hook):
    """Rank 0: every loss component, lr and images/s every `every` steps to TensorBoard and `train_log.jsonl`;
    mAP and sample val images with boxes drawn after each evaluation."""

    def __init__(self, output_dir: Path, every: int, images_per_step: int):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(output_dir / "tensorboard"))
        self.jsonl = output_dir / "train_log.jsonl"
        self.every = max(1, every)
        self.images_per_step = images_per_step
        self.last_time = time.perf_counter()
        self.last_step = 0
        self.logged_eval_step: int | None = None

    def before_train(self, trainer: Trainer) -> None:
        self.last_step = trainer.state.global_step
        self.last_time = time.perf_counter()

    def after_step(self, trainer: Trainer) -> None:
        step = trainer.state.global_step
        if step % self.every:
            return
        now = time.perf_counter()
        scalars = {
            **trainer.state.losses,
            "lr": trainer.strategy.lr,
            "images_per_s": (step - self.last_step) * self.images_per_step / max(now - self.last_time, 1e-9),
        }
        self.last_time, self.last_step = now, step
        for name, value in scalars.items():
            self.writer.add_scalar(f"train/{name}", value, step)
        with self.jsonl.open("a") as f:
            f.write(json.dumps({"step": step, "epoch": trainer.state.epoch, **scalars}) + "\n")

    def after_epoch(self, trainer: Trainer) -> None:
        self.log_new_evaluation(trainer.state)

    def log_new_evaluation(self, state: TrainState) -> None:
        """mAP and the drawn val images of an evaluation not logged yet (the EvalHook puts them in the state)."""
        if state.metrics_step is None or state.metrics_step == self.logged_eval_step:
            return
        self.logged_eval_step = state.metrics_step
        for name, value in state.metrics.items():
            self.writer.add_scalar(f"val/{name}", value, state.metrics_step)
        for i, image in enumerate(state.eval_images):
            self.writer.add_image(f"val/sample_{i}", image, state.metrics_step)
        self.writer.flush()

    def after_train(self, trainer: Trainer) -> None:
        self.log_new_evaluation(trainer.state)
        self.writer.close()


class EvalHook(Hook):
    """Every `every_epochs` epochs (and at the end): COCO metrics on all ranks into the training state, with
    `draw` also the sample val images with their detections, for the hooks that log them."""

    def __init__(
        self,
        run_eval: Callable[[], tuple[dict[str, float], list]],
        every_epochs: int,
        class_names: Sequence[str],
        metrics_file: Path | None,
        draw: bool,
    ):
        self.run_eval = run_eval
        self.every_epochs = every_epochs
        self.class_names = list(class_names)
        self.metrics_file = metrics_file
        self.draw = draw

    def evaluate(self, trainer: Trainer) -> None:
        state = trainer.state
        metrics, samples = self.run_eval()
        state.metrics, state.metrics_step = metrics, state.global_step
        if self.draw:
            state.eval_images = [
                draw_detections(img, pred, tgt, self.class_names) for img, tgt, pred in samples
            ]
        if self.metrics_file is not None:
            with self.metrics_file.open("a") as f:
                f.write(json.dumps({"epoch": state.epoch, "step": state.global_step, **metrics}) + "\n")

    def after_epoch(self, trainer: Trainer) -> None:
        if self.every_epochs > 0 and trainer.state.epoch % self.every_epochs == 0:
            self.evaluate(trainer)

    def after_train(self, trainer: Trainer) -> None:
        if trainer.stop_requested:  # preempted: the checkpoint must be written within the grace period
            return
        if self.every_epochs > 0 and trainer.state.metrics_step != trainer.state.global_step:
            self.evaluate(trainer)


class CheckpointHook(Hook):
    """Save every `every_steps` optimizer steps, after each epoch and at the end; keep the checkpointer's last
    `keep_last` and the best: the checkpoint saved first after the evaluation with the highest `key` metric."""

    def __init__(
        self,
        checkpointer: Checkpointer,
        every_steps: int | None,
        rng_state: Callable[[], dict],
        key: str = "AP",
    ):
        self.key = key
        self.checkpointer = checkpointer
        self.every_steps = every_steps
        self.rng_state = rng_state
        self.saved_at: int | None = None
        self.save_at_next_step = False  # an epoch ended between the micro-batches of one optimizer step

    def before_train(self, trainer: Trainer) -> None:
        # A run that starts past step 0 was loaded from the checkpoint of that step: never overwrite it.
        self.saved_at = trainer.state.global_step or None

    def save(self, trainer: Trainer) -> None:
        state = trainer.state
        if self.saved_at == state.global_step:
            return
        self.track_best(state, tag_for_step(state.global_step))
        protect = {state.best_tag} if state.best_tag else set()
        self.checkpointer.save(trainer.strategy, state.to_dict(), self.rng_state(), protect)
        self.saved_at = state.global_step

    def track_best(self, state: TrainState, tag: str) -> None:
        """Name `tag` the best checkpoint when it is the first saved since an evaluation that beat the best."""
        value = state.metrics.get(self.key)
        fresh = state.metrics_step is not None and (
            self.saved_at is None or state.metrics_step > self.saved_at
        )
        if value is not None and fresh and (state.best_metric is None or value > state.best_metric):
            state.best_metric, state.best_tag = value, tag

    def after_step(self, trainer: Trainer) -> None:
        every = self.every_steps and trainer.state.global_step % self.every_steps == 0
        if every or self.save_at_next_step:
            self.save_at_next_step = False
            self.save(trainer)

    def after_epoch(self, trainer: Trainer) -> None:
        if trainer.strategy.mid_accumulation:  # checkpoints hold whole steps only: save after this one
            self.save_at_next_step = True
            return
        self.save(trainer)

    def after_train(self, trainer: Trainer) -> None:
        self.save(trainer)
