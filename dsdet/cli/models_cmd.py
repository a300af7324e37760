"""`dsdet models`: the registered detectors with family, size and description."""

from __future__ import annotations

import argparse
import json

LISTED_NUM_CLASSES = 91  # COCO's 90 category ids + background, the size torchvision reports


def parameter_count(name: str, num_classes: int = LISTED_NUM_CLASSES) -> int:
    """Parameters of `name` built on the meta device (no memory, no initialisation cost)."""
    import torch

    from dsdet.models import build_model

    with torch.device("meta"):
        model = build_model(name, num_classes)
    return sum(p.numel() for p in model.parameters())


def _rows() -> list[dict]:
    from dsdet.models import list_models

    return [
        {
            "name": info.name,
            "family": info.family,
            "params_millions": round(parameter_count(info.name) / 1e6, 2),
            "stock_torchvision": info.stock,
            "description": info.description,
        }
        for info in list_models()
    ]


def _models(args: argparse.Namespace) -> int:
    rows = _rows()
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    name_width = max(len(r["name"]) for r in rows)
    family_width = max(len(r["family"]) for r in rows)
    print(f"{'name':<{name_width}}  {'family':<{family_width}}  {'params':>7}  description")
    for r in rows:
        stock = " [torchvision]" if r["stock_torchvision"] else ""
        params = f"{r['params_millions']:.2f}M"
        print(
            f"{r['name']:<{name_width}}  {r['family']:<{family_width}}  {params:>7}  {r['description']}{stock}"
        )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `dsdet models`."""
    parser = subparsers.add_parser(
        "models", help="list the detectors dsdet can build", description="List the registered detectors."
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.set_defaults(func=_models)
