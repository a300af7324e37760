"""Make the images of the docs from a real run of the default experiment.

    .venv/bin/python scripts/make_doc_images.py [--run-dir runs/doc-images] [--ranks 2] [KEY=VALUE ...]

Trains the default experiment with the deepspeed launcher as `make train` does (resuming what RUN_DIR
already holds; KEY=VALUE overrides as for dsdet.train, e.g. train.epochs=12), then writes
docs/images/tensorboard.png (the run's TensorBoard scalars, read from its event files and drawn with
matplotlib the way TensorBoard shows them) and docs/images/prediction.png (`dsdet predict` with the exported
model on validation images). Needs matplotlib (`pip install -e '.[dev]'`).
"""

from __future__ import annotations

import argparse
import io
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
MAX_PNG_BYTES = 300_000
# The TensorBoard panels of the screenshot, in order (loss components come after train/loss).
FIRST_TAGS = ("train/loss",)
LAST_TAGS = ("train/lr", "train/images_per_s", "val/AP", "val/AP50", "val/AR100")
SMOOTHING = 0.6  # TensorBoard's default smoothing slider
PREDICTION_IMAGES = ("000003.jpg", "000010.jpg", "000017.jpg")


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train(run_dir: Path, ranks: int, overrides: list[str]) -> None:
    """The default experiment on `ranks` DeepSpeed ranks, as `make train` runs it, into `run_dir`."""
    command = [
        str(BIN / "deepspeed"),
        "--num_gpus",
        str(ranks),
        "--master_port",
        str(free_port()),
        "--module",
        "dsdet.train",
        f"train.output_dir={run_dir}",
        *overrides,
    ]
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=REPO)


def smooth(values: list[float], weight: float = SMOOTHING) -> list[float]:
    """TensorBoard's exponential moving average with debiasing."""
    smoothed, last, steps = [], 0.0, 0
    for value in values:
        steps += 1
        last = last * weight + (1 - weight) * value
        smoothed.append(last / (1 - weight**steps))
    return smoothed


def save_png(figure_or_image, path: Path) -> None:
    """Save as a 256-colour PNG and refuse files over MAX_PNG_BYTES."""
    if not isinstance(figure_or_image, Image.Image):
        rendered = io.BytesIO()
        figure_or_image.savefig(rendered, format="png", dpi=80)
        figure_or_image = Image.open(rendered)
    buffer = io.BytesIO()
    figure_or_image.convert("RGB").quantize(colors=256).save(buffer, format="PNG", optimize=True)
    data = buffer.getvalue()
    if len(data) > MAX_PNG_BYTES:
        raise SystemExit(f"{path} would be {len(data)} bytes, over {MAX_PNG_BYTES}")
    path.write_bytes(data)
    print(f"wrote {path} ({len(data) // 1024} KiB)")


def tensorboard_png(run_dir: Path, out: Path) -> None:
    """The run's scalars as TensorBoard's scalar dashboard draws them: raw line faint, smoothed line on top."""
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    scalars = events.Tags()["scalars"]
    components = sorted(t for t in scalars if t.startswith("train/") and t not in FIRST_TAGS + LAST_TAGS)
    tags = [t for t in (*FIRST_TAGS, *components, *LAST_TAGS) if t in scalars]
    columns = 4
    rows = -(-len(tags) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 2.8 * rows), squeeze=False)
    for axis, tag in zip(axes.flat, tags, strict=False):
        points = events.Scalars(tag)
        steps, values = [p.step for p in points], [p.value for p in points]
        axis.plot(steps, values, color="#ff7043", alpha=0.3, linewidth=1)
        axis.plot(
            steps, smooth(values), color="#ff7043", linewidth=1.6, marker="o" if len(steps) < 5 else None
        )
        axis.set_title(tag, fontsize=10, loc="left")
        axis.grid(True, color="#e0e0e0")
        axis.tick_params(labelsize=8)
        axis.set_xlabel("step", fontsize=8)
    for axis in list(axes.flat)[len(tags) :]:
        axis.set_visible(False)
    figure.suptitle(f"TensorBoard scalars of {run_dir.name} (smoothing {SMOOTHING})", fontsize=11)
    figure.tight_layout()
    save_png(figure, out)
    plt.close(figure)


def prediction_png(run_dir: Path, out: Path, score_threshold: float) -> None:
    """`dsdet predict` with the run's exported model on a few validation images, side by side."""
    data_root = subprocess.run(
        [str(BIN / "dsdet"), "data", "prepare"], check=True, capture_output=True, text=True
    ).stdout.strip()
    images = [Path(data_root) / "images" / "val" / name for name in PREDICTION_IMAGES]
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                str(BIN / "dsdet"),
                "predict",
                "--checkpoint",
                str(run_dir / "model.pt"),
                *map(str, images),
                "--out",
                tmp,
                "--score-threshold",
                str(score_threshold),
            ],
            check=True,
        )
        drawn = [Image.open(Path(tmp) / f"{image.stem}_pred.jpg").convert("RGB") for image in images]
        strip = Image.new(
            "RGB", (sum(d.width for d in drawn) + 8 * (len(drawn) - 1), drawn[0].height), "white"
        )
        x = 0
        for image in drawn:
            strip.paste(image, (x, 0))
            x += image.width + 8
        save_png(strip, out)


def main() -> None:
    """Train if needed, then draw both images."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, default=REPO / "runs" / "doc-images", help="the run to draw")
    parser.add_argument("--ranks", type=int, default=2, help="DeepSpeed ranks for the training run")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images", help="where the PNGs go")
    parser.add_argument("--score-threshold", type=float, default=0.3, help="detections drawn from this score")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE overrides of the default experiment")
    args = parser.parse_args()
    run_dir = args.run_dir.absolute()
    train(run_dir, args.ranks, args.overrides)
    args.out.mkdir(parents=True, exist_ok=True)
    tensorboard_png(run_dir, args.out / "tensorboard.png")
    prediction_png(run_dir, args.out / "prediction.png", args.score_threshold)


if __name__ == "__main__":
    main()
