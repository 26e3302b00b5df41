import contextlib
import dataclasses
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# `make test` runs the suite in one pytest-xdist worker per core. Each worker, and every stage it starts, then
# uses one thread: two workers of two OpenMP threads each on two cores slow each other down many times over,
# while one thread each keeps both cores busy (most of the suite is single-threaded process start-up and
# imports). Run serially, the stages keep params.yaml's runtime.num_threads.
PARALLEL = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1
if PARALLEL:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"

TINY_PARAMS = {
    "corpus": {"n_dialogues": 80},
    "tokenizer": {"vocab_size": 400},
    "model": {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64,
              "max_position_embeddings": 256},
    "sft": {"epochs": 1.0, "batch_size": 16, "learning_rate": 0.003},
    "preferences": {"max_prompts": 40, "num_samples": 2, "rouge_threshold": 0.5, "max_new_tokens": 24},
    "reward": {"epochs": 1.0, "batch_size": 16, "bootstrap_samples": 50, "norm_prompts": 256},
    "ppo": {"total_episodes": 32, "batch_size": 16, "mini_batches": 2, "ppo_epochs": 1, "max_new_tokens": 16,
            "save_every": 0.5},
    # six steps: killed_build must catch a checkpoint before the stage ends and clears them, and two steps
    # (0.1 s each on a fast CPU) closed that window between two polls
    "grpo": {"steps": 6, "prompts_per_step": 4, "num_generations": 2, "max_completion_length": 16},
    "evaluate": {"num_prompts": 16, "max_new_tokens": 16, "ranked_prompts": 3, "ranked_completions": 3},
    "dialogue": {"child": {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "intermediate_size": 32},
                 "child_sft": {"epochs": 0.5, "batch_size": 16}, "teacher_max_new_tokens": 12, "epochs": 0.75, "eval_windows": 16,
                 "ppo": {"batch_size": 8, "ppo_epochs": 1, "max_new_tokens": 12, "save_every": 0.25}},
    "moodpo": {"max_new_tokens": 8, "max_length": 96,
               "warmup": {"prompts": 8, "samples": 2, "weights_per_prompt": 2, "sample_batch": 8, "batch_size": 4},
               "iteration_1": {"steps": 2, "batch_size": 4, "learning_rate": 0.0005, "beta": 0.1, "seed": 0},
               "iteration_2": {"steps": 2, "batch_size": 4, "learning_rate": 0.0005, "beta": 0.1, "seed": 1}},
    "moodpo_eval": {"num_prompts": 4, "max_new_tokens": 8},
}


def quick_params() -> dict:
    """params.yaml with the quick profile (configs/presets/quick.yaml, the from-scratch toy) merged in: what
    ``make quick`` runs, and what the tests start from."""
    import yaml

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in yaml.safe_load((REPO / "configs/presets/quick.yaml").read_text()).items():
        merge(params.setdefault(section, {}), values)
    if PARALLEL:
        params["runtime"]["num_threads"] = 1
    return params


def save_local_pretrained(directory: Path) -> None:
    """A "pretrained" model saved with save_pretrained: our tokenizer without a pad token, a random tiny Llama."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from rlhfpipe.models.loading import train_tokenizer

    train_tokenizer(["hello there, how are you feeling today? I hear you."] * 50, 300).save_pretrained(directory)
    vocab = len(AutoTokenizer.from_pretrained(directory))
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=2, num_key_value_heads=2)).save_pretrained(directory)


def tiny_params(overrides: dict | None = None) -> dict:
    """The quick profile with the tiny settings (and ``overrides``, which replace a TINY_PARAMS section whole)
    merged in. TINY_PARAMS also pins quick-profile values the tests were built with (reward.norm_prompts,
    dialogue.child_sft.epochs), so trimming the quick profile's time does not change what the tests run."""
    params = quick_params()
    for section, values in {**TINY_PARAMS, **(overrides or {})}.items():
        merge(params.setdefault(section, {}), values)
    return params


def merge(into: dict, values: dict) -> None:
    """Update ``into`` with ``values``, recursing into nested sections (dialogue.child, dialogue.ppo)."""
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value


def copy_repo(dest: Path) -> Path:
    """A fresh git repo holding the tracked files of this checkout (no outputs, no cache)."""
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if name.startswith("metrics/") or name == "dvc.lock" or not (REPO / name).exists():
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run(["git", "add", "-A"], cwd=dest, check=True)
    subprocess.run(["git", "commit", "-qm", "copy"], cwd=dest, check=True, env=env)
    return dest


