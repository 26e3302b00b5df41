"""Evaluation metrics against hand-computed values, and the markdown they render to."""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from conftest import params_config
from rlhfpipe.errors import PipelineError
from rlhfpipe.evaluation.metrics import (
    bootstrap_ci,
    calibration_bins,
    distinct_n,
    empathy_ratio,
    mean_compound,
    paired_win_rate,
    pairwise_accuracy,
    rank_labels,
    ranked_markdown,
    rouge_l,
    rouge_l_pairwise,
    sequence_kl,
    summary_markdown,
    win_rate,
)
from rlhfpipe.evaluation.policy import evaluate_policy, ranked_samples, respond
from rlhfpipe.rewards.empathy import vader_compound

POSITIVE = "I am so glad you reached out, you are doing great."
NEGATIVE = "This is terrible and I hate it."
NEUTRAL = "The meeting is on Tuesday at noon."

COHESION = params_config("cohesion")


# --- policy metrics -------------------------------------------------------------------------------
def test_empathy_ratio_on_hand_labelled_sentences():
    assert empathy_ratio([POSITIVE, NEGATIVE, NEUTRAL]) == pytest.approx(1 / 3)
    assert empathy_ratio([POSITIVE, POSITIVE, NEGATIVE, NEUTRAL]) == pytest.approx(2 / 4)
    assert empathy_ratio([NEUTRAL]) == 0.0


def test_mean_compound_is_the_mean_of_the_scores():
    pos, neg, neu = vader_compound([POSITIVE, NEGATIVE, NEUTRAL])
    assert mean_compound([POSITIVE, NEGATIVE, NEUTRAL]) == pytest.approx((pos + neg + neu) / 3)
    with pytest.raises(ValueError):
        mean_compound([])


def test_win_rate_counts_ties_as_half():
    assert win_rate([1, 2, 3], [1, 1, 4]) == pytest.approx((0.5 + 1 + 0) / 3)
    assert win_rate([5, 5], [1, 1]) == 1.0
    with pytest.raises(ValueError, match="lengths differ"):
        win_rate([1, 2], [1])


def test_distinct_n_by_hand():
    texts = ["the cat sat", "The cat ran"]
    # unigrams: the cat sat the cat ran -> 4 distinct of 6
    assert distinct_n(texts, 1) == pytest.approx(4 / 6)
    # bigrams: (the cat) (cat sat) (the cat) (cat ran) -> 3 distinct of 4; none spans the two texts
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)
    assert distinct_n(texts, 4) == 0.0
    assert distinct_n([], 1) == 0.0


def test_rouge_l_skips_missing_references():
    refs = ["the cat sat on the mat", None, "hello there"]
    hyps = ["the cat sat", "anything at all", "hello there"]
    # pair 1: LCS 3, precision 3/3, recall 3/6 -> F = 2/3; pair 3: identical -> 1; pair 2 skipped
    assert rouge_l_pairwise(refs[0], hyps[0]) == pytest.approx(2 / 3)
    assert rouge_l(refs, hyps) == pytest.approx((2 / 3 + 1) / 2)
    assert rouge_l([None, None], ["a", "b"]) is None


def test_sequence_kl_matches_hand_computation():
    logprobs = torch.tensor([[-0.5, -1.0], [-0.1, -2.0]])
    ref_logprobs = torch.tensor([[-0.7, -0.4], [-0.3, -0.5]])
    mask = torch.tensor([[1, 1], [1, 0]])
    # row 0: (-0.5 + 0.7) + (-1.0 + 0.4) = -0.4; row 1: (-0.1 + 0.3) + padding = 0.2
    kl = sequence_kl(logprobs, ref_logprobs, mask)
    assert kl.shape == (2,)
    assert torch.allclose(kl, torch.tensor([-0.4, 0.2]))


# --- policy evaluation on a two-token toy -----------------------------------------------------------
PAD, EOS, A, Q = 0, 1, 2, 3
NEVER = -1e4  # not -inf: the pad positions after EOS would give -inf - -inf = nan in the masked KL sum


