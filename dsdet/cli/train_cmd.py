"""`dsdet train | eval | predict | export`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dsdet.errors import DsdetError


def _train(args: argparse.Namespace) -> int:
    from dsdet.train import run

    return run(args)


def _eval(args: argparse.Namespace) -> int:
    from dsdet.config import load_experiment
    from dsdet.data import build_eval_loader
    from dsdet.engine.data import build_datasets, dataset_root
    from dsdet.engine.evaluation import evaluate
    from dsdet.engine.inference import load_trained_model
    from dsdet.eval import CocoEvaluator, format_metrics
    from dsdet.train import split_args

    exp = load_experiment(*split_args(args.args))
    trained = load_trained_model(args.checkpoint)
    _, val_set = build_datasets(exp, dataset_root(exp))
    if list(val_set.class_names) != trained.class_names:
        raise DsdetError(
            f"{args.checkpoint} was trained on classes {trained.class_names}, the val split has {val_set.class_names}"
        )
    loader = build_eval_loader(val_set, exp.eval.batch_size or exp.train.batch_size, world_size=1, rank=0)
    evaluator = CocoEvaluator(
        val_set.coco_ground_truth(), trained.label_to_category_id, max_detections=exp.eval.max_detections
    )
    metrics, _ = evaluate(trained.model, loader, evaluator, trained.device)
    print(format_metrics(metrics))
    text = json.dumps(metrics, indent=1)
    if args.json:
        Path(args.json).write_text(text)
    else:
        print(text)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from dsdet.engine.predict import predict_images

    out = predict_images(args.checkpoint, args.images, Path(args.out), score_threshold=args.score_threshold)
    print(f"detections: {out}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from dsdet.engine.checkpoint import export_checkpoint

    out = export_checkpoint(args.checkpoint, args.output)
    print(f"exported {out} (metadata in {out.name}.json)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add train, eval, predict and export."""
    from dsdet.train import add_train_arguments

    p = subparsers.add_parser("train", help="train a detector (same as python -m dsdet.train)")
    add_train_arguments(p)
    p.set_defaults(func=_train)

    p = subparsers.add_parser("eval", help="COCO metrics of a checkpoint or exported model on the val split")
    p.add_argument(
        "args",
        nargs="*",
        metavar="[EXPERIMENT.yaml] [KEY=VALUE ...]",
        help="experiment whose data section names the val split (default: the built-in default), then dotted overrides",
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        help="checkpoint directory (run, checkpoints or tag dir) or exported model.pt",
    )
    p.add_argument("--json", metavar="FILE", help="write the metrics as JSON to FILE instead of stdout")
    p.set_defaults(func=_eval)

    p = subparsers.add_parser("predict", help="detect objects in images with a checkpoint or exported model")
    p.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
    p.add_argument("--checkpoint", required=True, help="checkpoint directory or exported model.pt")
    p.add_argument(
        "--out",
        default="predictions",
        help="output directory for detections.json and <image>_pred.jpg drawings (default: predictions)",
    )
    p.add_argument(
        "--score-threshold", type=float, default=0.3, help="minimum score to draw and report (default: 0.3)"
    )
    p.set_defaults(func=_predict)

    p = subparsers.add_parser(
        "export", help="consolidate a checkpoint (any ZeRO stage) into a plain fp32 state dict"
    )
    p.add_argument("checkpoint", help="checkpoint directory (run, checkpoints or tag dir)")
    p.add_argument("-o", "--output", default="model.pt", help="output file (default: model.pt)")
    p.set_defaults(func=_export)
