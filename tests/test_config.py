import copy
import inspect
from typing import get_args

import pytest

from lightning_modules.registry import model_spec
from stages.config import ModelConfig, load_params, parse_params
from stages.errors import PipelineError

TOP_LEVEL = ["datasets", "flow", "mlflow", "models", "paths", "register", "trainer"]


def test_repository_params_parse():
    params = load_params()
    assert set(params.datasets) >= {"digits", "japanese_vowels"}
    assert params.datasets["digits"].kind == "image"
    assert params.datasets["japanese_vowels"].kind == "sequence"


def _error(raw: dict) -> str:
    with pytest.raises(PipelineError) as info:
        parse_params(raw)
    return str(info.value)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda r: r["datasets"]["digits"].update(colour=True),
            "datasets.digits.colour: unknown key; "
            "allowed here: image, path, sequence, source, split",
        ),
        (
            lambda r: r["datasets"]["digits"]["image"].update(size=[8, "big"]),
            "datasets.digits.image.size.1",
        ),
        (
            lambda r: r["datasets"]["digits"]["image"].update(channels=2),
            "datasets.digits.image.channels: Input should be 1 or 3",
        ),
        (
            lambda r: r["datasets"]["digits"]["split"].update(val=1.5),
            "datasets.digits.split.val: Input should be less than 1",
        ),
        (
            lambda r: r["datasets"]["digits"].update(source="s3:bucket"),
            "datasets.digits.source: unknown source; "
            "allowed: sklearn:digits, sktime:<Name>, folder, ts",
        ),
        (
            lambda r: r["datasets"]["digits"].update(path="elsewhere"),
            "datasets.digits.path: a built-in source is written by ingest to 'data/raw/digits'",
        ),
        (
            lambda r: r["datasets"]["digits"].pop("image"),
            "datasets.digits: image datasets need an `image` section",
        ),
        (
            lambda r: r["datasets"]["japanese_vowels"]["split"].update(test=0.2),
            "split.test is not allowed",
        ),
        (
            lambda r: r["datasets"].update({"Bad-Name": r["datasets"]["digits"]}),
            "datasets.Bad-Name",
        ),
        (
            lambda r: r["datasets"].update(
                mine={
                    "source": "folder",
                    "path": "data/raw/mine",
                    "image": {"size": [8, 8]},
                    "split": {"test": 0.2},
                }
            ),
            "datasets.mine.path: your own data must live outside 'data/raw/mine'",
        ),
        (
            lambda r: r["models"]["cnn"].update(batch_size=True),
            "models.cnn.batch_size: Input should be a valid integer (got True)",
        ),
        (
            lambda r: r["models"]["cnn"].update(batch_size="64"),
            "models.cnn.batch_size: Input should be a valid integer (got '64')",
        ),
        (
            lambda r: r["models"]["cnn"].update(batch_size=64.0),
            "models.cnn.batch_size: Input should be a valid integer (got 64.0)",
        ),
        (
            lambda r: r["trainer"].update(deterministic="yes"),
            "trainer.deterministic: Input should be a valid boolean (got 'yes')",
        ),
        (
            lambda r: r["mlflow"].update(timeout_seconds=0.5),
            "mlflow.timeout_seconds: Input should be a valid integer (got 0.5)",
        ),
        (
            lambda r: r["paths"].update(checkpoints="models"),
            "paths.models ('models') and paths.checkpoints ('models') overlap",
        ),
        (
            lambda r: r["paths"].update(checkpoints="./models/ckpt"),
            "paths.models ('models') and paths.checkpoints ('models/ckpt') overlap",
        ),
        (
            lambda r: r["paths"].update(raw="data", prepared="data/prepared"),
            "paths.raw ('data') and paths.prepared ('data/prepared') overlap",
        ),
        (
            lambda r: r["datasets"].update(
                mine={
                    "source": "folder",
                    "path": "models/mine",
                    "image": {"size": [8, 8]},
                    "split": {"test": 0.2},
                }
            ),
            "datasets.mine.path: 'models/mine' overlaps paths.models ('models')",
        ),
        (
            lambda r: r.update(extra={}),
            "extra: unknown key; allowed here: " + ", ".join(TOP_LEVEL),
        ),
    ],
)
def test_bad_params_name_the_key(raw_params, edit, expected):
    raw = copy.deepcopy(raw_params)
    edit(raw)
    assert expected in _error(raw)


