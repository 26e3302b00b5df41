"""bench/pipeline_profile.py: stages are cut at DVC's "Running stage" lines and each gets the peak memory of the
processes that ran under it, not its neighbour's."""

import json
import sys

from bench.pipeline_profile import main

# Two fake stages: 'small' holds ~20 MB, 'big' allocates 300 MB in a grandchild process and holds it 1.5 s.
SCRIPT = r"""
import subprocess, sys, time
print("Running stage 'small':", flush=True)
time.sleep(1.0)
print("Running stage 'big':", flush=True)
subprocess.run([sys.executable, "-c", "import time; b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(1.5)"])
print("done", flush=True)
sys.exit(3)
"""


def test_stage_times_and_peaks_are_attributed_to_their_stage(tmp_path, capsys):
    out = tmp_path / "profile.json"
    code = main(["--out", str(out), "--", sys.executable, "-c", SCRIPT])
    assert code == 3  # the command's exit code passes through
    result = json.loads(out.read_text())
    small, big = result["stages"]
    assert (small["stage"], big["stage"]) == ("small", "big")
    assert small["seconds"] >= 0.9 and big["seconds"] >= 1.4
    assert big["peak_rss_gib"] >= 0.29  # the grandchild's 300 MB were seen
    assert small["peak_rss_gib"] < 0.1
    assert result["peak_rss_gib"] == big["peak_rss_gib"]
    assert "| big |" in capsys.readouterr().out
