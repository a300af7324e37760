"""`dsdet config`: generate, validate, explain and describe DeepSpeed and experiment configs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dsdet.config import (
    PRESETS,
    ConfigError,
    DeepSpeedConfig,
    ExperimentConfig,
    fill_from_experiment,
    generate_deepspeed_config,
    load_config_file,
    resolve_deepspeed_config,
)
from dsdet.config.explain import describe
from dsdet.config.problems import validate_model
from dsdet.errors import DsdetError


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `dsdet config` and its actions."""
    parser = subparsers.add_parser(
        "config", help="generate, validate and explain DeepSpeed/experiment configs"
    )
    actions = parser.add_subparsers(dest="config_action", metavar="ACTION", required=True)
    _add_generate(actions)

    validate = actions.add_parser(
        "validate", help="check a DeepSpeed JSON or experiment YAML; one line per problem"
    )
    validate.add_argument("file", help="DeepSpeed JSON config or experiment YAML (told apart by their keys)")
    validate.set_defaults(func=run_validate)

    schema = actions.add_parser("schema", help="print the JSON Schema of experiments or DeepSpeed configs")
    schema.add_argument(
        "--kind",
        choices=("experiment", "deepspeed"),
        default="experiment",
        help="experiment files or DeepSpeed JSON configs (default: experiment)",
    )
    schema.add_argument("-o", "--output", help="write here instead of stdout")
    schema.set_defaults(func=run_schema)

    explain = actions.add_parser("explain", help="summarize a config and estimate per-rank memory")
    explain.add_argument("file", help="DeepSpeed JSON or experiment YAML")
    explain.add_argument("--world-size", type=positive_int, default=1, help="data-parallel ranks (default 1)")
    explain.add_argument(
        "--steps-per-epoch", type=positive_int, help="micro batches per epoch, to resolve scheduler steps"
    )
    count = explain.add_mutually_exclusive_group()
    count.add_argument("--num-params", type=positive_int, help="parameter count for the memory estimate")
    count.add_argument("--model", help="count the parameters of this dsdet model (builds it)")
    explain.set_defaults(func=run_explain)

    presets = actions.add_parser("list-presets", help="list the named DeepSpeed presets")
    presets.set_defaults(func=run_list_presets)

    reference = actions.add_parser(
        "reference", help="write the Markdown reference of every experiment key (docs/configuration.md)"
    )
    reference.add_argument("-o", "--output", help="write here instead of stdout")
    reference.set_defaults(func=run_reference)


def _add_generate(actions: argparse._SubParsersAction) -> None:
    generate = actions.add_parser(
        "generate", help="write a DeepSpeed JSON config ('auto' kept unless --world-size)"
    )
    generate.add_argument(
        "--preset",
        action="append",
        default=[],
        help="named preset (dsdet config list-presets); repeat to combine",
    )
    generate.add_argument(
        "--zero-stage", type=int, choices=(0, 1, 2, 3), help="ZeRO stage: zero_optimization.stage"
    )
    generate.add_argument(
        "--offload-optimizer", choices=("cpu", "nvme"), help="offload optimizer states and step (stage 1-3)"
    )
    generate.add_argument("--offload-param", choices=("cpu", "nvme"), help="offload parameters (stage 3)")
    generate.add_argument("--nvme-path", help="directory on the NVMe device for nvme offload")
    precision = generate.add_mutually_exclusive_group()
    precision.add_argument(
        "--fp16", action="store_const", const="fp16", dest="precision", help="fp16 with dynamic loss scaling"
    )
    precision.add_argument(
        "--bf16", action="store_const", const="bf16", dest="precision", help="bf16 autocast, fp32 weights"
    )
    generate.add_argument(
        "--activation-checkpointing", action="store_true", help="add the activation_checkpointing section"
    )
    generate.add_argument(
        "--optimizer",
        help="have DeepSpeed build Adam, AdamW, Lamb or SGD (default: dsdet builds train.optimizer)",
    )
    generate.add_argument(
        "--scheduler",
        help="have DeepSpeed build WarmupLR, WarmupDecayLR, WarmupCosineLR, OneCycle or LRRangeTest "
        "(default: dsdet builds train.schedule)",
    )
    generate.add_argument(
        "--lr", type=float, help="the --optimizer's learning rate (default: 'auto', from train.lr)"
    )
    generate.add_argument("--micro-batch", type=positive_int, help="train_micro_batch_size_per_gpu")
    generate.add_argument("--grad-accum", type=positive_int, help="gradient_accumulation_steps")
    generate.add_argument("--world-size", type=positive_int, help="resolve every 'auto' for this many ranks")
    generate.add_argument(
        "--steps-per-epoch", type=positive_int, help="micro batches per epoch (needed with --world-size)"
    )
    generate.add_argument("--num-params", type=positive_int, help="parameter count, to size the ZeRO buckets")
    generate.add_argument("-o", "--output", help="write here instead of stdout")
    generate.set_defaults(func=run_generate)