def test_all_problems_reported_at_once(raw_params):
    raw = copy.deepcopy(raw_params)
    raw["datasets"]["digits"]["split"]["seed"] = "x"
    raw["datasets"]["japanese_vowels"]["sequence"]["channels"] = 0
    message = _error(raw)
    assert "datasets.digits.split.seed" in message
    assert "datasets.japanese_vowels.sequence.channels" in message


def test_missing_params_file(tmp_path):
    with pytest.raises(PipelineError, match="nope.yaml: file not found"):
        load_params(tmp_path / "nope.yaml")


def test_unknown_dataset_lists_known():
    with pytest.raises(PipelineError, match="unknown dataset 'cats'.*known: digits"):
        load_params().dataset("cats")


def test_numbers_where_numbers_belong_still_parse(raw_params):
    raw = copy.deepcopy(raw_params)
    raw["models"]["cnn"]["lr"] = 1  # an int is a fine float
    raw["datasets"]["digits"]["image"]["size"] = [8, 8]  # a YAML list is the tuple
    params = parse_params(raw)
    assert params.models["cnn"].lr == 1.0 and params.datasets["digits"].image.size == (8, 8)


def _with_model(raw_params: dict, **model) -> dict:
    raw = copy.deepcopy(raw_params)
    raw["models"]["seq"] = {"dataset": "japanese_vowels", **model}
    return raw


def test_sequence_cnn_sections_parse(raw_params):
    raw = _with_model(
        raw_params, arch="fcn", fcn={"channels": [64, 64], "kernel_sizes": [8, 5], "dropout": 0.1}
    )
    raw["models"]["inc"] = {
        "dataset": "japanese_vowels",
        "arch": "inception",
        "inception": {"depth": 3, "filters": 16, "kernel_size": 20, "bottleneck": 0},
    }
    raw["models"]["res"] = {
        "dataset": "japanese_vowels",
        "arch": "resnet",
        "resnet": {"channels": [32, 64], "kernel_sizes": [7, 5, 3, 1]},
    }
    params = parse_params(raw)
    fcn, inception, resnet = (params.models[k] for k in ("seq", "inc", "res"))
    assert fcn.kind == inception.kind == resnet.kind == "sequence"
    assert fcn.model_kwargs == {"channels": (64, 64), "kernel_sizes": (8, 5), "dropout": 0.1}
    # A block per channel count, every block with all the kernels: the lengths may differ.
    assert resnet.model_kwargs == {"channels": (32, 64), "kernel_sizes": (7, 5, 3, 1)}
    assert inception.model_kwargs == {
        "depth": 3,
        "filters": 16,
        "kernel_size": 20,
        "bottleneck": 0,
        "residual": True,
    }


