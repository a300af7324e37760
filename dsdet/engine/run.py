"""The training recipe, top to bottom: data → model → DeepSpeed → hooks → loop → export.

`train` composes small functions (`build_data`, `build_model`, `build_optimizer`, `build_hooks`, ...), each of
which a user's own recipe can call or replace."""

from __future__ import annotations

import json
import logging
from functools import partial
from pathlib import Path

import torch
from deepspeed.accelerator import get_accelerator
from torch import nn

from dsdet.config import (
    ExperimentConfig,
    experiment_hash,
    resolve_deepspeed_config,
    total_training_steps,
    warmup_steps,
)
from dsdet.engine.activation_checkpointing import checkpoint_backbone_blocks
from dsdet.engine.checkpoint import Checkpointer, Storage, export_checkpoint, latest_good
from dsdet.engine.cpu import configure_cpu_ranks, roi_align_kernel
from dsdet.engine.data import DataBundle, build_data
from dsdet.engine.deepspeed_internals import version_warning
from dsdet.engine.distributed import DistEnv, init_distributed, local_world_size, shutdown_distributed
from dsdet.engine.evaluation import evaluate
from dsdet.engine.hooks import CheckpointHook, EvalHook, ProgressHook, ScalarLogHook
from dsdet.engine.logs import setup_logging
from dsdet.engine.optim import OptimizerSetup, optimizer_setup
from dsdet.engine.pipeline_strategy import PipelineStrategy, data_parallel_layout, pipeline_stages
from dsdet.engine.rank_failures import name_lost_ranks
from dsdet.engine.resume import model_identity, plan_resume, resume, rng_state, seed_everything
from dsdet.engine.strategy import DeepSpeedStrategy
from dsdet.engine.trainer import Hook, Trainer, TrainState
from dsdet.eval import CocoEvaluator
from dsdet.models import model_info
from dsdet.models.build import ModelSpec

log = logging.getLogger("dsdet")


def model_spec(exp: ExperimentConfig, num_classes: int) -> ModelSpec:
    """The experiment's model, as a spec the strategy builds."""
    m = exp.model
    return ModelSpec(
        m.name,
        num_classes,
        weights=m.weights,
        norm=m.norm,
        channels_last=m.channels_last,
        roi_align=roi_align_kernel(exp.train.cpu),
        kwargs=m.kwargs,
    )


def build_optimizer(exp: ExperimentConfig, ds_config: dict, steps_per_epoch: int) -> OptimizerSetup:
    """The parameter groups, optimizer and schedule of `exp` for a run of `steps_per_epoch` micro batches per
    epoch under `ds_config` (the strategy's, on this accelerator)."""
    total = total_training_steps(exp, steps_per_epoch)
    return optimizer_setup(
        exp.train,
        ds_config,
        total_steps=total,
        warmup_steps=warmup_steps(exp, total),
        device=get_accelerator().device_name(),
        overrides=model_info(exp.model.name).param_overrides,
    )


def count_parameters(spec: ModelSpec) -> int:
    """Trainable parameter count, from a model constructed on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        model = spec.construct()
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def start_rank(exp: ExperimentConfig) -> DistEnv:
    """Join the job, set up logging, warnings and the CPU room, create the output folder and seed every rank
    alike (the same initial model everywhere)."""
    env = init_distributed()
    setup_logging(env.rank)
    if warning := version_warning():
        log.warning(warning)
    if env.is_main:
        for warning in exp.deepspeed.warnings:  # keys DeepSpeed ignores, legacy spellings
            log.warning(warning)
    configure_cpu_ranks(
        exp.train.cpu,
        world_size=env.world_size,
        ranks_on_node=local_world_size(),
        first_on_node=env.local_rank == 0,
        precision=exp.train.precision,
    )
    if env.is_main:
        Path(exp.train.output_dir).mkdir(parents=True, exist_ok=True)
    seed_everything(exp.train.seed)
    return env


def build_checkpointer(
    exp: ExperimentConfig, env: DistEnv, data: DataBundle, ds_config: dict
) -> Checkpointer:
    """The run's Checkpointer, with what each checkpoint records about the run."""
    run_info = {
        "model": model_identity(exp, data.num_classes),
        "class_names": data.class_names,
        "label_to_category_id": data.label_to_category_id,
        "world_size": env.world_size,
        "config_hash": experiment_hash(exp),
        "experiment": exp.model_dump(mode="json"),
        "deepspeed": ds_config,
    }
    node_local = bool(ds_config.get("checkpoint", {}).get("use_node_local_storage"))
    storage = Storage.of(env, node_local)
    return Checkpointer(exp.train.output_dir, storage, keep_last=exp.train.keep_last, run_info=run_info)


def build_model(exp: ExperimentConfig, strategy: DeepSpeedStrategy, spec: ModelSpec) -> nn.Module:
    """The model, built by the strategy (partitioned as it is made under ZeRO-3), with activation checkpointing
    of its backbone blocks when asked."""
    model = strategy.build(spec)
    if exp.train.activation_checkpointing:
        checkpoint_backbone_blocks(model, strategy.ds_config.get("activation_checkpointing", {}))
    return model