class ToyTokenizer:
    """Every prompt word encodes as Q; a response decodes to one "a" per A token."""

    pad_token_id, eos_token_id = PAD, EOS

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        return " ".join(m["content"] for m in messages)

    def __call__(self, text, add_special_tokens):
        return {"input_ids": [Q] * len(text.split())}

    def batch_decode(self, ids, skip_special_tokens):
        return [" ".join("a" for t in row if t == A) for row in ids.tolist()]


class BigramLM(torch.nn.Module):
    """Next-token logits depend on the current token only, and only A and EOS are ever likely.

    Different rows after Q (the prompt) and after A make an off-by-one in the response positions
    change the KL, which a position-independent toy would not show.
    """

    def __init__(self, after_q: tuple[float, float], after_a: tuple[float, float]):
        super().__init__()
        self.table = torch.full((4, 4), NEVER)
        self.table[Q, A], self.table[Q, EOS] = after_q
        self.table[A, A], self.table[A, EOS] = after_a

    def forward(self, input_ids, logits_to_keep=0, **kwargs):
        logits = self.table[input_ids]
        return SimpleNamespace(logits=logits[:, -logits_to_keep:] if logits_to_keep else logits, past_key_values=None)


# (logit of A, logit of EOS): the policy says A with 2/3 after the prompt and 3/4 after A, the reference 1/5 and 1/2
POLICY = BigramLM(after_q=(math.log(2), 0.0), after_a=(math.log(3), 0.0)).eval()
REFERENCE = BigramLM(after_q=(0.0, math.log(4)), after_a=(0.0, 0.0)).eval()
TOY_PROMPTS = [[{"role": "user", "content": " ".join([f"w{i}"] * n)}]
               for i, n in enumerate((1, 3, 2, 1, 4, 2, 3, 1, 2, 5, 1, 3))]


def hand_kl(text: str, max_new_tokens: int, temperature: float) -> float:
    """k1 for a response of k A tokens, then EOS unless it hit max_new_tokens, at the sampling temperature."""
    def p_a(logit_a, logit_eos):
        return 1 / (1 + math.exp(-(logit_a - logit_eos) / temperature))

    policy_q, policy_a = p_a(math.log(2), 0), p_a(math.log(3), 0)
    ref_q, ref_a = p_a(0, math.log(4)), p_a(0, 0)
    k = len(text.split())
    if k == 0:
        return math.log((1 - policy_q) / (1 - ref_q))
    kl = math.log(policy_q / ref_q) + (k - 1) * math.log(policy_a / ref_a)
    return kl + (math.log((1 - policy_a) / (1 - ref_a)) if k < max_new_tokens else 0.0)


def test_hand_kl_by_hand():
    # "a a <eos>" at temperature 1: log(2/3 / 1/5) + log(3/4 / 1/2) + log(1/4 / 1/2)
    assert hand_kl("a a", 6, 1.0) == pytest.approx(math.log(10 / 3) + math.log(1.5) + math.log(0.5))
    assert hand_kl("", 6, 1.0) == pytest.approx(math.log((1 / 3) / (4 / 5)))
    assert hand_kl("a a a", 3, 1.0) == pytest.approx(math.log(10 / 3) + 2 * math.log(1.5))  # no EOS


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
def test_respond_kl_matches_hand_computation_on_a_two_token_toy(temperature):
    cfg = params_config("evaluate", batch_size=5, max_new_tokens=6)
    # seed 2 samples an immediate EOS, a response without EOS and some between, at both temperatures
    texts, kls = respond(POLICY, ToyTokenizer(), TOY_PROMPTS, cfg, temperature, seed=2, reference=REFERENCE)
    # greedy samples (and scores) at temperature 1
    assert kls == pytest.approx([hand_kl(t, 6, temperature or 1.0) for t in texts], abs=1e-5)
    lengths = {len(t.split()) for t in texts}
    if temperature == 0.0:
        assert lengths == {6}  # A is always likelier than EOS
    else:
        assert 0 in lengths and 6 in lengths and len(lengths) > 2  # immediate EOS, no EOS, and between


