"""The ``rlhfpipe`` command: stage help generated from the config docs, stages run by name."""

import hashlib
import subprocess
import sys

import yaml

from conftest import REPO, quick_params

STAGES = sorted(p.stem for p in (REPO / "stages").glob("*.py"))


def cli(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "rlhfpipe", *args], cwd=cwd, capture_output=True, text=True)


def test_help_lists_every_stage_and_the_tools():
    proc = cli("--help")
    assert proc.returncode == 0, proc.stderr
    assert "selftest" in proc.stdout and "preset" in proc.stdout
    listed = proc.stdout.split("stages: ", 1)[1].strip().split(", ")
    assert listed == STAGES


def test_stage_help_shows_each_declared_field_with_its_doc_and_current_value(tmp_path):
    params = quick_params()
    params["ppo"]["kl_coef"] = 0.125
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (tmp_path / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())
    proc = cli("ppo", "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    at = lines.index("  ppo.kl_coef = 0.125")
    assert lines[at + 1].strip() == "KL penalty coefficient beta (initial value when adaptive_kl)"  # its field doc
    assert "  ppo.lora.r = 16" in lines  # nested sections are walked
    assert f"  runtime.num_threads = {params['runtime']['num_threads']}" in lines
    assert not any(line.startswith("  sft.") for line in lines)  # ppo does not read sft


def test_unknown_command_is_one_line():
    proc = cli("tune")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "unknown command 'tune'" in proc.stderr


def test_a_stage_by_name_runs_the_same_main_as_its_script(tmp_path):
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    by_name = cli("corpus", "a.jsonl", cwd=tmp_path)
    by_script = subprocess.run([sys.executable, str(REPO / "stages/corpus.py"), "b.jsonl"], cwd=tmp_path,
                               capture_output=True, text=True)
    assert by_name.returncode == 0 and by_script.returncode == 0, by_name.stderr + by_script.stderr
    digest = [hashlib.md5((tmp_path / f).read_bytes()).hexdigest() for f in ("a.jsonl", "b.jsonl")]
    assert digest[0] == digest[1]
    assert cli("corpus", cwd=tmp_path).stderr.startswith("error: usage: ")


def test_a_stage_script_given_an_option_prints_its_usage_and_writes_nothing(tmp_path):
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    script = str(REPO / "stages/corpus.py")
    helped = subprocess.run([sys.executable, script, "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: corpus.py OUT_JSONL\n")
    refused = subprocess.run([sys.executable, script, "-o"], cwd=tmp_path, capture_output=True, text=True)
    assert refused.returncode == 2
    assert refused.stderr == "error: usage: corpus.py OUT_JSONL (takes no options, got '-o')\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]