def run_generate(args: argparse.Namespace) -> int:
    """Compose presets and options into a DeepSpeed JSON, resolved when --world-size is given."""
    config = generate_deepspeed_config(
        args.preset,
        zero_stage=args.zero_stage,
        offload_optimizer=args.offload_optimizer,
        offload_param=args.offload_param,
        nvme_path=args.nvme_path,
        precision=args.precision,
        activation_checkpointing=args.activation_checkpointing,
        optimizer=args.optimizer,
        scheduler=args.scheduler,
        lr=args.lr,
        micro_batch=args.micro_batch,
        grad_accum=args.grad_accum,
    )
    if args.world_size is None:
        data = config.to_deepspeed_dict(allow_auto=True)
    else:
        if args.steps_per_epoch is None:
            raise DsdetError("--world-size needs --steps-per-epoch: the scheduler's step counts depend on it")
        chosen = {"lr": args.lr, "batch_size": args.micro_batch, "grad_accum_steps": args.grad_accum}
        train = {key: value for key, value in chosen.items() if value is not None}
        train["precision"] = args.precision or "fp32"
        exp = validate_model(ExperimentConfig, {"train": train, "deepspeed": config}, "generate options")
        data = resolve_deepspeed_config(
            exp,
            world_size=args.world_size,
            steps_per_epoch=args.steps_per_epoch,
            num_parameters=args.num_params,
            must_match=False,
        )
    _emit(json.dumps(data, indent=2) + "\n", args.output)
    return 0


def run_validate(args: argparse.Namespace) -> int:
    """Print "ok" for a valid config, or one line per problem and exit 2."""
    try:
        config = load_config_file(args.file)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"dsdet: error: {exc.source}: {problem}", file=sys.stderr)
        return 2
    is_experiment = isinstance(config, ExperimentConfig)
    for warning in (config.deepspeed if is_experiment else config).warnings:
        print(f"dsdet: warning: {args.file}: {warning}", file=sys.stderr)
    print(f"ok: {args.file} is a valid {'experiment' if is_experiment else 'DeepSpeed config'}")
    return 0


def run_schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema editors use to check and complete config files."""
    model = ExperimentConfig if args.kind == "experiment" else DeepSpeedConfig
    _emit(json.dumps(model.model_json_schema(), indent=2) + "\n", args.output)
    return 0


def run_explain(args: argparse.Namespace) -> int:
    """Print what a config does and the model-state memory per rank."""
    config = load_config_file(args.file)
    num_parameters = _count_parameters(args.model) if args.model else args.num_params
    train = None
    if isinstance(config, ExperimentConfig):
        print(f"experiment: model {config.model.name}, precision {config.train.precision}")
        train = config.train
        config = fill_from_experiment(
            config,
            world_size=args.world_size,
            steps_per_epoch=args.steps_per_epoch,
            num_parameters=num_parameters,
        )
    for line in describe(config, world_size=args.world_size, num_parameters=num_parameters, train=train):
        print(line)
    return 0


def run_list_presets(args: argparse.Namespace) -> int:
    """Print each preset's name and what it does."""
    width = max(map(len, PRESETS)) + 2
    for preset in PRESETS.values():
        print(f"{preset.name:<{width}}{preset.description}")
    return 0


def run_reference(args: argparse.Namespace) -> int:
    """Print the configuration reference generated from the schemas."""
    from dsdet.config.reference import reference_markdown

    _emit(reference_markdown(), args.output)
    return 0


def _count_parameters(model_name: str) -> int:
    try:
        from dsdet.models import build_model
    except ImportError as exc:
        raise DsdetError(
            f"--model needs dsdet.models, which cannot be imported ({exc}); pass --num-params"
        ) from None
    model = build_model(model_name, num_classes=91)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _emit(text: str, output: str | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise DsdetError(f"{output}: cannot write: {exc.strerror}") from None
    print(f"wrote {output}", file=sys.stderr)
