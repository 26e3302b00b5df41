"""Render the DVC plots to an HTML page that works offline, and screenshot it in headless Chromium.

`dvc plots show` and `dvc plots diff` write an index.html that loads vega, vega-lite and vega-embed
from a CDN, so without internet every chart stays blank. This script builds an HTML template with
the three libraries inlined (the versions dvc-render asks for, fetched once with `npm pack` from the
npm registry and kept in the virtual environment), hands it to DVC with --html-template, and with
--screenshot loads the page in headless Chromium, fails unless every vega plot drew, and saves a PNG.

    python scripts/render_plots.py                                  # workspace -> dvc_plots/index.html
    python scripts/render_plots.py --rev HEAD --screenshot plots.png  # workspace against HEAD
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from html.parser import HTMLParser
from pathlib import Path

from rlhfpipe.cli import run_stage
from rlhfpipe.errors import PipelineError

# (package, version, file in the tarball, npm integrity): the versions dvc-render 1.0.2 loads from its CDN
VEGA_PACKAGES = (
    ("vega", "5.20.2", "package/build/vega.min.js",
     "sha512-qmH7aD9GGPpssVdxL1xgcdxTbQzyRUeRR16Os385ymvQhiwCYQNA6+eXUPAZDTVLfk0RXu6Jzj6kUE5jQ80EVw=="),
    ("vega-lite", "5.2.0", "package/build/vega-lite.min.js",
     "sha512-Yxcg8MvYfxHcG6BbkaKT0oVCIMIcE19UvqIsEwBmyd/7h2nzW7oRnID81T8UrY7hpDrIr6wa2JADOT2dhGNErw=="),
    ("vega-embed", "6.18.2", "package/build/vega-embed.min.js",
     "sha512-wcDyQPE4J5aiCDc3/suH5RQDvrKkjuLkhzUcbOLwEkNF8/+pp17tS0JghzEvAPNRg+5aG1/N2ydixq8Lk3dOlg=="),
)
CACHE = Path(sys.prefix) / "share" / "rlhfpipe-plots"
"""Inside the virtual environment: git-ignored, and rebuilt with it."""

PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>rlhfpipe plots</title>
{libraries}
<style>table {{ border-spacing: 15px; }}</style>
</head>
<body>
{{plot_divs}}
</body>
</html>
"""

# Without the networking flags Chromium keeps trying to reach Google's hosts, which this network refuses.
BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--hide-scrollbars"]
RENDER_BUDGET_MS = 15000
"""Virtual time Chromium lets the page run before dumping or screenshotting it: vega draws asynchronously."""
BROWSER_TIMEOUT_S = 300


def _check(proc: subprocess.CompletedProcess, what: str) -> None:
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise PipelineError(f"{what} failed (exit {proc.returncode}): {lines[-1] if lines else 'no output'}")


def vega_template(cache: Path = CACHE) -> Path:
    """The offline HTML template, built on first use from the pinned npm tarballs."""
    name = "-".join(f"{pkg}{version}" for pkg, version, _, _ in VEGA_PACKAGES)
    template = cache / f"template-{name}.html"
    if template.is_file():
        return template
    npm = shutil.which("npm")
    if npm is None:
        raise PipelineError("npm not found: apt-get install -y npm (it fetches vega for offline plots)")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        specs = [f"{pkg}@{version}" for pkg, version, _, _ in VEGA_PACKAGES]
        proc = subprocess.run([npm, "pack", *specs, "--json", "--pack-destination", tmp],
                              capture_output=True, text=True, cwd=tmp)
        _check(proc, "npm pack " + " ".join(specs))
        packed = {f"{row['name']}@{row['version']}": row for row in json.loads(proc.stdout)}
        scripts = []
        for pkg, version, member, integrity in VEGA_PACKAGES:
            row = packed[f"{pkg}@{version}"]
            if row["integrity"] != integrity:
                raise PipelineError(f"npm pack {pkg}@{version}: integrity {row['integrity']}, expected {integrity}")
            with tarfile.open(Path(tmp) / row["filename"]) as tar:
                code = tar.extractfile(member).read().decode("utf-8")
            # inlined, so the code must not close its own script element
            if "</script" in code:
                raise PipelineError(f"{pkg}@{version}:{member}: contains '</script', cannot be inlined")
            scripts.append(f"<script>/* {pkg}@{version} */\n{code}\n</script>")
        partial = Path(tmp) / template.name
        partial.write_text(PAGE.format(libraries="\n".join(scripts)), encoding="utf-8")
        os.replace(partial, template)
    return template


