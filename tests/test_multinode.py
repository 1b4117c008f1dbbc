"""Multi-node training: the train stage under torchrun as two nodes of one CPU process each on
127.0.0.1 (gloo), in a shrunken copy configured by params.yaml alone; then DVC records its
outputs and evaluate and register run as usual."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from bench.suite.repo import copy_repo
from tests.conftest import shrink_to
from tests.servers import free_port

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def test_two_nodes_train_one_model_with_one_run_then_register(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    ddp = {"accelerator": "cpu", "devices": 1, "num_nodes": 2, "strategy": "ddp"}
    shrink_to(repo, {"cnn": "digits"}, trainer=ddp)
    store = f"sqlite:///{repo / 'mlflow.db'}"
    path = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    env = os.environ | {"MLFLOW_TRACKING_URI": store, "PATH": path}
    prepare = ["dvc", "repro", "prepare@digits"]
    subprocess.run(prepare, cwd=repo, env=env, check=True, capture_output=True)

    port = str(free_port())
    nodes = [
        subprocess.Popen(
            _torchrun(rank, port, "train@cnn"),
            cwd=repo,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    for rank, (node, output) in enumerate(zip(nodes, outputs, strict=True)):
        assert node.returncode == 0, f"node {rank}:\n{output[-4000:]}"
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in outputs[1]  # a real second process of one world

    assert [p.name for p in (repo / "models").iterdir() if p.is_dir()] == ["cnn"]
    metrics = json.loads((repo / "metrics" / "train" / "cnn.json").read_text())
    client = MlflowClient(store)
    (experiment,) = [e for e in client.search_experiments() if e.name == "digits"]
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs] == [metrics["mlflow_run_id"]]
    assert runs[0].info.status == "FINISHED"
    # Figures over both nodes' shards: the epoch line prints what MLflow holds.
    val_loss = client.get_metric_history(metrics["mlflow_run_id"], "val_loss")[-1].value
    epochs = [line for line in outputs[0].splitlines() if line.startswith("epoch ")]
    assert f"val_loss {val_loss:.4f}" in epochs[-1]

    # torchrun ran outside DVC: `dvc commit` records its outputs, and the rest runs as usual.
    subprocess.run(["dvc", "commit", "--force", "train@cnn"], cwd=repo, env=env, check=True)
    repro = subprocess.run(["dvc", "repro"], cwd=repo, env=env, capture_output=True, text=True)
    assert repro.returncode == 0, repro.stdout[-4000:] + repro.stderr[-4000:]
    ran = [line for line in repro.stdout.splitlines() if line.startswith("Running stage")]
    assert ran == ["Running stage 'evaluate@cnn':", "Running stage 'register':"]
    assert (
        client.get_model_version_by_alias("digits-classifier", "champion").run_id
        == (metrics["mlflow_run_id"])
    )


def _torchrun(node_rank: int, port: str, stage: str) -> list[str]:
    """One of two nodes of one process each, as README's multi-node command runs them."""
    return [
        str(BIN / "torchrun"),
        "--nnodes", "2", "--node_rank", str(node_rank), "--nproc_per_node", "1",
        "--master_addr", "127.0.0.1", "--master_port", port,
        "-m", "stages.train", stage,
    ]  # fmt: skip
