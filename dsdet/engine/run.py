"""The training recipe, top to bottom: data → model → DeepSpeed → hooks → loop → export."""

from __future__ import annotations

import json
import logging
from functools import partial
from pathlib import Path

import torch

from dsdet.config import ExperimentConfig, experiment_hash, resolve_deepspeed_config
from dsdet.engine import checkpoint as ckpt
from dsdet.engine.activation_checkpointing import checkpoint_backbone_blocks
from dsdet.engine.cpu import configure_cpu_ranks, roi_align_kernel
from dsdet.engine.data import build_data
from dsdet.engine.deepspeed_internals import version_warning
from dsdet.engine.distributed import init_distributed, local_world_size, shutdown_distributed
from dsdet.engine.evaluation import evaluate
from dsdet.engine.export import export_checkpoint
from dsdet.engine.hooks import CheckpointHook, EvalHook, ProgressHook, ScalarLogHook
from dsdet.engine.logs import setup_logging
from dsdet.engine.pipeline_strategy import PipelineStrategy, data_parallel_layout, pipeline_stages
from dsdet.engine.rank_failures import name_lost_ranks
from dsdet.engine.resume import model_identity, plan_resume, resume, rng_state, seed_everything
from dsdet.engine.strategy import DeepSpeedStrategy
from dsdet.engine.trainer import Trainer
from dsdet.eval import CocoEvaluator
from dsdet.models import build_model

log = logging.getLogger("dsdet")


def model_factory(exp: ExperimentConfig, num_classes: int):
    """A zero-argument builder of the experiment's model."""
    m = exp.model
    return partial(
        build_model,
        m.name,
        num_classes,
        weights=m.weights,
        norm=m.norm,
        channels_last=m.channels_last,
        roi_align=roi_align_kernel(exp.train.cpu),
        **m.kwargs,
    )


def count_parameters(factory) -> int:
    """Trainable parameter count, from a model built on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        model = factory()
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def train(exp: ExperimentConfig) -> dict:
    """Run the experiment on this rank; returns a summary (rank 0 has metrics and paths). A process group this
    call creates is destroyed when it returns; one that already existed is left as it was."""
    owns_process_group = not torch.distributed.is_initialized()
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
    output_dir = Path(exp.train.output_dir)
    if env.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(exp.train.seed)  # identical model init on every rank

    stages = pipeline_stages(exp.deepspeed.to_deepspeed_dict(allow_auto=True))
    data_parallel_size, data_parallel_rank = data_parallel_layout(env.world_size, env.rank, stages)
    data = build_data(exp, data_parallel_size, data_parallel_rank)
    factory = model_factory(exp, data.num_classes)
    ds_config = resolve_deepspeed_config(
        exp,
        world_size=data_parallel_size,
        steps_per_epoch=len(data.train_loader),
        num_parameters=count_parameters(factory),
    )
    plan = plan_resume(exp, env, data.num_classes, ds_config)  # converts when ranks or ZeRO stage changed
    strategy_class = PipelineStrategy if stages > 1 else DeepSpeedStrategy
    strategy = strategy_class(plan.deepspeed_config(ds_config))
    model = factory()
    if exp.train.activation_checkpointing:
        checkpoint_backbone_blocks(model, ds_config.get("activation_checkpointing", {}))
    strategy.prepare(model)  # ZeRO-3 partitions the parameters here
    seed_everything(exp.train.seed + data_parallel_rank)  # per-replica augmentation; pipeline stages agree

    info = {
        "model": model_identity(exp, data.num_classes),
        "class_names": data.class_names,
        "label_to_category_id": data.label_to_category_id,
        "world_size": env.world_size,
        "config_hash": experiment_hash(exp),
        "experiment": exp.model_dump(mode="json"),
        "deepspeed": ds_config,
    }
    images_per_step = ds_config["train_batch_size"]
    tensorboard = (
        ScalarLogHook(output_dir, exp.train.log_every_steps, images_per_step) if env.is_main else None
    )
    evaluator = partial(
        CocoEvaluator,
        data.val_set.coco_ground_truth(),
        data.label_to_category_id,
        max_detections=exp.eval.max_detections,
    )

    def run_eval():
        return evaluate(
            strategy.eval_model(),
            data.val_loader,
            evaluator(),
            strategy.device,
            strategy.autocast,
            keep=exp.eval.num_vis_images,
        )

    # Order matters at the end of an epoch: evaluate, then print the epoch line (with that evaluation), then
    # save (naming the best checkpoint from it).
    hooks = [
        *([tensorboard] if tensorboard else []),
        EvalHook(
            run_eval,
            exp.eval.every_epochs,
            data.class_names,
            output_dir / "metrics.jsonl" if env.is_main else None,
            tensorboard,
        ),
        ProgressHook(env.is_main, images_per_step),
        CheckpointHook(
            ckpt.checkpoints_dir(output_dir),
            exp.train.checkpoint_every_steps,
            exp.train.keep_last,
            info,
            rng_state,
        ),
    ]
    trainer = Trainer(
        strategy,
        data.train_loader,
        data.batch_sampler,
        epochs=exp.train.epochs,
        max_steps=exp.train.max_steps,
        nonfinite_loss=exp.train.nonfinite_loss,
        hooks=hooks,
    )
    if env.is_main:
        (output_dir / "deepspeed_config.json").write_text(json.dumps(strategy.ds_config, indent=1))
    resume(trainer, strategy, plan, exp, env, data.batch_size)
    with name_lost_ranks(env):  # a survivor of a killed rank names it instead of a gloo/NCCL traceback
        state = trainer.train()
        if owns_process_group:  # what follows (summary, export) is rank 0's file work
            shutdown_distributed()

    summary = {
        "output_dir": str(output_dir),
        "global_step": state.global_step,
        "metrics": state.metrics,
        "best_AP": state.best_metric,
    }
    if env.is_main:
        latest = ckpt.latest_good(ckpt.checkpoints_dir(output_dir))
        summary["checkpoint"] = str(latest.path) if latest else None
        if exp.train.export_on_finish and latest is not None and not trainer.stop_requested:
            summary["exported_model"] = str(export_checkpoint(latest.path, output_dir / "model.pt"))
        summary["tensorboard"] = str(output_dir / "tensorboard")
        summary["metrics_file"] = str(output_dir / "metrics.jsonl")
        (output_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
