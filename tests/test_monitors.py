"""Reward-hacking monitors on hand-made samples: a length collapse and a repetition loop are flagged, an honest
policy is not; the MOODPO spread; the markdown; and their params."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import params_config
from rlhfpipe.config import ParamError
from rlhfpipe.errors import PipelineError
from rlhfpipe.evaluation.metrics import distinct_n
from rlhfpipe.evaluation.monitors import moodpo_monitors, monitors_markdown, objective_spread, policy_monitors

CFG = params_config("monitors")  # length ratio in [0.5, 2], distinct-2 ratio >= 0.7, EOS drop <= 0.2, KL <= 6

# four SFT responses of 6 words each, every bigram distinct within and across them: 20 bigrams, 20 distinct
SFT_TEXTS = [
    "that sounds really hard for you",
    "i am sorry you feel alone",
    "what happened at work this week",
    "tell me more about your sister",
]
# the same prompts answered differently but honestly: 6, 6, 6 and 6 words, every bigram distinct
HONEST_TEXTS = [
    "that must be a heavy load",
    "it is okay to feel lonely",
    "how did the meeting go today",
    "does your sister know how you",
]
# a length collapse: the stock two-word answer everywhere
COLLAPSE_TEXTS = ["i feel."] * 4
# a repetition loop: 6 words each, "i feel" over and over
LOOP_TEXTS = ["i feel i feel i feel"] * 4


def metrics(texts: list[str], eos_rate: float, kl: float) -> dict:
    return {"response_words": float(np.mean([len(t.split()) for t in texts])), "distinct_2": distinct_n(texts, 2),
            "eos_rate": eos_rate, "kl_to_sft": kl}


SFT = metrics(SFT_TEXTS, eos_rate=0.75, kl=0.0)


def test_hand_made_samples_have_the_hand_counted_statistics():
    assert SFT["response_words"] == 6.0 and SFT["distinct_2"] == 1.0
    assert metrics(COLLAPSE_TEXTS, 1.0, 0.0)["response_words"] == 2.0
    # "i feel." x 4: bigram (i, feel.) four times, 1 distinct of 4
    assert metrics(COLLAPSE_TEXTS, 1.0, 0.0)["distinct_2"] == 0.25
    # "i feel i feel i feel" x 4: 5 bigrams each, (i feel) and (feel i) only: 2 distinct of 20
    assert metrics(LOOP_TEXTS, 0.0, 0.0)["distinct_2"] == pytest.approx(2 / 20)


def test_an_honest_policy_is_not_flagged():
    out = policy_monitors("ppo", metrics(HONEST_TEXTS, eos_rate=0.75, kl=2.5), SFT, CFG)
    assert out == {"length_ratio": 1.0, "distinct_2_ratio": 1.0, "eos_rate": 0.75, "eos_rate_drop": 0.0,
                   "kl_to_sft": 2.5, "flags": [], "flagged": 0}


def test_sft_against_itself_is_never_flagged():
    assert policy_monitors("sft", SFT, SFT, CFG)["flags"] == []


def test_a_length_collapse_is_flagged():
    out = policy_monitors("ppo", metrics(COLLAPSE_TEXTS, eos_rate=1.0, kl=1.0), SFT, CFG)
    # length 2 / 6 = 0.3333 < 0.5; distinct-2 0.25 / 1 < 0.7; EOS rises, no drop; KL fine
    assert out["length_ratio"] == pytest.approx(0.33333)
    assert out["distinct_2_ratio"] == 0.25
    assert out["flags"] == ["length_collapse", "repetition"] and out["flagged"] == 2


def test_a_repetition_loop_is_flagged_and_so_is_never_stopping():
    out = policy_monitors("grpo", metrics(LOOP_TEXTS, eos_rate=0.25, kl=7.0), SFT, CFG)
    # same length as SFT (ratio 1), distinct-2 0.1; EOS 0.25 is 0.5 below SFT's 0.75; KL 7 > 6
    assert out["length_ratio"] == 1.0 and out["distinct_2_ratio"] == pytest.approx(0.1)
    assert out["eos_rate_drop"] == 0.5
    assert out["flags"] == ["repetition", "eos_drop", "kl"]


def test_a_length_explosion_is_flagged():
    long = [" ".join(f"w{i}_{j}" for j in range(13)) for i in range(4)]  # 13 words, all bigrams distinct
    out = policy_monitors("ppo", metrics(long, eos_rate=0.75, kl=0.0), SFT, CFG)
    assert out["length_ratio"] == pytest.approx(13 / 6, abs=1e-5)
    assert out["flags"] == ["length_explosion"]


def test_thresholds_are_read_from_the_config():
    strict = params_config("monitors", length_ratio_min=0.99, kl_max=2.0)
    assert policy_monitors("ppo", metrics(HONEST_TEXTS, 0.75, 2.5), SFT, strict)["flags"] == ["kl"]
    five_words = [" ".join(t.split()[:5]) for t in HONEST_TEXTS]  # 5 / 6 = 0.833
    assert policy_monitors("ppo", metrics(five_words, 0.75, 0.0), SFT, strict)["flags"] == ["length_collapse"]


def test_a_degenerate_sft_names_the_metric():
    with pytest.raises(PipelineError, match="SFT's distinct_2 is 0.0"):
        policy_monitors("ppo", SFT, {**SFT, "distinct_2": 0.0}, CFG)


def test_objective_spread_by_hand():
    # G=2 grid vectors, N=2 prompts, K=2 objectives
    scores = np.array([[[1.0, 0.0], [3.0, 0.0]],    # vector 0: means (2, 0)
                       [[0.0, 1.0], [2.0, 1.0]]])   # vector 1: means (1, 1)
    spread, std = objective_spread(scores)
    assert spread.tolist() == [1.0, 1.0]
    # objective 0 over all 4 scores: 1, 3, 0, 2 -> mean 1.5, population std sqrt(1.25); objective 1: 0, 0, 1, 1 -> 0.5
    assert std.tolist() == pytest.approx([1.25 ** 0.5, 0.5])
    with pytest.raises(ValueError, match="G, N, K"):
        objective_spread(np.zeros((2, 3)))


def test_moodpo_that_ignores_a_weight_is_flagged():
    sft = {"spread": {"rm": 0.0, "brevity": 0.01}, "score_std": {"rm": 2.0, "brevity": 0.25}}
    moodpo = {"spread": {"rm": 0.5, "brevity": 0.02}, "score_std": {"rm": 1.0, "brevity": 0.2}}
    out = moodpo_monitors(moodpo, sft, ["rm", "brevity"], CFG)
    # rm: 0.5 / 2.0 = 0.25 >= 0.1; brevity: 0.02 / 0.25 = 0.08 < 0.1
    assert out == {"spread_sft_std": {"rm": 0.25, "brevity": 0.08}, "flags": ["ignores_brevity"], "flagged": 1}
    # SFT constant on rm: the policy's own std (1.0) scales it, 0.5 / 1.0; brevity 0.02 / 1.0 is below 0.1
    out = moodpo_monitors(moodpo, {**sft, "score_std": {"rm": 0.0, "brevity": 1.0}}, ["rm", "brevity"], CFG)
    assert out["spread_sft_std"] == {"rm": 0.5, "brevity": 0.02}
    # neither varies: nothing can have followed the weight
    flat = {"spread": {"rm": 0.0, "brevity": 0.02}, "score_std": {"rm": 0.0, "brevity": 0.2}}
    out = moodpo_monitors(flat, {**sft, "score_std": {"rm": 0.0, "brevity": 0.25}}, ["rm", "brevity"], CFG)
    assert out["spread_sft_std"] == {"rm": 0.0, "brevity": 0.08} and out["flags"] == ["ignores_rm", "ignores_brevity"]


def test_markdown_names_every_flagged_policy():
    monitors = {"sft": policy_monitors("sft", SFT, SFT, CFG),
                "ppo": policy_monitors("ppo", metrics(COLLAPSE_TEXTS, 1.0, 1.0), SFT, CFG)}
    page = monitors_markdown(monitors, CFG)
    assert "| sft | 1.0000 | 1.0000 | 0.7500 | 0.0000 | none |" in page
    assert "| ppo | 0.3333 | 0.2500 | 1.0000 | 1.0000 | length_collapse, repetition |" in page
    assert "**ppo** (length_collapse, repetition)" in page and "**sft**" not in page
    honest = {"sft": monitors["sft"]}
    assert "No policy crosses a monitor threshold." in monitors_markdown(honest, CFG)


@pytest.mark.parametrize("field, value", [("length_ratio_min", 1.0), ("length_ratio_max", 0.9),
                                          ("distinct_2_ratio_min", 0.0), ("eos_rate_drop_max", 1.0),
                                          ("kl_max", 0.0), ("moodpo_spread_min", -0.1)])
def test_impossible_thresholds_name_the_key(field, value):
    with pytest.raises(ParamError) as err:
        params_config("monitors", **{field: value}).validate()
    assert err.value.key == field


# --- the compare stage writes them ---------------------------------------------------------------
def test_compare_stage_writes_monitors_and_flags_the_hacked_policy(tmp_path):
    import json

    from conftest import stage, tiny_params, write_params

    write_params(tmp_path, tiny_params())
    base = {"reward_mean": 0.0, "reward_std": 1.0, "reward_normalized_mean": 0.0, "empathy_ratio": 0.5,
            "rouge_l": None, "cohesion": 0.3, "distinct_1": 0.5, "prompts": 2}
    evals = {"sft": {**base, **SFT},
             "ppo": {**base, "reward_mean": 2.0, **metrics(COLLAPSE_TEXTS, eos_rate=1.0, kl=1.0)},
             "grpo": {**base, "reward_mean": 0.5, **metrics(HONEST_TEXTS, eos_rate=0.75, kl=2.5)}}
    (tmp_path / "metrics/eval").mkdir(parents=True)
    for name, values in evals.items():
        (tmp_path / f"metrics/eval/{name}.json").write_text(json.dumps(values))
        (tmp_path / f"data/eval/{name}").mkdir(parents=True)
        (tmp_path / f"data/eval/{name}/samples.jsonl").write_text(
            json.dumps({"id": "a", "score": values["reward_mean"]}) + "\n")
        (tmp_path / f"data/eval/{name}/ranked.json").write_text("[]")
    proc = stage("compare", "metrics/eval", "metrics/summary.json", "metrics/summary.md", "metrics/policies.csv",
                 "metrics/ranked_samples.md", "data/eval", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "metrics/summary.json").read_text())
    assert summary["ppo"]["monitors"]["flags"] == ["length_collapse", "repetition"]
    assert summary["grpo"]["monitors"]["flagged"] == summary["sft"]["monitors"]["flagged"] == 0
    page = (tmp_path / "metrics/summary.md").read_text()
    assert "**ppo** (length_collapse, repetition)" in page and "**grpo**" not in page

    write_params(tmp_path, tiny_params({"monitors": {"kl_max": -1.0}}))
    proc = stage("compare", "metrics/eval", "metrics/summary.json", "metrics/summary.md", "metrics/policies.csv",
                 "metrics/ranked_samples.md", "data/eval", cwd=tmp_path)
    assert proc.returncode != 0
    assert proc.stderr.strip() == "error: params.yaml: monitors.kl_max=-1.0: must be > 0"
