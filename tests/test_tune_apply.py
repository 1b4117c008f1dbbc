"""Writing a search's winner into params.yaml: only the searched values' text changes."""

import shutil

import pytest

from stages.config import load_params
from stages.errors import PipelineError
from tests.conftest import REPO
from tuning.apply import apply_best, check_applicable


@pytest.fixture
def params_file(tmp_path):
    path = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", path)
    return path


def test_only_the_searched_values_change(params_file):
    before = params_file.read_text().splitlines()
    values = {"lr": 0.0042, "rnn.hidden_size": 256, "rnn.dropout": 1.25e-05, "batch_size": 16}
    changes = apply_best(params_file, "lstm", values)
    after = params_file.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    # rnn's flow mapping holds two of them on one line: both set, the line's comment kept.
    assert len(changed) == 3
    assert any("hidden_size: 256" in b and "dropout: 1.25e-05" in b for _, b in changed)
    assert all(a.split("#")[1:] == b.split("#")[1:] for a, b in changed)  # comments kept
    lstm = load_params(params_file).models["lstm"]
    assert (lstm.lr, lstm.rnn.hidden_size, lstm.rnn.dropout, lstm.batch_size) == (
        0.0042,
        256,
        1.25e-05,
        16,
    )
    assert sorted(changes) == sorted(
        [
            "models.lstm.lr: 0.01 -> 0.0042",
            "models.lstm.rnn.hidden_size: 128 -> 256",
            "models.lstm.rnn.dropout: 0.3 -> 1.25e-05",
            "models.lstm.batch_size: 64 -> 16",
        ]
    )


def test_a_searched_key_not_written_in_the_file_is_an_error_and_nothing_changes(params_file):
    text = params_file.read_text()
    with pytest.raises(PipelineError, match="models.lstm.label_smoothing is searched but not"):
        check_applicable(params_file, "lstm", ["lr", "label_smoothing"])
    with pytest.raises(PipelineError, match="models.lstm.label_smoothing"):
        apply_best(params_file, "lstm", {"lr": 0.001, "label_smoothing": 0.1})
    assert params_file.read_text() == text


def test_a_value_the_model_refuses_is_an_error_and_nothing_changes(params_file):
    text = params_file.read_text()
    with pytest.raises(PipelineError, match="rnn.dropout"):
        apply_best(params_file, "lstm", {"rnn.dropout": 2.0})
    assert params_file.read_text() == text