def test_respond_against_itself_or_nothing():
    cfg = params_config("evaluate", batch_size=5, max_new_tokens=6)
    texts, kls = respond(POLICY, ToyTokenizer(), TOY_PROMPTS, cfg, 1.0, seed=0, reference=POLICY)
    assert kls == [0.0] * len(TOY_PROMPTS)
    # a separate copy takes the computed path, not the "reference is policy" shortcut: the same texts, KL 0
    copied = respond(POLICY, ToyTokenizer(), TOY_PROMPTS, cfg, 1.0, seed=0, reference=copy.deepcopy(POLICY))
    assert copied[0] == texts and copied[1] == pytest.approx([0.0] * len(TOY_PROMPTS), abs=1e-6)
    assert respond(POLICY, ToyTokenizer(), TOY_PROMPTS, cfg, 1.0, seed=0) == (texts, None)
    assert respond(POLICY, ToyTokenizer(), TOY_PROMPTS, cfg, 1.0, seed=1)[0] != texts


class LengthRewardModel:
    """Scores a response by its number of words."""

    mean, std = 1.0, 2.0

    def score(self, prompts, texts):
        return torch.tensor([float(len(t.split())) for t in texts])


TOY_ROWS = [{"id": f"r{i}", "prompt": p, "reference": "a a"} for i, p in enumerate(TOY_PROMPTS)]


def test_evaluate_policy_on_the_toy_by_hand():
    cfg = params_config("evaluate", num_prompts=8, batch_size=5, max_new_tokens=6, temperature=1.0, seed=3)
    metrics, samples = evaluate_policy("ppo", POLICY, REFERENCE, ToyTokenizer(), LengthRewardModel(), TOY_ROWS, cfg, COHESION)
    assert (metrics, samples) == evaluate_policy("ppo", POLICY, REFERENCE, ToyTokenizer(), LengthRewardModel(),
                                                 TOY_ROWS, cfg, COHESION)  # deterministic
    lengths = [len(s["response"].split()) for s in samples]
    kls = [hand_kl(s["response"], 6, 1.0) for s in samples]
    assert metrics["prompts"] == len(samples) == 8
    assert [s["kl_to_sft"] for s in samples] == pytest.approx(kls, abs=1e-5)
    assert metrics["kl_to_sft"] == pytest.approx(np.mean(kls), abs=1e-5)
    assert metrics["reward_mean"] == pytest.approx(np.mean(lengths), abs=1e-5)
    assert metrics["reward_normalized_mean"] == pytest.approx((np.mean(lengths) - 1.0) / 2.0, abs=1e-5)
    assert metrics["empathy_ratio"] == 0.0  # "a a a" carries no sentiment
    # a response shorter than max_new_tokens (6 A tokens) stopped with EOS; one of 6 did not
    assert metrics["eos_rate"] == pytest.approx(np.mean([n < 6 for n in lengths]), abs=1e-5)

    # the reference plays SFT: its responses to the same prompts, with the same seed, are the baseline
    sft_metrics, sft_samples = evaluate_policy("sft", REFERENCE, REFERENCE, ToyTokenizer(), LengthRewardModel(),
                                               TOY_ROWS, cfg, COHESION)
    assert sft_metrics["kl_to_sft"] == 0.0
    computed, _ = evaluate_policy("sft", REFERENCE, copy.deepcopy(REFERENCE), ToyTokenizer(), LengthRewardModel(),
                                  TOY_ROWS, cfg, COHESION)  # not the shortcut: a copy of the reference, KL computed
    assert computed["kl_to_sft"] == pytest.approx(0.0, abs=1e-6)
    assert {k: v for k, v in computed.items() if k != "kl_to_sft"} == {
        k: v for k, v in sft_metrics.items() if k != "kl_to_sft"}
    sft_texts, _ = respond(REFERENCE, ToyTokenizer(), [s["prompt"] for s in samples], cfg, 1.0, seed=3)
    assert [s["response"] for s in sft_samples] == sft_texts
    wins = [1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(lengths, (len(t.split()) for t in sft_texts))]
    assert paired_win_rate(samples, sft_samples) == pytest.approx(np.mean(wins), abs=1e-5)
    assert paired_win_rate(sft_samples, sft_samples) == 0.5