def build_hooks(
    exp: ExperimentConfig,
    env: DistEnv,
    data: DataBundle,
    strategy: DeepSpeedStrategy,
    checkpointer: Checkpointer,
) -> list[Hook]:
    """The hooks around the loop. They share the trainer's state: at the end of an epoch the evaluation puts its
    metrics there, the logs write them, the epoch line prints them, and the checkpoint hook names the best."""
    output_dir = Path(exp.train.output_dir)
    images_per_step = strategy.ds_config["train_batch_size"]
    evaluator = partial(
        CocoEvaluator,
        data.val_set.coco_ground_truth(),
        data.label_to_category_id,
        max_detections=exp.eval.max_detections,
    )

    def run_eval():
        model, device = strategy.eval_model(), strategy.device
        keep = exp.eval.num_vis_images
        return evaluate(model, data.val_loader, evaluator(), device, strategy.autocast, keep=keep)

    metrics_file = output_dir / "metrics.jsonl" if env.is_main else None
    hooks: list[Hook] = [
        EvalHook(run_eval, exp.eval.every_epochs, data.class_names, metrics_file, env.is_main)
    ]
    if env.is_main:
        hooks.append(ScalarLogHook(output_dir, exp.train.log_every_steps, images_per_step))
    hooks.append(ProgressHook(env.is_main, images_per_step))
    hooks.append(CheckpointHook(checkpointer, exp.train.checkpoint_every_steps, rng_state))
    return hooks


def train(exp: ExperimentConfig) -> dict:
    """Run the experiment on this rank; returns a summary (rank 0 has metrics and paths). A process group this
    call creates is destroyed when it returns; one that already existed is left as it was."""
    owns_process_group = not torch.distributed.is_initialized()
    env = start_rank(exp)
    stages = pipeline_stages(exp.deepspeed.to_deepspeed_dict(allow_auto=True))
    replicas, replica = data_parallel_layout(env.world_size, env.rank, stages)
    data = build_data(exp, replicas, replica)
    spec = model_spec(exp, data.num_classes)
    steps_per_epoch = len(data.train_loader)
    ds_config = resolve_deepspeed_config(
        exp, world_size=replicas, steps_per_epoch=steps_per_epoch, num_parameters=count_parameters(spec)
    )
    checkpointer = build_checkpointer(exp, env, data, ds_config)
    plan = plan_resume(exp, env, checkpointer, data.num_classes, ds_config)  # converts on a new layout
    strategy = (PipelineStrategy if stages > 1 else DeepSpeedStrategy)(plan.deepspeed_config(ds_config))
    model = build_model(exp, strategy, spec)
    strategy.prepare(model, build_optimizer(exp, strategy.ds_config, steps_per_epoch))
    seed_everything(exp.train.seed + replica)  # per-replica augmentation; pipeline stages agree
    train_cfg = exp.train
    trainer = Trainer(
        strategy,
        data.train_loader,
        data.batch_sampler,
        epochs=train_cfg.epochs,
        max_steps=train_cfg.max_steps,
        nonfinite_loss=train_cfg.nonfinite_loss,
        hooks=build_hooks(exp, env, data, strategy, checkpointer),
    )
    if env.is_main:
        Path(train_cfg.output_dir, "deepspeed_config.json").write_text(
            json.dumps(strategy.ds_config, indent=1)
        )
    resume(trainer, strategy, plan, exp, env, data.batch_size)
    with name_lost_ranks(env):  # a survivor of a killed rank names it instead of a gloo/NCCL traceback
        state = trainer.train()
        if owns_process_group:  # what follows (summary, export) is rank 0's file work
            shutdown_distributed()
    return summarize(exp, env, state, checkpointer, exported=not trainer.stop_requested)


def summarize(
    exp: ExperimentConfig, env: DistEnv, state: TrainState, checkpointer: Checkpointer, exported: bool
) -> dict:
    """The run's summary; rank 0 also exports the last checkpoint (when `exported`) and writes summary.json."""
    output_dir = Path(exp.train.output_dir)
    summary = {
        "output_dir": str(output_dir),
        "global_step": state.global_step,
        "metrics": state.metrics,
        "best_AP": state.best_metric,
    }
    if env.is_main:
        latest = latest_good(checkpointer.root, verify_contents=False)  # verified as it was saved
        summary["checkpoint"] = str(latest.path) if latest else None
        if exp.train.export_on_finish and latest is not None and exported:
            model_file = export_checkpoint(latest.path, output_dir / "model.pt", verify_contents=False)
            summary["exported_model"] = str(model_file)
        summary["tensorboard"] = str(output_dir / "tensorboard")
        summary["metrics_file"] = str(output_dir / "metrics.jsonl")
        (output_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
