"""The MLflow and Prefect UIs in headless Chromium, over one real run of the training flow.

A shrunken copy of the repository runs `python -m flows.pipeline --stages evaluate --models lstm
gru` against a real `prefect server start` and a real `mlflow server` (both on free 127.0.0.1
ports); the tests then open MLflow's compare view of the two runs and Prefect's page of the flow
run, as a user would, and leave screenshots in tests/screenshots/ (git-ignored) for a person to
look at. Debian's chromium is driven through Playwright; nothing is downloaded (no
`playwright install`), and the tests are skipped when either is missing.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from PIL import Image

from flows.graph import read_graph
from tests.conftest import copy_repo, shrink_params
from tests.servers import BIN, free_port, mlflow_server, running

pytestmark = [pytest.mark.browser, pytest.mark.server, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package: `apt-get install chromium`
SCREENSHOTS = Path(__file__).parent / "screenshots"
MODELS = ("lstm", "gru")
STAGES = ("evaluate",)  # and what they need (`--models` leaves `register` out)
TIMEOUT_MS = 120_000  # single-page apps on two busy cores: wait for content, never sleep
# Pixels that change by more than this (of 255, in any channel) count as changed.
CHANGED = 32


@dataclass(frozen=True)
class FlowRun:
    root: Path
    prefect_url: str
    mlflow_url: str
    flow_run_id: str
    experiment_id: str
    evaluations: dict[str, dict]  # model → metrics/eval/<model>.json


@pytest.fixture(scope="module")
def chromium():
    """A headless Chromium (the system's, through Playwright), or the tests skipped."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def flow_run(chromium, tmp_path_factory) -> Iterator[FlowRun]:
    """The flow run once, against real servers that stay up for the module's tests."""
    tmp = tmp_path_factory.mktemp("browser")
    root = copy_repo(tmp / "repo")
    shrink_params(root)
    port = free_port()
    prefect_url = f"http://127.0.0.1:{port}"
    api = f"{prefect_url}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # The UI asks the server where its API is: unset, that is port 4200.
        "PREFECT_UI_API_URL": api,
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }
    env.pop("PREFECT_API_URL", None)
    server = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with (
        running(server, f"{api}/health", tmp / "prefect.log", env=env),
        mlflow_server(tmp / "mlflow") as mlflow_url,
    ):
        done = subprocess.run(
            [sys.executable, "-m", "flows.pipeline", "--stages", *STAGES, "--models", *MODELS],
            cwd=root,
            env={**env, "PREFECT_API_URL": api, "MLFLOW_TRACKING_URI": mlflow_url},
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
        (flow_run_id,) = [run["id"] for run in _post(f"{api}/flow_runs/filter", {})]
        evaluations = {
            model: json.loads((root / "metrics" / "eval" / f"{model}.json").read_text())
            for model in MODELS
        }
        experiment = MlflowClient(mlflow_url).get_experiment_by_name("japanese_vowels")
        yield FlowRun(
            root, prefect_url, mlflow_url, flow_run_id, experiment.experiment_id, evaluations
        )


@pytest.fixture
def page(chromium, request):
    """A fresh page; what it shows when the test ends, passed or failed, is saved as
    tests/screenshots/<test name>.png."""
    context = chromium.new_context(viewport={"width": 2000, "height": 3000})
    page = context.new_page()
    yield page
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{request.node.name.removeprefix('test_')}.png"))
    context.close()


def test_mlflow_compares_the_test_metrics_and_confusion_matrices_of_lstm_and_gru(page, flow_run):
    from playwright.sync_api import expect

    runs = [flow_run.evaluations[model]["mlflow_run_id"] for model in MODELS]
    query = urllib.parse.urlencode(
        {"runs": json.dumps(runs), "experiments": json.dumps([flow_run.experiment_id])}
    )
    fetched = []
    page.on("response", lambda r: "/get-artifact?" in r.url and fetched.append(r))
    page.goto(f"{flow_run.mlflow_url}/#/compare-runs?{query}")
    expect(page.get_by_text("Comparing 2 Runs from 1 Experiment")).to_be_visible(timeout=TIMEOUT_MS)
    for metric in ("test_accuracy", "test_macro_f1"):
        shown = [_mlflow_number(flow_run.evaluations[model][metric]) for model in MODELS]
        assert _metric_row(page, metric) == shown, metric

    picture = page.get_by_text("confusion.png", exact=True)
    expect(
        picture,
        "no common confusion.png in the compare view's Artifacts: it lists only files at the "
        "artifact root (MLflow 3.17 skips folders), and evaluate logs evaluation/confusion.png",
    ).to_be_visible(timeout=30_000)
    picture.click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('img')].filter(i => i.complete && i.naturalWidth"
        " && i.checkVisibility() && i.getBoundingClientRect().width > 200).length >= 2",
        timeout=TIMEOUT_MS,
    )
    pictures = {
        urllib.parse.parse_qs(urllib.parse.urlparse(r.url).query)["run_uuid"][0]
        for r in fetched
        if r.ok and r.headers.get("content-type") == "image/png" and "confusion.png" in r.url
    }
    assert pictures == set(runs)