def test_eos_rate_counts_responses_cut_at_max_new_tokens_as_not_ended():
    # two tokens at most: "a a" never emitted EOS, "", "a" did (after "a a" the budget is spent)
    cfg = params_config("evaluate", num_prompts=12, batch_size=5, max_new_tokens=2, temperature=1.0, seed=0)
    metrics, samples = evaluate_policy("ppo", POLICY, REFERENCE, ToyTokenizer(), LengthRewardModel(), TOY_ROWS, cfg,
                                       COHESION)
    lengths = [len(s["response"].split()) for s in samples]
    assert 2 in lengths and min(lengths) < 2  # both kinds sampled
    assert metrics["eos_rate"] == pytest.approx(sum(n < 2 for n in lengths) / 12, abs=1e-5)


def test_paired_win_rate_pairs_by_id_and_refuses_other_prompts():
    mine = [{"id": "b", "score": 2.0}, {"id": "a", "score": 0.0}]
    sft = [{"id": "a", "score": 1.0}, {"id": "b", "score": 2.0}]
    assert paired_win_rate(mine, sft) == pytest.approx((0.5 + 0.0) / 2)
    with pytest.raises(PipelineError, match="different prompts"):
        paired_win_rate(mine, [{"id": "a", "score": 1.0}, {"id": "c", "score": 2.0}])


def test_ranked_samples_label_each_prompts_completions():
    cfg = params_config("evaluate", ranked_prompts=4, ranked_completions=5, batch_size=7, max_new_tokens=6, seed=0)
    ranked = ranked_samples("ppo", POLICY, ToyTokenizer(), LengthRewardModel(), TOY_ROWS, cfg)
    assert len(ranked) == 4 and {row["policy"] for row in ranked} == {"ppo"}
    assert len({repr(row["prompt"]) for row in ranked}) == 4
    for row in ranked:
        scores = [c["score"] for c in row["completions"]]
        assert scores == [float(len(c["text"].split())) for c in row["completions"]]
        assert [c["label"] for c in row["completions"]] == rank_labels(scores)


# --- what DVC reruns evaluation for ---------------------------------------------------------------
REPO = Path(__file__).resolve().parents[1]


def test_evaluate_reruns_only_for_its_policy_prompts_reward_model_and_eval_params():
    declared = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["evaluate"]["do"]
    assert declared["params"] == ["runtime.num_threads", "evaluate", "cohesion"]
    assert {d for d in declared["deps"] if not d.startswith(("stages/", "rlhfpipe/"))} == {
        "data/prepared", "models/${item}", "models/sft", "models/reward"}


# --- reward-model diagnostics ---------------------------------------------------------------------
def test_rank_labels_with_and_without_ties():
    assert rank_labels([0.3, 0.9, 0.1, 0.5]) == ["MEDIUM", "BEST", "WORST", "MEDIUM"]
    # first maximum is BEST, last minimum is WORST
    assert rank_labels([0.9, 0.9, 0.1, 0.1]) == ["BEST", "MEDIUM", "MEDIUM", "WORST"]
    assert rank_labels([1.0, 1.0, 1.0]) == ["BEST", "MEDIUM", "WORST"]
    with pytest.raises(ValueError, match=">= 3"):
        rank_labels([1.0, 2.0])


def test_bootstrap_ci_is_deterministic_and_contains_the_mean():
    values = np.random.default_rng(0).normal(1.0, 2.0, size=50)
    low, high = bootstrap_ci(values, samples=500, seed=7)
    assert (low, high) == bootstrap_ci(list(values), samples=500, seed=7)
    assert (low, high) != bootstrap_ci(values, samples=500, seed=8)
    assert low < values.mean() < high
    assert bootstrap_ci([3.0, 3.0, 3.0], samples=20, seed=0) == (3.0, 3.0)
    with pytest.raises(ValueError):
        bootstrap_ci([], samples=20, seed=0)


def test_bootstrap_ci_half_widths_match_the_normal_approximation():
    values = np.random.default_rng(0).normal(1.0, 2.0, size=50)
    # alpha 0.2: the 10th/90th percentiles of the resampled means, about mean -/+ 1.2816 standard errors
    expected = 1.2816 * values.std() / math.sqrt(values.size)
    low, high = bootstrap_ci(values, samples=2000, seed=7, alpha=0.2)
    assert values.mean() - low == pytest.approx(expected, rel=0.1)
    assert high - values.mean() == pytest.approx(expected, rel=0.1)


