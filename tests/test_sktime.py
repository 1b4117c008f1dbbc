"""Built-in `sktime:<Name>` sources: the classification archives that ship inside sktime."""

import pytest

from stages import ingest
from stages.errors import PipelineError


def test_only_classification_archives_are_listed():
    shipped = ingest.shipped_sktime_datasets()
    assert {"ArrowHead", "BasicMotions", "GunPoint", "JapaneseVowels", "OSULeaf"} <= set(shipped)
    assert not {"Tecator", "Covid3Month"} & set(shipped)  # regression archives


def test_a_regression_archive_is_refused_by_name(make_params, tmp_path):
    params = make_params({"tec": {"source": "sktime:Tecator", "path": str(tmp_path / "raw/tec")}})
    with pytest.raises(PipelineError, match="'Tecator' does not ship .* classification"):
        ingest.run("tec", params.datasets["tec"], tmp_path / "raw" / "tec")
    assert not (tmp_path / "raw" / "tec").exists()


def test_an_archive_name_in_any_letter_case(make_params, tmp_path):
    params = make_params({"gp": {"source": "sktime:gunpoint", "path": str(tmp_path / "raw/gp")}})
    out = ingest.run("gp", params.datasets["gp"], tmp_path / "raw" / "gp")
    assert sorted(p.name for p in out.iterdir()) == ["GunPoint_TEST.ts", "GunPoint_TRAIN.ts"]
