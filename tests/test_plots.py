"""The committed metrics through `dvc metrics` and `dvc plots`, and the plots page drawn in headless Chromium.

No pipeline runs: a copy of the repository gets the committed metrics as one commit and a made-up
second experiment (every ppo metric changed) as the next, so `dvc metrics diff` and `dvc plots
diff` compare two revisions as they would after `dvc exp run -S ppo.kl_coef=...`.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import yaml
from dvc_render.base import Renderer
from dvc_render.vega import VegaRenderer
from PIL import Image

from conftest import REPO, copy_repo, run
from conftest import needs


def _load_script(path):
    """scripts/ is not a package: load render_plots by its path."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render_plots = _load_script(REPO / "scripts" / "render_plots.py")

EVAL_METRICS = ["reward_mean", "reward_std", "reward_normalized_mean", "empathy_ratio",
                "vader_compound_mean", "rouge_l", "kl_to_sft", "response_words", "distinct_1", "distinct_2",
                "cohesion"]
POLICIES = ["sft", "ppo", "grpo"]
PAIRED_METRICS = ["win_rate_vs_sft", "reward_gain_sft_std"]
"""computed by the compare stage from every policy's samples, so they live in metrics/summary.json"""
SCREEN = (1400, 3000)


def _commit(repo, message: str) -> None:
    run(["git", "add", "-A"], cwd=repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message], cwd=repo)


def _experiment(value):
    """What another KL coefficient might give: a different value for every float metric."""
    return round(value * 1.5 + 0.01, 5) if isinstance(value, float) else value


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """HEAD~1: the committed metrics; HEAD: the same with every ppo metric changed."""
    repo = copy_repo(tmp_path_factory.mktemp("plots") / "repo")
    tracked = subprocess.run(["git", "ls-files", "metrics"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    for name in tracked:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, repo / name)
    _commit(repo, "default run")
    ppo_json = repo / "metrics/eval/ppo.json"
    ppo_json.write_text(json.dumps({k: _experiment(v) for k, v in json.loads(ppo_json.read_text()).items()}))
    rows = list(csv.DictReader(io.StringIO((repo / "metrics/policies.csv").read_text())))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        if row["policy"] == "ppo":
            row = {k: (v if k == "policy" else str(_experiment(float(v)))) for k, v in row.items()}
        writer.writerow(row)
    (repo / "metrics/policies.csv").write_text(out.getvalue())
    _commit(repo, "experiment")
    return repo


def dvc(repo, *args: str) -> str:
    return run([sys.executable, "-m", "dvc", *args], cwd=repo).stdout


# --- metrics ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_metrics_show_lists_every_eval_metric_for_both_policies(repo):
    shown = json.loads(dvc(repo, "metrics", "show", "--json"))
    files = next(iter(shown.values()))["data"]
    for policy in POLICIES:
        values = files[f"metrics/eval/{policy}.json"]["data"]
        assert set(EVAL_METRICS) <= set(values), policy
        assert all(isinstance(values[m], float) for m in EVAL_METRICS), policy
        summary = files["metrics/summary.json"]["data"][policy]
        assert all(isinstance(summary[m], float) for m in EVAL_METRICS + PAIRED_METRICS), policy
    table = dvc(repo, "metrics", "show", "--md")
    for metric in EVAL_METRICS + PAIRED_METRICS:
        assert metric in table, metric


@pytest.mark.slow
def test_metrics_diff_between_two_experiments_shows_every_eval_metric(repo):
    committed = json.loads((REPO / "metrics/eval/ppo.json").read_text())
    diff = json.loads(dvc(repo, "metrics", "diff", "HEAD~1", "--json"))
    ppo = diff["metrics/eval/ppo.json"]
    for metric in EVAL_METRICS:
        assert ppo[metric]["old"] == committed[metric], metric
        assert ppo[metric]["new"] == _experiment(committed[metric]), metric
    assert "metrics/eval/sft.json" not in diff  # unchanged, so left out unless --all
    everything = json.loads(dvc(repo, "metrics", "diff", "HEAD~1", "--all", "--json"))
    for policy in POLICIES:
        assert set(EVAL_METRICS) <= set(everything[f"metrics/eval/{policy}.json"]), policy


# --- plots -----------------------------------------------------------------------------------------
def declared_plots(repo) -> tuple[list[str], list[str]]:
    """(vega plot ids, image plot ids) as DVC names their divs, from every plot dvc.yaml declares."""
    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())
    names = [next(iter(p)) if isinstance(p, dict) else p for p in pipeline["plots"]]
    for stage in pipeline["stages"].values():
        names += [next(iter(p)) if isinstance(p, dict) else p for p in stage.get("plots", [])]
    ids = [Renderer.remove_special_chars(name) for name in names]
    images = [i for name, i in zip(names, ids) if name.endswith(".png")]
    return [i for i in ids if i not in images], images