@pytest.mark.parametrize("arch", get_args(ModelConfig.model_fields["arch"].annotation))
def test_every_arch_is_registered_with_its_section_defaults(arch):
    """A missing section means the constructor's own defaults: one source of truth for them."""
    model = ModelConfig(dataset="any", arch=arch)
    spec = model_spec(arch)
    assert spec.kind == model.kind
    defaults = inspect.signature(spec.build).parameters
    assert {k: defaults[k].default for k in model.model_kwargs} == model.model_kwargs


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (
            {"arch": "lstm", "fcn": {}},
            "models.seq: `fcn` settings do not apply to arch 'lstm'",
        ),
        (
            {"arch": "fcn", "rnn": {"hidden_size": 8}},
            "models.seq: `rnn` settings do not apply to arch 'fcn'",
        ),
        (
            {"arch": "inception", "fcn": {}},
            "models.seq: `fcn` settings do not apply to arch 'inception'",
        ),
        (
            {"arch": "fcn", "fcn": {}, "inception": {}},
            "models.seq: `inception` settings do not apply to arch 'fcn'",
        ),
        (
            {"arch": "resnet", "fcn": {}},
            "models.seq: `fcn` settings do not apply to arch 'resnet'",
        ),
        (
            {"arch": "resnet", "resnet": {"kernel_sizes": []}},
            "models.seq.resnet.kernel_sizes: List should have at least 1 item after validation",
        ),
        (
            {"arch": "fcn", "fcn": {"channels": [64, 64], "kernel_sizes": [8]}},
            "models.seq.fcn: channels and kernel_sizes need one entry per block; got 2 and 1",
        ),
        (
            {"arch": "fcn", "fcn": {"kernel_sizes": [8, 0, 3]}},
            "models.seq.fcn.kernel_sizes.1: Input should be greater than or equal to 1",
        ),
        (
            {"arch": "fcn", "fcn": {"channels": [], "kernel_sizes": []}},
            "models.seq.fcn.channels: List should have at least 1 item",
        ),
        (
            {"arch": "fcn", "fcn": {"dropout": 1.0}},
            "models.seq.fcn.dropout: Input should be less than 1",
        ),
        (
            {"arch": "fcn", "fcn": {"kernel": 8}},
            "models.seq.fcn.kernel: unknown key; allowed here: channels, dropout, kernel_sizes",
        ),
        (
            {"arch": "inception", "inception": {"kernel_size": 3}},
            "models.seq.inception.kernel_size: Input should be greater than or equal to 4",
        ),
        (
            {"arch": "inception", "inception": {"depth": 0}},
            "models.seq.inception.depth: Input should be greater than or equal to 1",
        ),
        (
            {"arch": "inception", "inception": {"bottleneck": -1}},
            "models.seq.inception.bottleneck: Input should be greater than or equal to 0",
        ),
        (
            {"arch": "inception", "inception": {"residual": "yes"}},
            "models.seq.inception.residual: Input should be a valid boolean (got 'yes')",
        ),
        (
            {"arch": "inception", "dataset": "digits"},
            "models.seq: arch 'inception' takes sequences, but dataset 'digits' holds images",
        ),
    ],
)
def test_bad_sequence_cnn_sections_name_the_key(raw_params, model, expected):
    assert expected in _error(_with_model(raw_params, **model))


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda r: r["models"]["lstm"].update(min_steps=-1),
            "models.lstm.min_steps: Input should be greater than or equal to 0",
        ),
        (
            lambda r: r["models"]["lstm"].update(min_steps="300"),
            "models.lstm.min_steps: Input should be a valid integer",
        ),
        (
            lambda r: r["models"]["lstm"].update(gradient_clip=0.0),
            "models.lstm.gradient_clip: Input should be greater than 0",
        ),
        (
            lambda r: r["models"]["lstm"]["rnn"].update(frontend=-8),
            "models.lstm.rnn.frontend: Input should be greater than or equal to 0",
        ),
        (
            lambda r: r["models"]["lstm"]["rnn"].update(frontend_kernel=0),
            "models.lstm.rnn.frontend_kernel: Input should be greater than or equal to 1",
        ),
        (
            lambda r: r["models"]["lstm"]["rnn"].update(max_steps=-1),
            "models.lstm.rnn.max_steps: Input should be greater than or equal to 0",
        ),
        (
            lambda r: r["trainer"].update(min_val_for_selection=-1),
            "trainer.min_val_for_selection: Input should be greater than or equal to 0",
        ),
        (
            lambda r: r["trainer"].update(min_val_for_selection=True),
            "trainer.min_val_for_selection: Input should be a valid integer",
        ),
    ],
)
def test_bad_training_length_and_selection_params_name_the_key(raw_params, edit, expected):
    raw = copy.deepcopy(raw_params)
    edit(raw)
    assert expected in _error(raw)


def test_training_length_and_selection_params_parse(raw_params):
    raw = copy.deepcopy(raw_params)
    raw["models"]["lstm"] |= {"min_steps": 0, "gradient_clip": 1}  # an int is a fine float
    raw["models"]["lstm"]["rnn"] |= {"frontend": 0, "max_steps": 0}
    raw["trainer"]["min_val_for_selection"] = 0
    params = parse_params(raw)
    lstm = params.models["lstm"]
    assert lstm.gradient_clip == 1.0 and lstm.min_steps == 0
    assert lstm.model_kwargs["frontend"] == lstm.model_kwargs["max_steps"] == 0
    assert params.trainer.min_val_for_selection == 0