def render_html(repo: Path, out: Path, revs: list[str]) -> Path:
    """`dvc plots show` (no revs) or `dvc plots diff REVS` into ``out``; returns out/index.html."""
    command = ["diff", *revs] if revs else ["show"]
    proc = subprocess.run([sys.executable, "-m", "dvc", "plots", *command, "-o", str(out),
                           "--html-template", str(vega_template())],
                          cwd=repo, capture_output=True, text=True)
    _check(proc, f"dvc plots {' '.join(command)}")
    return out / "index.html"


def vega_plot_ids(html: str) -> list[str]:
    return re.findall(r"vegaEmbed\('#([^']+)'", html)


class _DrawnPlots(HTMLParser):
    """Ids among ``ids`` whose div holds a <canvas> or <svg> once the page ran."""

    def __init__(self, ids: set[str]):
        super().__init__()
        self.ids, self.drawn, self.open = ids, set(), []  # open: (plot id, div depth at its start)
        self.depth = 0

    def handle_starttag(self, tag, attrs):
        if tag == "div":
            self.depth += 1
            plot = dict(attrs).get("id")
            if plot in self.ids:
                self.open.append((plot, self.depth))
        elif tag in ("canvas", "svg") and self.open:
            self.drawn.add(self.open[-1][0])

    def handle_endtag(self, tag):
        if tag == "div":
            if self.open and self.open[-1][1] == self.depth:
                self.open.pop()
            self.depth -= 1


def chromium() -> str | None:
    return next((path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))),
                None)


def _browse(page: Path, *args: str) -> subprocess.CompletedProcess:
    browser = chromium()
    if browser is None:
        raise PipelineError("chromium not found: apt-get install -y chromium")
    with tempfile.TemporaryDirectory() as profile:
        try:
            proc = subprocess.run([browser, *BROWSER_FLAGS, f"--user-data-dir={profile}",
                                   f"--virtual-time-budget={RENDER_BUDGET_MS}", *args, page.resolve().as_uri()],
                                  capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise PipelineError(f"chromium did not finish {page} within {BROWSER_TIMEOUT_S} s") from None
    _check(proc, "chromium")
    return proc


def screenshot(page: Path, png: Path, width: int, height: int) -> list[str]:
    """Screenshot ``page``; raises unless every vega plot on it drew. Returns the plot ids."""
    ids = vega_plot_ids(page.read_text(encoding="utf-8"))
    parser = _DrawnPlots(set(ids))
    parser.feed(_browse(page, "--dump-dom").stdout)
    blank = [plot for plot in ids if plot not in parser.drawn]
    if blank:
        raise PipelineError(f"{page}: vega drew nothing for {', '.join(blank)}")
    png.parent.mkdir(parents=True, exist_ok=True)
    _browse(page, f"--screenshot={png.resolve()}", f"--window-size={width},{height}")
    if not png.is_file():
        raise PipelineError(f"chromium wrote no screenshot to {png}")
    return ids


def _size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+),(\d+)", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected WIDTH,HEIGHT in pixels, got {text!r}")
    return int(match[1]), int(match[2])


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=Path("."), help="DVC repository (default: .)")
    parser.add_argument("--out", type=Path, default=Path("dvc_plots"), help="HTML folder (default: dvc_plots)")
    parser.add_argument("--rev", action="append", default=[], help="compare with this revision (repeatable)")
    parser.add_argument("--screenshot", type=Path, help="PNG of the page, taken in headless Chromium")
    parser.add_argument("--window-size", type=_size, default="1400,3000", help="WIDTH,HEIGHT of the screenshot")
    args = parser.parse_args(argv)
    page = render_html(args.repo, args.out.resolve(), args.rev)
    print(page)
    if args.screenshot:
        ids = screenshot(page, args.screenshot, *args.window_size)
        print(f"{args.screenshot}: {len(ids)} vega plots drawn")


if __name__ == "__main__":
    run_stage(main)