def write_params(repo: Path, params: dict) -> None:
    import yaml

    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def run(cmd: list[str], cwd: Path, check: bool = True, timeout: int = 1200) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def repro_until(repo: Path, ready, log: Path, *targets: str, timeout: float = 900) -> str:
    """Start ``dvc repro [targets]``; SIGKILL its whole process group as soon as ``ready()`` holds. Its output."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    with log.open("w") as out:
        proc = subprocess.Popen(["dvc", "repro", *targets], cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        deadline = time.monotonic() + timeout
        try:
            while not ready():
                assert proc.poll() is None, f"dvc repro ended before the checkpoint appeared:\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, "no checkpoint in time"
                time.sleep(0.02)
        finally:
            # also when waiting failed, so that no stage outlives the test; the group may be gone already
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return log.read_text()


def stage(name: str, *args: str, cwd: Path, check: bool = False) -> subprocess.CompletedProcess:
    return run([sys.executable, str(REPO / "stages" / f"{name}.py"), *args], cwd=cwd, check=check)


def out_md5s(repo: Path) -> dict[str, str]:
    """``stage:path`` -> md5 of every output recorded in ``repo``'s dvc.lock."""
    import yaml

    lock = yaml.safe_load((repo / "dvc.lock").read_text()) if (repo / "dvc.lock").exists() else {"stages": {}}
    return {f"{name}:{o['path']}": o["md5"] for name, s in lock["stages"].items() for o in s.get("outs", [])}


@dataclasses.dataclass(frozen=True)
class BuiltPipeline:
    repo: Path
    """the built copy: read it, never change it (copy it with ``pipeline_copy`` first)"""
    md5s: dict
    """``stage:path`` -> md5 of every output of the uninterrupted build"""
    output: str
    """what ``dvc repro`` printed"""


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory) -> BuiltPipeline:
    """The tiny pipeline built once per session by ``dvc repro``: the reference every end-to-end test compares
    its md5s with (a second clean build, killed-and-resumed builds)."""
    repo = copy_repo(tmp_path_factory.mktemp("pipeline") / "repo")
    write_params(repo, tiny_params())
    proc = run(["dvc", "repro"], cwd=repo)
    return BuiltPipeline(repo, out_md5s(repo), proc.stdout)


@dataclasses.dataclass(frozen=True)
class KilledBuild:
    repo: Path
    """the second build, finished: read it, never change it"""
    logs: dict
    """what each killed ``dvc repro <stage>`` printed, and ``end``: the final ``dvc repro`` of the whole graph"""
    kept: dict
    """``stage`` -> the outputs dvc.lock recorded right after ``stage`` was killed"""
    dialogue_checkpoint: dict
    """dialogue_ppo's ``training_info.json`` at its kill (the resumed run deletes it)"""


def trainer_checkpoint(repo: Path, stage: str, min_step: int):
    """Whether the HF Trainer of ``stage`` has saved a checkpoint at step >= ``min_step``."""
    def ready() -> bool:
        return any(int(p.name.split("-")[1]) >= min_step and (p / "trainer_state.json").is_file()
                   for p in (repo / "checkpoints" / stage).glob("checkpoint-*"))
    return ready


@pytest.fixture(scope="session")
def killed_build(tmp_path_factory) -> KilledBuild:
    """The second full build of the session: ``dvc repro <stage>`` SIGKILLed in turn after a checkpoint of sft
    (4 of 11 steps), reward, ppo (1 of 2 updates), grpo and dialogue_ppo, then one ``dvc repro`` of the whole
    graph. Its md5s against ``pipeline``'s prove determinism and resume equality at once."""
    root = tmp_path_factory.mktemp("killed")
    repo = copy_repo(root / "repo")
    write_params(repo, tiny_params())
    logs, kept = {}, {}
    dialogue = repo / "checkpoints/dialogue_ppo/checkpoint"
    for name, ready in (("sft", trainer_checkpoint(repo, "sft", 4)), ("reward", trainer_checkpoint(repo, "reward", 1)),
                        ("ppo", lambda: (repo / "checkpoints/ppo/checkpoint/state.json").is_file()),
                        ("grpo", trainer_checkpoint(repo, "grpo", 1)),
                        ("dialogue_ppo", lambda: (dialogue / "state.json").is_file())):
        logs[name] = repro_until(repo, ready, root / f"{name}.log", name)
        kept[name] = out_md5s(repo)
    info = json.loads((dialogue / "training_info.json").read_text())
    logs["end"] = run(["dvc", "repro"], cwd=repo).stdout
    return KilledBuild(repo, logs, kept, info)


