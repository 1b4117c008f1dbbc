"""Shared fixtures: the real params.yaml, shrunk or redirected per test, and tiny raw files."""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from xdist.scheduler import LoadFileScheduling

from bench.suite.repo import copy_repo
from stages.config import Params, parse_params

REPO = Path(__file__).resolve().parent.parent


# The flow's copy (flow_repo) takes minutes to build: under xdist the files that use it run in
# test_flow.py's worker, so that it is built once.
SAME_WORKER = {
    "tests/test_predict.py": "tests/test_flow.py",
    "tests/test_temporary_server.py": "tests/test_flow.py",
}


class FileScheduling(LoadFileScheduling):
    """`make test`'s `pytest -n auto --dist loadfile`: a file's tests run in one worker (its
    module fixtures built once), and SAME_WORKER's files in their partner's. (xdist's own
    `loadgroup` marks do nothing under pytest 9.2: it renames node ids through an attribute that
    pytest no longer reads.)"""

    def _split_scope(self, nodeid: str) -> str:
        scope = super()._split_scope(nodeid)
        return SAME_WORKER.get(scope, scope)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A new user of flow_repo missing from SAME_WORKER would build it again in another worker."""
    for item in items:
        where = item.nodeid.split("::", 1)[0]
        uses = "flow_repo" in getattr(item, "fixturenames", ())
        if uses and SAME_WORKER.get(where, where) != "tests/test_flow.py":
            raise pytest.UsageError(f"{where} uses flow_repo: add it to SAME_WORKER")


def pytest_xdist_make_scheduler(config: pytest.Config, log) -> FileScheduling | None:
    return FileScheduling(config, log) if config.getvalue("dist") == "loadfile" else None


@pytest.fixture(scope="session")
def raw_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


@pytest.fixture
def make_params(raw_params, tmp_path):
    """Params from the real file with `datasets` replaced/extended and paths under tmp_path."""

    def build(datasets: dict | None = None, **sections) -> Params:
        raw = copy.deepcopy(raw_params)
        raw["paths"] = {"raw": str(tmp_path / "raw"), "prepared": str(tmp_path / "prepared")}
        for name, ds in raw["datasets"].items():
            ds["path"] = str(tmp_path / "raw" / name)
        if datasets is not None:
            raw["datasets"] = datasets
            raw["models"] = {}  # the repository's models name its datasets
            raw["tune"] = {}  # and its searches its models
        raw.update(sections)
        return parse_params(raw)

    return build


def write_image_folder(root: Path, spec: dict[str, int], size=(8, 8), mode="L", fmt="PNG"):
    """`spec`: class → image count. Pixel values depend on class and index, so they differ."""
    rng = np.random.default_rng(0)
    suffix = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp"}[fmt]
    for c, n in spec.items():
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
            pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
            Image.fromarray(pixels, mode=mode).save(root / c / f"{i:03d}{suffix}", format=fmt)
    return root


def ts_text(cases: list[tuple[list[list[float]], str]], labels: list[str]) -> str:
    """A `.ts` file: each case is (channels × values, label)."""
    dims = len(cases[0][0])
    lines = [
        "@problemName Tiny",
        "@timeStamps false",
        "@missing false",
        f"@univariate {'true' if dims == 1 else 'false'}",
        f"@dimensions {dims}",
        "@equalLength false",
        f"@classLabel true {' '.join(labels)}",
        "@data",
    ]
    for channels, label in cases:
        lines.append(":".join(",".join(repr(v) for v in ch) for ch in channels) + f":{label}")
    return "\n".join(lines) + "\n"


def tiny_cases(n_per_class: int, labels=("a", "b"), channels=2, seed=0):
    """Series of lengths 3..8 whose mean depends on the class."""
    rng = np.random.default_rng(seed)
    cases = []
    for k, label in enumerate(labels):
        for _ in range(n_per_class):
            length = int(rng.integers(3, 9))
            values = rng.normal(loc=k, size=(channels, length)).round(4).tolist()
            cases.append((values, label))
    return cases


def write_ts_pair(root: Path, train: list, test: list, labels=("a", "b")) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "Tiny_TRAIN.ts").write_text(ts_text(train, list(labels)))
    (root / "Tiny_TEST.ts").write_text(ts_text(test, list(labels)))
    return root


def shrink_params(repo: Path, **sections) -> None:
    """The copy's params.yaml with every model cut to two epochs (and no minimum of optimiser
    steps), and `sections` merged in.

    Two epochs are not expected to beat the baselines, so the copy's register promotes without
    that gate (its own tests turn it on)."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for model in params["models"].values():
        model |= {"max_epochs": 2, "min_steps": 0}
    params["register"]["beat_baselines"] = False
    for key, value in sections.items():
        params[key] = params.get(key, {}) | value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def shrink_to(repo: Path, models: dict[str, str], **sections: dict) -> None:
    """`repo`'s params shrunk (two epochs) to `models` and their datasets, `sections` merged
    in, with no metrics files of the repository's own models left to mistake for this run's."""
    shrink_params(repo, **sections)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["models"] = {name: params["models"][name] for name in models}
    params["datasets"] = {d: params["datasets"][d] for d in sorted(set(models.values()))}
    params["tune"] = {k: v for k, v in params.get("tune", {}).items() if k in models}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.rmtree(repo / "metrics")


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect API for the whole session (prefect_test_harness)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


# The flow's copy: an image model and a recurrent one, a dataset each. Every further model
# costs two stage processes (about 10 s of imports each on 2 cores) and shows nothing new.
FLOW_MODELS = {"cnn": "digits", "lstm": "japanese_vowels"}


@pytest.fixture(scope="session")
def flow_repo(tmp_path_factory, prefect_harness):
    """A shrunken copy of FLOW_MODELS with its own MLflow store, where the flow has run once."""
    from flows.train_pipeline import pipeline

    root = copy_repo(tmp_path_factory.mktemp("flow") / "repo")
    shrink_to(
        root,
        FLOW_MODELS,
        flow={"retries": 1, "retry_backoff_seconds": 0.1},
        mlflow={"retries": 0, "timeout_seconds": 1},
    )
    before = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    state = pipeline(project_dir=str(root), return_state=True)
    yield root, state
    if before is None:
        del os.environ["MLFLOW_TRACKING_URI"]
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before
