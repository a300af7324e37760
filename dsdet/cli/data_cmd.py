"""`dsdet data prepare | check`: write the embedded default dataset, or load a dataset and report on it."""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from pathlib import Path


def _prepare(args: argparse.Namespace) -> int:
    from dsdet.data import prepare_default_dataset

    print(prepare_default_dataset(args.out, seed=args.seed, force=args.force))
    return 0


def _check(args: argparse.Namespace) -> int:
    from dsdet.data import build_dataset

    logging.basicConfig(format="%(name)s: warning: %(message)s", level=logging.WARNING)
    classes = [name.strip() for name in args.classes.split(",")] if args.classes else None
    dataset = build_dataset(
        args.format,
        args.root,
        args.images,
        args.annotations,
        classes,
        with_masks=args.with_masks,
        skip_missing=args.skip_missing,
    )
    boxes, images = Counter(), Counter()
    for record in dataset.records:
        boxes.update(record.labels.tolist())
        images.update(set(record.labels.tolist()))
    negatives = sum(len(record.labels) == 0 for record in dataset.records)
    print(
        f"{len(dataset)} images ({negatives} without boxes), {sum(boxes.values())} boxes, {len(dataset.class_names)} classes"
    )
    width = max(len(name) for name in dataset.class_names)
    for label, name in enumerate(dataset.class_names, start=1):
        print(f"  {label:>3} {name:<{width}}  {boxes[label]:>7} boxes in {images[label]:>6} images")
    print(f"warnings: {len(dataset.warnings) or 'none'}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `dsdet data prepare` and `dsdet data check`."""
    data = subparsers.add_parser("data", help="prepare the default dataset or check a dataset")
    commands = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    prepare = commands.add_parser("prepare", help="write the embedded default dataset and print its folder")
    prepare.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder (default: $DSDET_DATA_DIR or ~/.cache/dsdet/default-v2)",
    )
    prepare.add_argument("--seed", type=int, default=0, help="random seed of the scenes")
    prepare.add_argument("--force", action="store_true", help="rewrite even if already prepared")
    prepare.set_defaults(func=_prepare)

    check = commands.add_parser("check", help="load a dataset, print counts per class and the warnings")
    check.add_argument("--format", required=True, choices=("coco", "voc", "yolo"), help="annotation format")
    check.add_argument("--root", required=True, help="dataset root; other paths are relative to it")
    check.add_argument("--images", required=True, help="image folder")
    check.add_argument(
        "--annotations",
        default=None,
        help="coco: JSON file; voc: ImageSets list or XML folder; yolo: labels folder",
    )
    check.add_argument(
        "--classes", default=None, help="comma-separated class names in label order (needed for yolo)"
    )
    check.add_argument("--with-masks", action="store_true", help="also check coco segmentations")
    check.add_argument(
        "--skip-missing", action="store_true", help="skip missing or unreadable images instead of failing"
    )
    check.set_defaults(func=_check)
