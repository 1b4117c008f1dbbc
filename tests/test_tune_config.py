"""`tune.<model>` in params.yaml: search spaces checked by the model's own params models."""

import copy

import pytest

from stages.config import parse_params
from stages.errors import PipelineError
from stages.tune_config import with_values

GOOD_SPACE = {
    "lr": {"log_uniform": [1.0e-4, 3.0e-2]},
    "rnn.hidden_size": {"choice": [64, 128, 256]},
    "rnn.dropout": {"uniform": [0.0, 0.5]},
    "batch_size": {"log_int": [8, 64]},
    "rnn.num_layers": {"int": [1, 2]},
    "augment.magnitude": {"uniform": [0.0, 0.2]},
}


def with_tune(raw_params, tune: dict):
    raw = copy.deepcopy(raw_params)
    raw["tune"] = tune
    return parse_params(raw)


def test_a_good_space_parses(raw_params):
    params = with_tune(raw_params, {"lstm": {"trials": 30, "space": GOOD_SPACE}})
    search = params.tune["lstm"]
    assert search.trials == 30 and search.metric == "val_loss" and search.direction == "minimize"
    assert search.space["rnn.num_layers"].kind == "int"
    assert search.space["lr"].values == [1.0e-4, 3.0e-2]


@pytest.mark.parametrize(
    ("tune", "message"),
    [
        (
            {"lstm": {"space": {"rnn.hiden_size": {"choice": [64]}}}},
            "tune.lstm.space.rnn.hiden_size: not a setting of models.lstm (arch 'lstm'); "
            "allowed: batch_size",
        ),
        (
            {"lstm": {"space": {"fcn.dropout": {"uniform": [0.0, 0.5]}}}},
            "tune.lstm.space.fcn.dropout: not a setting of models.lstm",
        ),
        (
            {"lstm": {"space": {"rnn.dropout": {"uniform": [0.0, 1.5]}}}},
            "tune.lstm.space.rnn.dropout: models.lstm.rnn.dropout refuses 1.5 of uniform "
            "[0.0, 1.5]: Input should be less than 1",
        ),
        (
            {"lstm": {"space": {"augment.crop": {"uniform": [0.0, 1.5]}}}},
            "tune.lstm.space.augment.crop: models.lstm.augment.crop refuses 1.5 of uniform",
        ),
        (
            {"lstm": {"space": {"augment.rotate": {"uniform": [0.0, 10.0]}}}},
            "tune.lstm.space.augment.rotate: not a setting of models.lstm",
        ),
        (
            {"lstm": {"space": {"rnn.pooling": {"choice": ["last", "max"]}}}},
            "models.lstm.rnn.pooling refuses 'max'",
        ),
        (
            {"lstm": {"space": {"rnn.hidden_size": {"uniform": [32.0, 64.0]}}}},
            "models.lstm.rnn.hidden_size refuses 32.0 of uniform [32.0, 64.0]: Input should be "
            "a valid integer",
        ),
        (
            {"lstm": {"space": {"lr": {"log_uniform": [0.0, 0.1]}}}},
            "tune.lstm.space.lr: log_uniform: a log scale needs low > 0; got 0.0",
        ),
        (
            {"lstm": {"space": {"lr": {"uniform": [0.1, 0.01]}}}},
            "tune.lstm.space.lr: uniform: low must be below high; got [0.1, 0.01]",
        ),
        (
            {"lstm": {"space": {"lr": {"uniform": [0.1, 0.2], "choice": [0.1]}}}},
            "tune.lstm.space.lr: give exactly one of uniform, log_uniform, int, log_int, "
            "choice; got uniform, choice",
        ),
        (
            {"lstm": {"space": {"lr": {"normal": [0.1, 0.2]}}}},
            "tune.lstm.space.lr.normal: unknown key; allowed here: choice, int, log_int, "
            "log_uniform, uniform",
        ),
        (  # PyYAML reads 3e-2 (no dot) as a string
            {"lstm": {"space": {"lr": {"log_uniform": [1.0e-4, "3e-2"]}}}},
            "tune.lstm.space.lr.log_uniform.1",
        ),
        ({"lstm": {"space": {}}}, "tune.lstm.space: Dictionary should have at least 1 item"),
        (
            {"lstm": {"metric": "test_accuracy", "space": GOOD_SPACE}},
            "tune.lstm.metric: Input should be 'val_loss', 'val_acc' or 'val_f1'",
        ),
        (
            {"nope": {"space": GOOD_SPACE}},
            "tune.nope: unknown model 'nope'; known: cnn, fcn, gru, lstm",
        ),
    ],
)
def test_a_bad_space_is_an_error_naming_the_key(raw_params, tune, message):
    with pytest.raises(PipelineError) as caught:
        with_tune(raw_params, tune)
    assert message in str(caught.value)


def test_with_values_sets_dotted_keys_and_keeps_the_rest(raw_params):
    model = parse_params(raw_params).models["lstm"]
    changed = with_values(model, {"lr": 0.02, "rnn.hidden_size": 32})
    assert changed.lr == 0.02 and changed.rnn.hidden_size == 32
    assert changed.rnn.frontend == model.rnn.frontend and changed.batch_size == model.batch_size
    gru = parse_params(raw_params).models["gru"]
    cropped = with_values(gru, {"augment.crop": 0.1})
    assert cropped.augment.crop == 0.1 and cropped.augment.magnitude == gru.augment.magnitude


def test_contains_says_which_values_a_trial_can_take(raw_params):
    space = with_tune(raw_params, {"lstm": {"space": GOOD_SPACE}}).tune["lstm"].space
    assert space["lr"].contains(0.01) and not space["lr"].contains(0.5)
    assert space["rnn.hidden_size"].contains(128) and not space["rnn.hidden_size"].contains(96)
    assert space["batch_size"].contains(64) and not space["batch_size"].contains(64.0)
    assert not space["rnn.dropout"].contains(True) and not space["rnn.dropout"].contains(None)