def stage_output(log: str, name: str) -> str:
    """The part of a ``dvc repro`` log that stage ``name`` printed (empty when it did not run)."""
    parts = re.split(r"Running stage '([^']+)'", log)
    return "".join(text for stage_name, text in zip(parts[1::2], parts[2::2]) if stage_name == name)


def pipeline_copy(pipeline: BuiltPipeline, dest: Path) -> Path:
    """A copy of the built pipeline (workspace, DVC cache, git history) that a test may change."""
    return Path(shutil.copytree(pipeline.repo, dest, symlinks=True))


# Under CI a missing prerequisite (chromium, npm, ../shared, a pinned package) is a broken setup, not a reason
# to report green: the test fails. Elsewhere it is skipped with the reason.
CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing(reason: str) -> None:
    """Skip the running test for a missing prerequisite; fail it under CI=true."""
    if CI:
        pytest.fail(f"prerequisite missing under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def needs(ok: bool, reason: str):
    """Mark: the test needs a prerequisite (``ok`` says whether it is here); see ``missing``."""
    return pytest.mark.needs(ok=bool(ok), reason=reason)


def require_module(name: str):
    """``pytest.importorskip`` that fails under CI=true: every package the tests import is pinned."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as err:
        missing(f"cannot import {name}: {err}")


# Scheduling for `pytest -n N --no-loadscope-reorder` (make test). The tests that read the session's two full
# builds (the fixtures below) run on one worker, so the builds happen once; every other test runs with the rest of
# its file on one worker, so module fixtures are built once. The longest groups (measured) are queued first, so
# that no worker starts a long one after the others have run dry. The scheduler sees node ids only, so which tests
# read the builds is read from the source (a test's arguments, through fixtures of its file); the collection
# check below stops the run with one line if that reading ever disagrees with pytest's.
SHARED_BUILDS = {"pipeline", "killed_build"}
LONGEST_FIRST = ["pipeline", "test_base_model", "test_distributed", "test_preferences", "test_trackers",
                 "test_reliability", "test_dialogue", "test_scale"]


@functools.cache
def tests_reading_shared_builds(path: Path) -> frozenset[str]:
    import ast

    functions = {node.name: {a.arg for a in node.args.args} for node in ast.parse(path.read_text()).body
                 if isinstance(node, ast.FunctionDef)}
    readers, grew = set(SHARED_BUILDS), True
    while grew:  # fixtures of the file that read a build, through any chain of fixtures
        grew = False
        for name, args in functions.items():
            if not name.startswith("test_") and name not in readers and readers & args:
                readers.add(name)
                grew = True
    return frozenset(name for name, args in functions.items() if name.startswith("test_") and readers & args)


def worker_group(nodeid: str) -> str:
    path, _, rest = nodeid.partition("::")
    name = rest.split("::")[-1].split("[")[0]
    return "pipeline" if name in tests_reading_shared_builds(REPO / path) else Path(path).stem


def pytest_xdist_make_scheduler(config, log):
    # xdist's own --dist loadgroup cannot be used: it tags node ids through an attribute pytest 9 no longer reads
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return worker_group(nodeid)

    return GroupScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    strays = sorted(item.nodeid for item in items
                    if bool(SHARED_BUILDS & set(item.fixturenames)) != (worker_group(item.nodeid) == "pipeline"))
    if strays:
        raise pytest.UsageError(f"tests/conftest.py: worker_group misreads whether {strays[0]} reads the session's "
                                "shared builds; a worker would build them again or wait for them needlessly")
    if PARALLEL:
        rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
        items.sort(key=lambda item: rank.get(worker_group(item.nodeid), len(rank)))


def pytest_runtest_setup(item):
    for mark in item.iter_markers("needs"):
        if not mark.kwargs["ok"]:
            missing(mark.kwargs["reason"])


@pytest.fixture
def workdir(tmp_path):
    return tmp_path


def params_config(section: str, params: dict | None = None, **fields):
    """A config dataclass as params.yaml gives it (validated), with ``fields`` replaced.

    Config dataclasses have no defaults; tests take every value a test does not set from params.yaml too.
    """
    import dataclasses
    import tempfile

    import yaml

    from rlhfpipe.config import load_section

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "params.yaml"
        path.write_text(yaml.safe_dump(params or quick_params(), sort_keys=False))
        return dataclasses.replace(load_section(section, path), **fields)