def test_pairwise_accuracy_with_a_tie():
    assert pairwise_accuracy([2.0, 1.0, 0.5, 4.0], [1.0, 1.0, 3.0, 0.0]) == pytest.approx((1 + 0.5 + 0 + 1) / 4)


def test_calibration_bins_by_hand():
    # differences log 4, log 4, 0 -> p = 0.8, 0.8, 0.5 (outcome 1), mirrored 0.2, 0.2, 0.5 (outcome 0)
    rows = calibration_bins([math.log(4), math.log(4), 0.0], [0.0, 0.0, 0.0], bins=4)
    assert [r["bin"] for r in rows] == [0, 2, 3]  # bin 1 is empty and skipped
    assert [r["count"] for r in rows] == [2, 2, 2]
    assert [r["predicted"] for r in rows] == pytest.approx([0.2, 0.5, 0.8])
    assert [r["observed"] for r in rows] == pytest.approx([0.0, 0.5, 1.0])


def test_calibration_bins_extreme_scores_land_in_edge_bins_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows = calibration_bins([1000.0], [-1000.0], bins=4)
    assert [(r["bin"], r["predicted"], r["observed"]) for r in rows] == [(0, 0.0, 0.0), (3, 1.0, 1.0)]


# --- markdown -------------------------------------------------------------------------------------
def test_summary_markdown_table():
    summary = {"sft": {"empathy_ratio": 0.5, "rouge_l": None}, "ppo": {"empathy_ratio": 0.123456, "rouge_l": 0.25}}
    lines = summary_markdown(summary, ["empathy_ratio", "rouge_l"]).splitlines()
    assert lines[0] == "| policy | empathy_ratio | rouge_l |"
    assert lines[2] == "| sft | 0.5000 | – |"
    assert lines[3] == "| ppo | 0.1235 | 0.2500 |"
    assert len(lines) == 4


def test_ranked_markdown_orders_completions_and_summarises_labels():
    prompt = [
        {"role": "user", "content": "First message."},
        {"role": "assistant", "content": "I hear you."},
        {"role": "user", "content": "I feel\nso alone lately."},
    ]
    ranked = [
        {"prompt": prompt, "policy": "sft", "completions": [
            {"text": "ok", "score": 0.1, "label": "WORST"},
            {"text": "That sounds hard.", "score": 0.9, "label": "BEST"},
            {"text": "Tell me more.", "score": 0.5, "label": "MEDIUM"},
        ]},
        {"prompt": prompt, "policy": "ppo", "completions": [
            {"text": "a", "score": 0.2, "label": "WORST"},
            {"text": "b", "score": 0.4, "label": "MEDIUM"},
            {"text": "c", "score": 0.6, "label": "MEDIUM"},
            {"text": "d", "score": 1.0, "label": "BEST"},
        ]},
    ]
    page = ranked_markdown(ranked)
    assert "| sft | 0.9000 | 0.5000 | 0.1000 | 0.5000 |" in page
    assert "| ppo | 1.0000 | 0.5000 | 0.2000 | 0.5500 |" in page
    assert page.count("## Prompt") == 1  # both policies' rows share the prompt
    assert "> I feel so alone lately." in page
    assert "First message." not in page
    sft = page[page.index("**sft**"):page.index("**ppo**")]
    assert sft.index("BEST (0.9000): That sounds hard.") < sft.index("MEDIUM (0.5000)") < sft.index("WORST (0.1000): ok")


def test_reward_gain_in_sft_std_hand_values():
    from rlhfpipe.evaluation.metrics import reward_gain_in_sft_std

    assert reward_gain_in_sft_std(1.5, 0.5, 2.0) == pytest.approx(0.5)
    assert reward_gain_in_sft_std(0.0, 0.5, 0.25) == pytest.approx(-2.0)
    with pytest.raises(ValueError, match="std must be > 0"):
        reward_gain_in_sft_std(1.0, 0.0, 0.0)
