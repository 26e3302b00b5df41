"""Several processes run the same training as one: the launcher param, the process-group helpers, and
SFT, reward and PPO under ``torchrun --nproc_per_node 2`` (gloo, on this CPU) against one process."""

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import REPO, run, save_local_pretrained, stage, tiny_params, write_params

TORCHRUN = str(Path(sys.executable).parent / "torchrun")


# --------------------------------------------------------------------------------------------------
# Launcher, accelerate configs and the preset
# --------------------------------------------------------------------------------------------------
def test_training_stages_start_with_the_launcher_and_depend_on_its_configs(tmp_path, monkeypatch):
    from dvc.repo import Repo

    monkeypatch.chdir(tmp_path)  # DVC reads the vars file (params.yaml) relative to the working directory

    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["runtime"]["launcher"] = "accelerate launch --config_file configs/accelerate/multi_gpu.yaml"
    write_params(tmp_path, params)
    run(["dvc", "init", "--no-scm", "-q"], cwd=tmp_path)
    repo = Repo(str(tmp_path))
    for name in ("sft", "reward", "ppo"):
        (st,) = repo.stage.collect(name)
        assert st.cmd.startswith(f"accelerate launch --config_file configs/accelerate/multi_gpu.yaml stages/{name}.py ")
        assert "configs/accelerate" in [str(d.def_path) for d in st.deps]
    for name in ("corpus", "preferences", "evaluate@sft"):
        (st,) = repo.stage.collect(name)
        assert st.cmd.startswith("python stages/")


def test_accelerate_configs_parse_and_name_their_deepspeed_files():
    from accelerate.commands.config.config_args import load_config_from_file

    names = sorted(p.stem for p in (REPO / "configs/accelerate").glob("*.yaml"))
    assert names == ["cpu", "multi_gpu", "single_gpu", "zero2", "zero3"]
    for name in names:
        config = load_config_from_file(str(REPO / "configs/accelerate" / f"{name}.yaml"))
        if name.startswith("zero"):
            ds_file = REPO / config.deepspeed_config["deepspeed_config_file"]
            assert json.loads(ds_file.read_text())["zero_optimization"]["stage"] == int(name[-1])


def test_smollm2_preset_applies_through_dvc_overrides_and_validates(tmp_path):
    from dvc.utils.hydra import apply_overrides

    from rlhfpipe.config import SECTIONS, load_section
    from rlhfpipe.presets import overrides

    args = overrides(REPO / "configs/presets/smollm2-135m.yaml", REPO / "params.yaml")
    assert args[0] == "-S" and len(args) % 2 == 0
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    apply_overrides(tmp_path / "params.yaml", args[1::2])  # what `dvc exp run -S ...` does to params.yaml
    cfg = {name: load_section(name, tmp_path / "params.yaml") for name in SECTIONS}
    assert cfg["model"].name_or_path == "HuggingFaceTB/SmolLM2-135M-SFT-Only"
    assert cfg["data"].source == "orca_dpo" and cfg["preferences"].strategy == "native"
    for section in ("sft", "reward", "ppo"):
        lora = cfg[section].lora
        assert (lora.enabled, lora.r, lora.alpha) == (True, 16, 32)
    assert [t.name for t in cfg["ppo"].rewards] == ["reward_model"]
    assert cfg["ppo"].learning_rate == 5e-05  # DVC writes it as 5e-05, a string to a YAML 1.1 reader


