"""Experiment YAML: defaults, loading, overrides, error messages, data paths and the experiment hash."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dsdet.config import ConfigError, ExperimentConfig, default_data_root, experiment_hash, load_experiment
from dsdet.config.augment import HFlip, Resize, ZoomOut
from dsdet.config.loading import default_experiment_dict
from dsdet.config.overrides import apply_overrides, parse_override
from dsdet.errors import DsdetError


def write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path | None, overrides: list[str] = ()) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_experiment(path, overrides)
    return caught.value.problems


def test_builtin_default_yaml_spells_out_the_model_defaults():
    assert load_experiment(None).model_dump(mode="json") == ExperimentConfig().model_dump(mode="json")
    assert set(default_experiment_dict()) == set(ExperimentConfig.model_fields)


def test_defaults_match_the_documented_experiment():
    exp = load_experiment(None)
    assert exp.model.name == "yolo" and exp.model.num_classes == "auto"
    assert exp.data.augment == [HFlip(name="hflip", p=0.5)]
    assert (exp.train.epochs, exp.train.batch_size, exp.train.precision, exp.train.resume) == (
        12,
        4,
        "fp32",
        "auto",
    )
    ds = exp.deepspeed.to_deepspeed_dict(allow_auto=True)
    assert "optimizer" not in ds and "scheduler" not in ds  # dsdet builds them from train.optimizer/schedule
    assert (exp.train.optimizer.name, exp.train.schedule.name) == ("adamw", "cosine")
    assert ds["zero_optimization"] == {"stage": 2}
    assert ds["bf16"] == ds["fp16"] == {"enabled": "auto"}


def test_a_file_sets_only_what_it_changes_and_deepspeed_lays_over_the_base(tmp_path):
    path = write(
        tmp_path, "train: {epochs: 5, weight_decay: 5e-5}\ndeepspeed:\n  zero_optimization: {stage: 3}\n"
    )
    exp = load_experiment(path)
    assert exp.train.epochs == 5 and exp.train.weight_decay == 5e-5 and exp.train.batch_size == 4
    ds = exp.deepspeed.to_deepspeed_dict(allow_auto=True)
    assert ds["zero_optimization"] == {"stage": 3}


def test_switching_scheduler_type_starts_from_that_types_template(tmp_path):
    exp = load_experiment(
        write(tmp_path, "train: {epochs: 3}\n"), ["deepspeed.scheduler.type=WarmupCosineLR"]
    )
    scheduler = exp.deepspeed.to_deepspeed_dict(allow_auto=True)["scheduler"]
    assert scheduler == {
        "type": "WarmupCosineLR",
        "params": {"warmup_num_steps": "auto", "total_num_steps": "auto"},
    }


def test_a_null_section_removes_it_from_deepspeed(tmp_path):
    exp = load_experiment(write(tmp_path, "deepspeed: {scheduler: null}\n"))
    assert "scheduler" not in exp.deepspeed.to_deepspeed_dict(allow_auto=True)
    again = ExperimentConfig.model_validate(exp.model_dump(mode="json")).deepspeed
    assert again.get("scheduler", "missing") is None and "scheduler" not in again.to_deepspeed_dict(
        allow_auto=True
    )


@pytest.mark.parametrize(
    ("override", "keys", "value"),
    [
        ("train.epochs=3", ["train", "epochs"], 3),
        ("train.lr=1e-4", ["train", "lr"], 1e-4),
        ("train.resume=null", ["train", "resume"], None),
        ("train.resume=", ["train", "resume"], None),
        ("model.name=fasterrcnn_resnet50_fpn", ["model", "name"], "fasterrcnn_resnet50_fpn"),
        (
            "data.augment=[{name: hflip, p: 0.2}, {name: resize, size: 320}]",
            ["data", "augment"],
            [{"name": "hflip", "p": 0.2}, {"name": "resize", "size": 320}],
        ),
        ("deepspeed.zero_optimization.stage=3", ["deepspeed", "zero_optimization", "stage"], 3),
    ],
)
def test_override_values_are_yaml(override, keys, value):
    assert parse_override(override) == (keys, value)


def test_overrides_create_sections_and_apply_in_order():
    data = apply_overrides(
        {"train": {"epochs": 1}}, ["train.epochs=4", "eval.every_epochs=2", "train.epochs=5"]
    )
    assert data == {"train": {"epochs": 5}, "eval": {"every_epochs": 2}}
    exp = load_experiment(
        None,
        ["deepspeed.zero_optimization.stage=3", "data.augment=[{name: resize, size: 320, max_size: 512}]"],
    )
    assert exp.deepspeed.zero_stage == 3
    assert exp.data.augment == [Resize(name="resize", size=320, max_size=512)]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochs", "expected dotted.key=value"),
        ("=3", "expected dotted.key=value"),
        ("train..epochs=3", "expected dotted.key=value"),
        ("train.epochs.x=1", "train.epochs is a value, not a section"),
        ("train.lr=[1, 2", "invalid YAML"),
    ],
)
def test_malformed_overrides_are_one_line_errors(override, message):
    with pytest.raises(DsdetError, match=message) as caught:
        load_experiment(None, [override])
    assert "\n" not in str(caught.value)


def test_every_problem_is_listed_with_its_dotted_path(tmp_path):
    path = write(
        tmp_path,
        "train: {epochs: 0, lr: fast, precison: bf16}\n"
        "data:\n  augment:\n    - {name: hflp}\n    - {name: zoom_out, p: 2}\n"
        "deepspeed: {zero_optimisation: {stage: 3}}\n",
    )
    assert problems(path) == [
        "data.augment[0]: unknown name 'hflp', did you mean 'hflip'? (one of hflip, vflip, brightness, contrast, rotation, scale_jitter, resize, photometric, zoom_out, ssd_crop)",
        "data.augment[1].p: Input should be less than or equal to 1 (got 2)",
        "train.epochs: Input should be greater than or equal to 1 (got 0)",
        "train.lr: Input should be a valid number, unable to parse string as a number (got 'fast')",
        "train: unknown key 'precison', did you mean 'precision'?",
        "deepspeed.zero_optimisation: unknown key 'zero_optimisation', did you mean 'zero_optimization'?",
    ]


def test_keys_of_earlier_releases_say_where_they_moved(tmp_path):
    text = "model: {roi_align: sparse}\ntrain: {cpu_malloc: system, cpu_collectives: gloo}\n"
    assert problems(write(tmp_path, text)) == [
        "model: key 'roi_align' moved to train.cpu.roi_align",
        "train: key 'cpu_malloc' moved to train.cpu.malloc; key 'cpu_collectives' moved to train.cpu.collectives",
    ]


def test_misspelt_section_suggests_the_section(tmp_path):
    assert problems(write(tmp_path, "trian: {epochs: 3}\n")) == ["unknown key 'trian', did you mean 'train'?"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train: {epochs: 3\n", "invalid YAML at line 2, column 1"),
        ("train:\n  epochs: 3\n  epochs: 4\n", "repeated key 'epochs'"),
        ("- just\n- a list\n", "expected a mapping of keys at the top level, got list"),
        ("", "is empty"),
        ("train: !!python/object:os.system {}\n", "invalid YAML"),
    ],
)
def test_unreadable_files_are_one_line_errors(tmp_path, text, message):
    with pytest.raises(DsdetError, match=message) as caught:
        load_experiment(write(tmp_path, text))
    assert str(caught.value).startswith(str(tmp_path / "exp.yaml")) and "\n" not in str(caught.value)


def test_missing_file_and_directory_are_named(tmp_path):
    with pytest.raises(DsdetError, match="nope.yaml: no such file"):
        load_experiment(tmp_path / "nope.yaml")
    with pytest.raises(DsdetError, match="is a directory"):
        load_experiment(tmp_path)


def test_augment_params_have_defaults_and_bounds():
    exp = load_experiment(
        None,
        ["data.augment=[{name: zoom_out}, {name: ssd_crop}, {name: scale_jitter, target_size: [320, 320]}]"],
    )
    assert exp.data.augment[0] == ZoomOut(name="zoom_out", fill=0, side_range=(1.0, 4.0), p=0.5)
    for bad, message in [
        ("[{name: scale_jitter}]", "data.augment[0]: missing required key 'target_size'"),
        (
            "[{name: zoom_out, side_range: [4, 2]}]",
            "data.augment[0]: side_range [4.0, 2.0] must be [low, high]",
        ),
        (
            "[{name: rotation, degrees: 270}]",
            "data.augment[0].degrees: Input should be less than or equal to 180 (got 270)",
        ),
        ("[{name: hflip, prob: 0.5}]", "data.augment[0]: unknown key 'prob', did you mean 'p'?"),
    ]:
        assert problems(None, [f"data.augment={bad}"]) == [message]


def test_classes_and_num_classes_must_agree():
    assert load_experiment(None, ["data.classes=[cat, dog]", "model.num_classes=3"]).model.num_classes == 3
    assert problems(None, ["data.classes=[cat, dog]", "model.num_classes=5"]) == [
        "model.num_classes 5 must be len(data.classes) + 1 = 3 (or 'auto')"
    ]
    assert problems(None, ["data.classes=[cat, dog, cat]"]) == [
        "data.classes: class names repeat: cat (got ['cat', 'dog', 'cat'])"
    ]


def test_static_conflicts_with_the_deepspeed_section_fail_at_load(tmp_path):
    path = write(
        tmp_path,
        "train: {lr: 0.02, precision: bf16}\ndeepspeed: {optimizer: {type: AdamW, params: {lr: 0.1}}, fp16: {enabled: true}}\n",
    )
    found = problems(path)
    assert (
        "deepspeed.optimizer.params.lr is 0.1 but train.lr gives 0.02; make them equal or set 'auto'" in found
    )
    assert (
        "deepspeed.fp16.enabled is true but train.precision gives false; make them equal or set 'auto'"
        in found
    )


def test_data_paths_resolve_against_the_root(tmp_path, monkeypatch):
    monkeypatch.setenv("DSDET_DATA_DIR", str(tmp_path / "data"))
    exp = load_experiment(None)
    assert default_data_root() == tmp_path / "data"
    assert exp.data.split_paths("val") == (
        tmp_path / "data/images/val",
        tmp_path / "data/annotations/val.json",
    )
    monkeypatch.delenv("DSDET_DATA_DIR")
    assert default_data_root() == Path.home() / ".cache/dsdet/default-v2"
    custom = load_experiment(None, [f"data.root={tmp_path}", "data.train.images=/abs/imgs"])
    assert custom.data.split_paths("train") == (Path("/abs/imgs"), tmp_path / "annotations/train.json")


def test_experiment_hash_is_stable_and_ignores_where_things_are_written():
    base = experiment_hash(load_experiment(None))
    assert len(base) == 16 and base == experiment_hash(load_experiment(None))
    assert experiment_hash(load_experiment(None, ["train.output_dir=elsewhere", "train.resume=null"])) == base
    assert experiment_hash(load_experiment(None, ["train.lr=0.02"])) != base
    assert experiment_hash(load_experiment(None, ["deepspeed.zero_optimization.stage=3"])) != base


def test_dump_reloads_to_the_same_experiment(tmp_path):
    exp = load_experiment(
        None, ["train.epochs=7", "deepspeed.zero_optimization.stage=1", "data.augment=[{name: vflip}]"]
    )
    path = write(tmp_path, yaml.safe_dump(exp.model_dump(mode="json")))
    assert load_experiment(path).model_dump(mode="json") == exp.model_dump(mode="json")