def test_prefect_draws_the_flow_runs_stage_dependencies(page, flow_run):
    with page.expect_response(lambda r: r.url.endswith("/graph-v2"), timeout=TIMEOUT_MS) as got:
        page.goto(f"{flow_run.prefect_url}/runs/flow-run/{flow_run.flow_run_id}")
    nodes = dict(got.value.json()["nodes"])
    edges = {(nodes[p["id"]]["label"], n["label"]) for n in nodes.values() for p in n["parents"]}
    upstream = read_graph(flow_run.root).select(list(STAGES), list(MODELS)).upstream
    assert edges == {(u, stage) for stage, ups in upstream.items() for u in ups}

    # The graph is drawn on a canvas: the arrows are the pixels that "Hide dependency arrows"
    # takes away and gives back.
    canvas = page.locator(".flow-run-graph canvas")
    with_arrows = _steady(canvas)
    _toggle(page, "Hide dependency arrows", True)
    without = _steady(canvas)
    _toggle(page, "Hide dependency arrows", False)
    again = _steady(canvas)
    arrows = _changed(with_arrows, without)
    assert arrows > 1000, f"{arrows} pixels of arrows"
    assert _changed(with_arrows, again) < arrows / 20


def _post(url: str, payload: dict) -> list[dict]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _mlflow_number(value: float) -> str:
    """A metric below 10 as MLflow's tables print it: rounded to three decimals."""
    return f"{round(value, 3):g}"


# The texts of a grid shown on the same line as a metric's name, left to right.
ROW_TEXTS = """(grid, name) => {
  const label = [...document.querySelectorAll('a')].find(a => a.textContent.trim() === name);
  const row = label.getBoundingClientRect();
  const middle = (row.top + row.bottom) / 2;
  return [...grid.querySelectorAll('span')]
    .map(s => [s.getBoundingClientRect(), s.textContent.trim()])
    .filter(([box, text]) => text && box.top < middle && middle < box.bottom)
    .sort((a, b) => a[0].left - b[0].left)
    .map(([, text]) => text);
}"""


def _metric_row(page, name: str) -> list[str]:
    """The values on `name`'s row of the Metrics table, scrolled into view with the mouse wheel.

    The table is two virtualised grids, names and values, and only the values scroll; MLflow
    3.17 moves the names to where the values were one scroll event earlier. After a wheel of a
    whole row the names would stand beside the next row's values, so every wheel is followed by
    one of a pixel, which leaves the names a pixel behind."""
    label = page.get_by_role("link", name=name, exact=True)
    label.wait_for(timeout=TIMEOUT_MS)
    names = page.get_by_role("grid").filter(has=label)
    values = page.get_by_role("grid").filter(has_not=page.get_by_role("link"))
    for _ in range(100):
        row, view = _still(label), names.bounding_box()
        assert view is not None
        if view["y"] <= row["y"] and row["y"] + row["height"] <= view["y"] + view["height"]:
            return values.evaluate(ROW_TEXTS, name)
        values.hover()
        page.mouse.wheel(0, 40 if row["y"] > view["y"] else -40)
        _still(label)
        page.mouse.wheel(0, 1)
    raise AssertionError(f"the Metrics table never showed {name}")


def _still(element, timeout: float = 30.0) -> dict:
    """`element`'s box once two looks 0.2 s apart agree: a wheel scrolls the values at once,
    the names a moment later."""
    deadline = time.monotonic() + timeout
    last = element.bounding_box()
    while True:
        time.sleep(0.2)
        now = element.bounding_box()
        if now == last and now is not None:
            return now
        assert time.monotonic() < deadline, "the table never stopped scrolling"
        last = now


def _toggle(page, option: str, on: bool) -> None:
    """Sets a checkbox of the run graph's options menu, closes the menu and moves the mouse and
    focus off the graph, so that only the option changes its picture."""
    menu = page.get_by_label("Run Graph Options")
    menu.click()
    page.get_by_label(option).set_checked(on)
    menu.click()
    page.mouse.move(0, 0)
    page.evaluate("document.activeElement.blur()")


def _steady(element, timeout: float = 60.0) -> np.ndarray:
    """`element`'s pixels once two screenshots half a second apart agree (a canvas gives no
    sign that it has finished drawing)."""
    deadline = time.monotonic() + timeout
    last = _pixels(element)
    while True:
        time.sleep(0.5)
        now = _pixels(element)
        if now.shape == last.shape and _changed(now, last) == 0:
            return now
        assert time.monotonic() < deadline, "the canvas never stopped changing"
        last = now


def _pixels(element) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(element.screenshot())).convert("RGB"), dtype=int)


def _changed(a: np.ndarray, b: np.ndarray) -> int:
    return int((np.abs(a - b).max(axis=2) > CHANGED).sum())