# --------------------------------------------------------------------------------------------------
# Process-group helpers, in two real gloo processes
# --------------------------------------------------------------------------------------------------
def _rollout(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(8, 6, generator=g)
    lengths = torch.tensor([6, 1, 3, 6, 2, 5, 4, 6])  # uneven token counts per row and per process
    mask = (torch.arange(6)[None, :] < lengths[:, None]).long()
    return x, mask


def _helpers_worker(rank: int, store: str, out_dir: str) -> None:
    import torch.distributed as dist

    from rlhfpipe import distributed
    from rlhfpipe.config import ParamError
    from rlhfpipe.training.ppo_math import masked_mean_var_reduced, masked_whiten

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    x, mask = _rollout()
    rows = slice(4 * rank, 4 * rank + 4)
    mine, my_mask = x[rows], mask[rows]
    param = torch.nn.Parameter(torch.zeros(3))
    param.grad = torch.full((3,), float(rank + 1))
    unused, partial = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    if rank == 1:
        partial.grad = torch.full((2,), 4.0)
    distributed.average_gradients([unused, param, partial])
    try:
        distributed.per_process(15, "sft.batch_size")
        error = ""
    except ParamError as err:
        error = str(err)
    result = {
        "whitened": masked_whiten(mine, my_mask, all_reduce_sum=distributed.all_reduce_sum).tolist(),
        "var": float(masked_mean_var_reduced(mine, my_mask, distributed.all_reduce_sum)[1]),
        "mean": distributed.mean(mine.sum(1)),
        "token_mean": distributed.average(
            float((mine * my_mask).sum() / my_mask.sum()) * distributed.share(my_mask.sum())),
        "grad": param.grad.tolist(),
        "unused_grad": None if unused.grad is None else unused.grad.tolist(),
        "partial_grad": partial.grad.tolist(),
        "gathered": [t.tolist() for t in distributed.all_gather(torch.tensor([rank]))],
        "per_process": distributed.per_process(16, "sft.batch_size"),
        "error": error,
    }
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


def test_process_group_helpers_over_two_processes_match_one(tmp_path):
    from rlhfpipe.training.ppo_math import masked_var, masked_whiten

    torch.multiprocessing.spawn(_helpers_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    x, mask = _rollout()
    whitened = torch.tensor(ranks[0]["whitened"] + ranks[1]["whitened"])
    torch.testing.assert_close(whitened, masked_whiten(x, mask), rtol=1e-5, atol=1e-6)
    for r in ranks:
        assert r["var"] == pytest.approx(float(masked_var(x, mask)), rel=1e-5)
        assert r["mean"] == pytest.approx(float(x.sum(1).mean()), rel=1e-6)
        assert r["token_mean"] == pytest.approx(float((x * mask).sum() / mask.sum()), rel=1e-6)
        assert r["grad"] == [1.5, 1.5, 1.5]
        assert r["unused_grad"] is None  # reached by no process: the optimizer skips it, as with one process
        assert r["partial_grad"] == [2.0, 2.0]  # (0 + 4) / 2
        assert r["gathered"] == [[0], [1]]
        assert r["per_process"] == 8
        assert r["error"] == "params.yaml: sft.batch_size=15: must be divisible by the number of processes (2)"


def test_one_process_whitening_is_bit_for_bit_the_pure_function():
    from rlhfpipe.training.ppo_math import masked_mean_var_reduced, masked_var, masked_whiten

    x, mask = _rollout(3)
    for shift_mean in (True, False):
        assert torch.equal(masked_whiten(x, mask, shift_mean=shift_mean, all_reduce_sum=lambda t: t),
                           masked_whiten(x, mask, shift_mean=shift_mean))
    assert torch.equal(masked_mean_var_reduced(x, mask, lambda t: t)[1], masked_var(x, mask))


# --------------------------------------------------------------------------------------------------
# The real stages: one process against two, on a local pretrained model with LoRA everywhere
# --------------------------------------------------------------------------------------------------
LORA = {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
GLOBAL_BATCH = 16

# Two processes see the same global batches in the same order, so the runs differ only by float
# summation order (two half-batch gradients averaged instead of one full-batch gradient).
TOLERANCE = dict(rel=2e-3, abs=2e-4)


def torchrun(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    # --standalone picks a free rendezvous port, so concurrent test runs do not collide
    return run([TORCHRUN, "--standalone", "--nproc_per_node", "2", str(REPO / "stages" / f"{name}.py"), *args],
               cwd=cwd, check=False)


def trim_jsonl(path: Path, multiple: int) -> None:
    """Keep a multiple of the global batch, so neither run has a partial last batch (accelerate pads
    the last batch of each process with repeated examples, one process does not)."""
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:len(lines) // multiple * multiple]))


def both(name: str, root: Path, inputs: list[str], outputs: list[str]) -> None:
    """Run a stage with one process into ``one/`` and with two into ``two/``; outputs keep their relative paths."""
    for tag, launch in (("one", stage), ("two", torchrun)):
        proc = launch(name, *inputs, *[f"{tag}/{o}" for o in outputs], cwd=root)
        assert proc.returncode == 0, f"{tag}: {proc.stderr[-3000:]}"
    assert not (root / "checkpoints" / name).exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """SFT, preferences (one process) and reward, each trained once with one process and once with two."""
    root = tmp_path_factory.mktemp("distributed")
    save_local_pretrained(root / "local_model")
    write_params(root, tiny_params({
        # one thread per process: two processes on two cores, and the same arithmetic in both runs
        "runtime": {"num_threads": 1},
        "model": {"name_or_path": str(root / "local_model")},
        "sft": {"epochs": 1.0, "batch_size": GLOBAL_BATCH, "learning_rate": 0.003, "lora": LORA},
        "preferences": {"strategy": "shuffled", "max_prompts": 700},
        # sft_sample_reward_mean below is the mean score of norm_prompts samples: 256 keeps the float noise
        # of two processes inside TOLERANCE
        "reward": {"epochs": 1.0, "batch_size": GLOBAL_BATCH, "bootstrap_samples": 50, "norm_prompts": 256, "lora": LORA},
        # adaptive KL and reward whitening use statistics gathered over processes
        "ppo": {"total_episodes": 2 * GLOBAL_BATCH, "batch_size": GLOBAL_BATCH, "mini_batches": 2, "grad_accum": 2,
                "ppo_epochs": 1, "max_new_tokens": 12, "adaptive_kl": True, "kl_horizon": 100,
                "whiten_rewards": True, "save_every": 0.5, "lora": LORA},
    }))
    for name, *args in (("corpus", "data/corpus/corpus.jsonl"), ("prepare", "data/prepared", "metrics/data.json"),
                        ("base_model", "data/prepared", "models/base")):
        proc = stage(name, *args, cwd=root)
        assert proc.returncode == 0, proc.stderr[-2000:]
    trim_jsonl(root / "data/prepared/sft_train.jsonl", GLOBAL_BATCH)
    both("sft", root, ["data/prepared", "models/base"], ["models/sft", "metrics/sft.json", "metrics/train/sft"])
    proc = stage("preferences", "data/prepared", "one/models/sft", "data/preferences", "metrics/preferences.json",
                 cwd=root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    trim_jsonl(root / "data/preferences/train.jsonl", GLOBAL_BATCH)
    both("reward", root, ["data/prepared", "data/preferences", "one/models/sft"],
         ["models/reward", "metrics/reward.json", "metrics/reward_calibration.json", "metrics/train/reward"])
    return root


def read_json(path: Path):
    return json.loads(path.read_text())


def assert_close_metrics(one: dict, two: dict) -> None:
    assert one.keys() == two.keys()
    for key in one:
        if isinstance(one[key], (int, float)):
            assert two[key] == pytest.approx(one[key], **TOLERANCE), key


def assert_close_weights(a: dict, b: dict, learning_rate: float) -> None:
    """Within one optimizer step: Adam's normalised steps turn float noise on coordinates whose gradient is
    nearly zero into differences up to the learning rate, whatever the gradient's scale."""
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=learning_rate, msg=key)


def assert_written_once(tree: Path) -> None:
    """No leftovers of a second writer: no temporary or moved-aside siblings."""
    assert not [p for p in tree.rglob(".*") if p.name.endswith((".tmp", ".old"))]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sft", "reward"])
def test_trl_trainers_with_two_processes_match_one(trained, name):
    from safetensors.torch import load_file

    one, two = (read_json(trained / tag / "metrics" / f"{name}.json") for tag in ("one", "two"))
    assert one["steps"] == two["steps"] > 0
    assert_close_metrics(one, two)
    lr = yaml.safe_load((trained / "params.yaml").read_text())[name]["learning_rate"]
    assert_close_weights(*(load_file(trained / tag / "models" / name / "model.safetensors") for tag in ("one", "two")),
                         lr)
    assert not (trained / "one/models" / name / "adapter_config.json").exists()  # the LoRA adapter was merged
    assert_written_once(trained / "two")


@pytest.mark.slow
def test_ppo_stage_with_two_processes_writes_once(trained):
    """At the rollout temperature each process samples its slice with its own generator, so the two runs agree
    in distribution, not number for number; test_train_ppo_with_two_processes_matches_one compares numbers."""
    both("ppo", trained, ["data/prepared", "one/models/sft", "one/models/reward"],
         ["models/ppo", "metrics/ppo.json", "metrics/train/ppo", "metrics/ppo_training.png"])
    one, two = (read_json(trained / tag / "metrics/ppo.json") for tag in ("one", "two"))
    assert one.keys() == two.keys() and one["updates"] == two["updates"] == 2
    from safetensors.torch import load_file

    sft = load_file(trained / "one/models/sft/model.safetensors")
    for tag in ("one", "two"):
        policy = load_file(trained / tag / "models/ppo/model.safetensors")
        assert len(policy.keys() & sft.keys()) > 4
        assert any(not torch.equal(policy[k], sft[k]) for k in policy.keys() & sft.keys())  # two updates moved it
        assert not (trained / tag / "models/ppo/adapter_config.json").exists()
    assert_written_once(trained / "two")


def greedy(model, input_ids, attention_mask, *, max_new_tokens, temperature, eos_token_id, pad_token_id,
           generator=None):
    """Rollouts that do not depend on how the batch is split: the argmax, with its log-prob at temperature 1."""
    from rlhfpipe.models.generation import sample

    return sample(model, input_ids, attention_mask, max_new_tokens=max_new_tokens, temperature=0.0,
                  eos_token_id=eos_token_id, pad_token_id=pad_token_id, generator=generator)


def train_greedy_ppo(root: Path, checkpoints: Path) -> tuple[list[dict], dict]:
    """train_ppo on the trained SFT and reward models with greedy rollouts: (history, policy weights)."""
    import rlhfpipe.training.ppo as ppo
    from rlhfpipe.config import load_section
    from rlhfpipe.io import read_jsonl
    from rlhfpipe.models.loading import load_tokenizer
    from rlhfpipe.rewards.registry import RewardRegistry
    from rlhfpipe.rewards.reward_model import RewardModel
    from rlhfpipe.training.common import NullLive
    from rlhfpipe.training.ppo import build_models

    torch.manual_seed(0)
    # One mini-batch per epoch: with several, one process shuffles the whole rollout into mini-batches while
    # each of two processes shuffles its own half, so the mini-batches (not their statistics) differ.
    cfg = dataclasses.replace(load_section("ppo", root / "params.yaml"), mini_batches=1, grad_accum=1, ppo_epochs=2)
    sft, reward = str(root / "one/models/sft"), str(root / "one/models/reward")
    tokenizer = load_tokenizer(sft)
    models = build_models(cfg, sft, reward, tokenizer, torch.device("cpu"))
    registry = RewardRegistry(RewardModel(reward), normalize_reward_model=cfg.normalize_rewards,
                              length_floor_fraction=cfg.length_floor)
    prompts = [r["prompt"] for r in read_jsonl(root / "data/prepared/prompts_train.jsonl")]
    state = ppo.train_ppo(cfg, models, tokenizer, prompts, registry, NullLive(), checkpoints)
    policy = models.policy.merge_and_unload()
    return state.history, {k: v.detach().clone() for k, v in policy.state_dict().items()}


def _ppo_worker(rank: int, store: str, root: str, out: str) -> None:
    import torch.distributed as dist
    from safetensors.torch import save_file

    import rlhfpipe.training.ppo as ppo

    ppo.sample = greedy  # this process only
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    history, weights = train_greedy_ppo(Path(root), Path(out) / "checkpoints")
    if rank == 0:
        (Path(out) / "history.json").write_text(json.dumps(history))
        save_file({k: v.contiguous() for k, v in weights.items()}, Path(out) / "policy.safetensors")
    dist.destroy_process_group()


@pytest.mark.slow
def test_train_ppo_with_two_processes_matches_one(trained, tmp_path, monkeypatch):
    """Our PPO loop with greedy rollouts, so both runs answer the same prompts the same way: every logged
    curve (losses on globally whitened advantages, explained variance, gathered KL driving the adaptive
    controller) and the final policy must agree."""
    from safetensors.torch import load_file

    import rlhfpipe.training.ppo as ppo

    threads = torch.get_num_threads()
    monkeypatch.setattr(ppo, "sample", greedy)  # raises if train_ppo no longer samples through this name
    torch.set_num_threads(1)
    try:
        history_one, weights_one = train_greedy_ppo(trained, tmp_path / "one")
    finally:
        torch.set_num_threads(threads)
    torch.multiprocessing.spawn(_ppo_worker, args=(str(tmp_path / "store"), str(trained), str(tmp_path)), nprocs=2)
    history_two = read_json(tmp_path / "history.json")
    assert len(history_one) == len(history_two) == 2
    # the adaptive controller moved from its start (params' ppo.kl_coef), on the gathered KL
    start = yaml.safe_load((trained / "params.yaml").read_text())["ppo"]["kl_coef"]
    assert history_one[0]["objective/kl_coef"] == start and history_one[-1]["objective/kl_coef"] != start
    for row_one, row_two in zip(history_one, history_two):
        assert_close_metrics(row_one, row_two)
    lr = yaml.safe_load((trained / "params.yaml").read_text())["ppo"]["learning_rate"]
    assert_close_weights(weights_one, load_file(tmp_path / "policy.safetensors"), lr)