def test_pinned_vega_is_the_version_dvc_render_loads():
    for package, version, _, _ in render_plots.VEGA_PACKAGES:
        assert f"/npm/{package}@{version}\"" in VegaRenderer.SCRIPTS, package


def test_drawn_plot_detection_on_a_dumped_dom():
    dom = ('<div id="a" class="vega-embed"><div><canvas></canvas></div></div>'
           '<div id="b"><div></div></div><canvas></canvas>'
           '<div id="c"><svg class="marks"></svg></div>')
    parser = render_plots._DrawnPlots({"a", "b", "c"})
    parser.feed(dom)
    assert parser.drawn == {"a", "c"}  # the canvas after b's div closed is not b's


def _vega_available() -> bool:
    """The page inlines vega from npm tarballs: npm must be there unless the template is already built."""
    return shutil.which("npm") is not None or any(render_plots.CACHE.glob("template-*.html"))


needs_vega = needs(_vega_available(), "npm not installed and no cached vega template (apt-get install -y npm)")


@pytest.mark.slow
@needs_vega
def test_plots_page_names_every_declared_plot_and_needs_no_network(repo, tmp_path):
    out = tmp_path / "show"
    run([sys.executable, str(REPO / "scripts/render_plots.py"), "--out", str(out)], cwd=repo)
    html = (out / "index.html").read_text()
    vega, images = declared_plots(repo)
    assert sorted(render_plots.vega_plot_ids(html)) == sorted(vega)
    body = html.rsplit("<body>", 1)[1]  # the inlined libraries mention <body> too
    for plot in images:
        assert f'id="{plot}"' in body, plot
    sources = re.findall(r'<img src="([^"]+)"', body)
    assert len(sources) == len(images)
    for src in sources:
        assert (out / src).is_file(), src
    assert "<script src" not in html  # the libraries are inlined: the page loads nothing
    for package, version, _, _ in render_plots.VEGA_PACKAGES:
        assert f"/* {package}@{version} */" in html


@pytest.mark.slow
@needs(render_plots.chromium() is not None, "chromium not installed (apt-get install -y chromium)")
@needs_vega
def test_plots_diff_draws_every_chart_in_headless_chromium(repo, tmp_path):
    png = tmp_path / "plots.png"
    proc = run([sys.executable, str(REPO / "scripts/render_plots.py"), "--out", str(tmp_path / "diff"),
                "--rev", "HEAD~1", "--rev", "HEAD", "--screenshot", str(png),
                "--window-size", f"{SCREEN[0]},{SCREEN[1]}"], cwd=repo)
    vega, _ = declared_plots(repo)
    # the script fails unless each vega plot holds a canvas once the page ran
    assert f"{len(vega)} vega plots drawn" in proc.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = np.asarray(Image.open(png).convert("RGB"))
    assert pixels.shape == (SCREEN[1], SCREEN[0], 3)
    assert (pixels != 255).any(-1).mean() > 0.05
    # vega colours the two revisions #945dd6 and #13adc7; the static PNG plot uses neither
    for colour in ((0x94, 0x5D, 0xD6), (0x13, 0xAD, 0xC7)):
        assert (pixels == colour).all(-1).sum() > 10_000, colour
