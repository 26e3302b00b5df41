"""MOODPO: weights, the weight instruction, the weighted reward, hypervolume, params checks; one slow e2e run."""

import csv
import dataclasses
import itertools
import json
import math
import re

import numpy as np
import pytest
import torch
import yaml

from conftest import REPO, params_config, pipeline_copy, quick_params, run, save_local_pretrained, write_params
from rlhfpipe.config import ParamError, load_section
from rlhfpipe.errors import PipelineError
from rlhfpipe.moodpo.weights import (dpo_loss, format_instruction, hypervolume, parse_instruction, responsiveness,
                                     mirrored_pairs, round_to_units, sample_weights, shared_pairs, weighted_reward, with_instruction,
                                     without_instruction)
from rlhfpipe.moodpo.training import load_prompts, objective_scores, weighted_prompts

NAMES = ["reward_model", "empathy", "brevity"]


def test_dirichlet_sampling_is_reproducible_with_the_seed():
    a, b, c = sample_weights(200, 3, 1.0, seed=7), sample_weights(200, 3, 1.0, seed=7), sample_weights(200, 3, 1.0, seed=8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.shape == (200, 3) and (a >= 0).all()
    assert np.allclose(a.sum(1), 1.0) and np.allclose(a * 10, np.round(a * 10))


def test_rounding_keeps_the_sum_at_one():
    assert round_to_units(np.array([[1 / 3, 1 / 3, 1 / 3]])).tolist() == [[0.4, 0.3, 0.3]]
    assert round_to_units(np.array([[0.05, 0.94, 0.01]])).tolist() == [[0.1, 0.9, 0.0]]


def test_weight_instruction_round_trips():
    assert format_instruction(NAMES, [0.6, 0.3, 0.1]) == "weights: reward_model 0.6 empathy 0.3 brevity 0.1"
    for w in sample_weights(50, 3, 0.5, seed=0):
        assert parse_instruction(format_instruction(NAMES, w), NAMES) == w.tolist()
    with pytest.raises(PipelineError, match="not a weight instruction"):
        parse_instruction("weights: empathy 0.3 reward_model 0.6 brevity 0.1", NAMES)  # another order


def test_instruction_sits_before_the_latest_message_and_comes_off_again():
    prompt = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    shown = with_instruction(prompt, NAMES, [0.2, 0.3, 0.5])
    assert shown[2] == {"role": "system", "content": "weights: reward_model 0.2 empathy 0.3 brevity 0.5"}
    assert shown[-1] == prompt[-1] and without_instruction(shown) == prompt


def test_weighted_reward_on_hand_made_scores():
    scores = torch.tensor([[-1.0, 0.5, 0.2], [2.0, -0.5, 1.0]])  # reward model z, compound, brevity
    weights = torch.tensor([[0.6, 0.3, 0.1], [0.0, 0.0, 1.0]])
    assert torch.allclose(weighted_reward(scores, weights), torch.tensor([-0.6 + 0.15 + 0.02, 1.0]))


def test_hypervolume():
    ref = np.zeros(3)
    assert hypervolume(np.array([[1.0, 2.0, 3.0]]), ref) == pytest.approx(6.0)
    # two boxes overlap in a 1 x 1 x 1 corner: 2 + 2 - 1
    assert hypervolume(np.array([[1.0, 2.0, 1.0], [2.0, 1.0, 1.0]]), ref) == pytest.approx(3.0)
    assert hypervolume(np.array([[1.0, 1.0, -1.0]]), ref) == 0.0  # below the reference in one objective
    assert hypervolume(np.array([[1.0, 1.0, 1.0], [0.5, 0.5, 0.5]]), ref) == pytest.approx(1.0)  # dominated point


def test_responsiveness_compares_highest_and_lowest_weight():
    grid = np.array([[0.8, 0.2], [0.2, 0.8], [0.5, 0.5]])
    means = np.array([[1.0, 0.0], [0.0, 1.0], [9.0, 9.0]])  # the middle vector counts for neither
    scores = np.repeat(means[:, None, :], 4, axis=1)  # four prompts, each scored as the mean
    checks = responsiveness(grid, scores, ["a", "b"])
    assert checks["a"] == {"high": 1.0, "low": 0.0, "responds": True, "difference_ci95": [1.0, 1.0],
                           "significant": True}
    assert checks["b"]["responds"] and checks["b"]["significant"]


def test_responsiveness_flags_a_noise_level_difference_as_not_significant():
    grid = np.array([[0.8, 0.2], [0.2, 0.8]])
    # per prompt, high - low for objective a: +1, -1, +1, -0.9 -> mean +0.025 > 0, interval spans 0
    a_high, a_low = np.array([1.0, 0.0, 1.0, 0.0]), np.array([0.0, 1.0, 0.0, 0.9])
    scores = np.stack([np.stack([a_high, np.zeros(4)], 1), np.stack([a_low, np.zeros(4)], 1)])
    check = responsiveness(grid, scores, ["a", "b"])["a"]
    assert check["responds"] and not check["significant"]
    assert check["difference_ci95"][0] < 0 < check["difference_ci95"][1]


def test_weighted_prompts_repeat_each_prompt_with_its_own_weights():

    prompts = [[{"role": "user", "content": f"p{i}"}] for i in range(5)]
    ds = weighted_prompts(prompts, NAMES, 1.0, 2, dataclasses.replace(params_config("moodpo").iteration_1, steps=3, batch_size=4, seed=0))
    assert len(ds) == 12
    users = [row["prompt"][-1]["content"] for row in ds]
    assert users[0::2] == users[1::2]  # copies sit side by side, so they share a batch
    for row in ds:
        assert parse_instruction(row["prompt"][0]["content"], NAMES) == row["weights"]


class FakeRegistry:
    def score(self, name, prompts, responses):
        assert all(m["role"] != "system" for p in prompts for m in p)  # objectives never see the instruction
        return torch.tensor([float(len(r)) if name == "brevity" else 0.0 for r in responses])


def test_objectives_score_the_prompt_without_its_instruction():
    prompts = [with_instruction([{"role": "user", "content": "x"}], NAMES, w) for w in ([0, 0, 1.0], [1.0, 0, 0])]
    scores = objective_scores(FakeRegistry(), NAMES, prompts, ["a", "abc"])
    assert scores.tolist() == [[0.0, 0.0, 1.0], [0.0, 0.0, 3.0]]


def test_shared_pairs_rank_the_same_samples_under_each_vector():
    # one prompt, three samples: a long warm answer, a short cold one, an empty one that never ends
    scores = torch.tensor([[[1.0, 0.8, 0.1], [0.2, -0.2, 0.9], [0.0, 0.0, 1.0]]])
    weights = torch.tensor([[[0.8, 0.1, 0.1], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1]]])
    penalty = torch.tensor([[0.0, 0.0, 1.0]])
    chosen, rejected, margin = shared_pairs(scores, weights, penalty)
    # rewards: vector 0 -> 0.89, 0.23, -0.9; vector 1 -> 0.26, 0.72, -0.2; vector 2 -> 0.75, -0.05, -0.9
    assert chosen.tolist() == [[0, 1, 0]] and rejected.tolist() == [[2, 2, 2]]
    assert margin[0].tolist() == pytest.approx([1.79, 0.92, 1.65])
    # without the penalty, brevity's vector turns the pair of the first two samples around
    chosen, rejected, _ = shared_pairs(scores[:, :2], weights[:, :2], torch.zeros(1, 2))
    assert chosen.tolist() == [[0, 1]] and rejected.tolist() == [[1, 0]]


def test_shared_pairs_give_no_pair_when_every_sample_ties():
    chosen, rejected, margin = shared_pairs(torch.ones(2, 3, 2), torch.full((2, 3, 2), 0.5), torch.zeros(2, 3))
    assert (margin == 0).all()


def test_mirrored_pairs_show_the_most_disputed_pair_under_every_vector():
    # the shared_pairs example: samples 0 and 1 are the only pair two vectors order in opposite ways
    scores = torch.tensor([[[1.0, 0.8, 0.1], [0.2, -0.2, 0.9], [0.0, 0.0, 1.0]]])
    weights = torch.tensor([[[0.8, 0.1, 0.1], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1]]])
    chosen, rejected, margin = mirrored_pairs(scores, weights, torch.tensor([[0.0, 0.0, 1.0]]))
    # sample 0 minus sample 1: 0.89 - 0.23, 0.26 - 0.72, 0.75 - (-0.05); every vector prefers both to sample 2
    assert chosen.tolist() == [[0, 1, 0]] and rejected.tolist() == [[1, 0, 1]]
    assert margin[0].tolist() == pytest.approx([0.66, 0.46, 0.80])


def test_mirrored_pairs_pick_the_pair_of_largest_disagreement_per_prompt():
    # two objectives, two vectors (all on one, all on the other), four samples
    scores = torch.tensor([[[0.0, 0.0], [1.0, 0.2], [0.1, 0.9], [0.6, 0.5]]])
    weights = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]])
    chosen, rejected, margin = mirrored_pairs(scores, weights, torch.zeros(1, 4))
    # samples 1 and 2: the first objective prefers 1 by 0.9, the second prefers 2 by 0.7 (disagreement 0.7);
    # every other pair is disputed by at most 0.4
    assert chosen.tolist() == [[1, 2, 1, 2]] and rejected.tolist() == [[2, 1, 2, 1]]
    assert margin[0].tolist() == pytest.approx([0.9, 0.7, 0.9, 0.7])


def test_mirrored_pairs_give_no_pair_when_every_vector_orders_alike():
    # sample 0 beats sample 1 on both objectives: no vector prefers 1, so there is nothing to mirror
    scores = torch.tensor([[[1.0, 1.0], [0.0, 0.5]], [[0.3, 0.3], [0.3, 0.3]]])
    weights = torch.tensor([[[0.9, 0.1], [0.1, 0.9]], [[0.5, 0.5], [0.2, 0.8]]])
    _, _, margin = mirrored_pairs(scores, weights, torch.zeros(2, 2))
    assert (margin == 0).all()


def test_dpo_loss_on_hand_computed_values():
    # beta 0.5, chosen log-ratio -1 - (-2) = 1, rejected log-ratio -3 - (-2) = -1: -log sigmoid(0.5 * 2)
    loss = dpo_loss(torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-2.0]), 0.5)
    assert loss.item() == pytest.approx(-math.log(1 / (1 + math.exp(-1.0))))
    # a policy equal to its reference: log 2 whatever the samples
    assert dpo_loss(torch.tensor([-5.0]), torch.tensor([-1.0]), torch.tensor([-5.0]), torch.tensor([-1.0]), 0.1).item() \
        == pytest.approx(math.log(2))


def test_prompts_from_a_csv_column(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("id,text\n1,I feel low\n2,Work is hard\n")
    assert load_prompts(str(path), "text") == [[{"role": "user", "content": "I feel low"}],
                                               [{"role": "user", "content": "Work is hard"}]]
    with pytest.raises(PipelineError, match=r"p\.csv:2: missing column 'prompt' \(moodpo.prompt_column\)"):
        load_prompts(str(path), "prompt")


@pytest.mark.parametrize("grid, key, rule", [
    ([[0.9, 0.2, -0.1], [0.4, 0.3, 0.3]], "moodpo_eval.grid[0][2]", "must be >= 0"),
    ([[0.5, 0.5], [0.4, 0.3, 0.3]], "moodpo_eval.grid[0]", "needs 3 weights"),
    ([[0.5, 0.3, 0.3], [0.4, 0.3, 0.3]], "moodpo_eval.grid[0]", "must sum to 1"),
    ([[0.55, 0.35, 0.1], [0.4, 0.3, 0.3]], "moodpo_eval.grid[0][0]", "multiple of 0.1"),
])
def test_invalid_weights_name_the_key(tmp_path, grid, key, rule):
    params = quick_params()
    params["moodpo_eval"]["grid"] = grid
    write_params(tmp_path, params)
    cfg = load_section("moodpo_eval", tmp_path / "params.yaml")
    with pytest.raises(ParamError) as err:
        cfg.validate_against(load_section("moodpo", tmp_path / "params.yaml").objectives)
    assert err.value.key == key and rule in err.value.rule
    assert str(err.value).startswith(f"params.yaml: {key}=")


def test_invalid_weights_stop_the_stage_with_one_line(tmp_path):
    params = quick_params()
    params["moodpo_eval"]["grid"][1] = [0.1, 0.8]
    write_params(tmp_path, params)
    proc = run(["python", str(REPO / "stages/moodpo_eval.py"), "p", "s", "m", "r", "out.json", "pareto"], cwd=tmp_path,
               check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: params.yaml: moodpo_eval.grid[1]=[0.1, 0.8]: needs 3 weights, one per moodpo.objectives entry"]


def inclusion_exclusion(points: list[list[float]], reference: list[float]) -> float:
    """Volume of the union of the boxes [reference, point]: sum over subsets of (-1)^(|S|+1) * volume of
    the box up to the subset's coordinate-wise minimum."""
    total = 0.0
    for size in range(1, len(points) + 1):
        for subset in itertools.combinations(points, size):
            corner = [min(p[k] for p in subset) for k in range(len(reference))]
            total += (-1) ** (size + 1) * math.prod(max(c - r, 0.0) for c, r in zip(corner, reference))
    return total


def test_inclusion_exclusion_by_hand():
    # two boxes of 2x1 and 1x2 from the origin overlap in 1x1: 2 + 2 - 1
    assert inclusion_exclusion([[2.0, 1.0], [1.0, 2.0]], [0.0, 0.0]) == 3.0


def stages_run(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


@pytest.mark.slow
def test_moodpo_stages_through_dvc(tmp_path, pipeline):
    repo = pipeline_copy(pipeline, tmp_path / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for path in ("models/moodpo_1/model.safetensors", "models/moodpo_2/model.safetensors",
                 "metrics/moodpo_pareto/moodpo.csv", "metrics/moodpo_pareto/sft.csv",
                 "metrics/train/moodpo_2/plots/metrics/train/loss.tsv"):
        assert (repo / path).is_file(), path
    metrics = json.loads((repo / "metrics/moodpo.json").read_text())
    assert set(metrics["moodpo"]["by_weights"]) == {"w8_1_1", "w1_8_1", "w1_1_8", "w4_3_3"}
    # each policy's hypervolume, recomputed by inclusion-exclusion over its Pareto CSV's points (an independent
    # oracle of the cell-counting code) against the objectives' reference point in params.yaml
    reference = [o["hv_reference"] for o in params["moodpo"]["objectives"]]
    for policy in ("moodpo", "sft"):
        with (repo / f"metrics/moodpo_pareto/{policy}.csv").open() as f:
            points = [[float(row[o["name"]]) for o in params["moodpo"]["objectives"]] for row in csv.DictReader(f)]
        assert len(points) == 4
        assert metrics[policy]["hypervolume"] == pytest.approx(inclusion_exclusion(points, reference), abs=1e-3)
    assert metrics["hypervolume_gain_over_sft"] == pytest.approx(
        metrics["moodpo"]["hypervolume"] - metrics["sft"]["hypervolume"], abs=2e-5)
    assert set(metrics["moodpo"]["responsiveness"]) == set(NAMES)
    assert json.loads((repo / "models/moodpo_2/moodpo_config.json").read_text())["iteration"] == 2

    params["moodpo"]["iteration_2"]["learning_rate"] = 0.0002
    write_params(repo, params)
    proc = run(["dvc", "repro", "moodpo_eval"], cwd=repo)
    assert sorted(stages_run(proc.stdout)) == ["moodpo@2", "moodpo_eval"]


class ConflictingObjectives:
    """Two objectives that pull apart: length in words (capped) and shortness; or, with ``agree``, the same one twice."""

    def __init__(self, agree: bool = False):
        self.agree = agree

    def score(self, name, prompts, responses):
        assert all(m["role"] != "system" for p in prompts for m in p)
        words = torch.tensor([min(len(r.split()), 8) / 8 for r in responses])
        return words if name == "long" or self.agree else 1 - words


def tiny_policy(directory):
    from rlhfpipe.models.loading import load_tokenizer

    save_local_pretrained(directory)
    return load_tokenizer(directory)


def moodpo_step(directory, tokenizer, registry, seed=0, pairs="shared"):
    from rlhfpipe.moodpo.training import train_moodpo
    from rlhfpipe.training.common import NullLive

    from rlhfpipe.config import MoodpoObjective

    names = ["long", "short"]
    cfg = dataclasses.replace(params_config("moodpo"), objectives=[MoodpoObjective(n, 0.0) for n in names],
                              weights_per_prompt=4, pairs=pairs, grad_accum=2, max_new_tokens=8, temperature=1.0,
                              missing_eos_penalty=0.0)
    it = dataclasses.replace(cfg.iteration_1, steps=2, batch_size=8, learning_rate=1e-3, beta=0.1, seed=seed)
    prompts = [[{"role": "user", "content": f"how are you feeling today {i}"}] for i in range(4)]
    rows = weighted_prompts(prompts, names, 0.3, 4, it)
    return train_moodpo(cfg, it, str(directory), tokenizer, rows, registry, NullLive(), "fp32", torch.device("cpu"))


def test_moodpo_steps_are_reproducible_and_leave_the_reference_alone(tmp_path):
    from rlhfpipe.models.loading import load_causal_lm

    tokenizer = tiny_policy(tmp_path)
    start = load_causal_lm(str(tmp_path), tokenizer).state_dict()
    (a, metrics_a), (b, _) = moodpo_step(tmp_path, tokenizer, ConflictingObjectives()), \
        moodpo_step(tmp_path, tokenizer, ConflictingObjectives())
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert any(not torch.equal(x, start[k]) for k, x in a.state_dict().items())  # it trained
    assert metrics_a["steps"] == 2 and set(metrics_a) >= {"final_kl", "final_eos_rate", "pair_contrast"}
    assert torch.equal(load_causal_lm(str(tmp_path), tokenizer).state_dict()["lm_head.weight"], start["lm_head.weight"])


def test_conflicting_objectives_give_contrasting_pairs_and_agreeing_ones_none(tmp_path):
    tokenizer = tiny_policy(tmp_path)
    _, conflicting = moodpo_step(tmp_path, tokenizer, ConflictingObjectives())
    _, agreeing = moodpo_step(tmp_path, tokenizer, ConflictingObjectives(agree=True))
    # vectors that weigh length and shortness differently order the same samples differently; when both
    # objectives are the same score every vector picks the same pair
    assert conflicting["pair_contrast"] > 0 and agreeing["pair_contrast"] == 0


def test_mirrored_pairs_train_and_give_no_pair_when_objectives_agree(tmp_path):
    from rlhfpipe.models.loading import load_causal_lm

    tokenizer = tiny_policy(tmp_path)
    start = load_causal_lm(str(tmp_path), tokenizer).state_dict()
    trained, _ = moodpo_step(tmp_path, tokenizer, ConflictingObjectives(), pairs="mirrored")
    assert any(not torch.equal(x, start[k]) for k, x in trained.state_dict().items())
    # agreeing objectives: no pair anywhere, so no gradient and the weights stay where they were
    untouched, _ = moodpo_step(tmp_path, tokenizer, ConflictingObjectives(agree=True), pairs="mirrored")
    assert all(torch.equal(x, start[k]) for k, x in untouched.state_dict().items())


def test_warmup_targets_are_the_best_sample_under_each_vector():
    from rlhfpipe.moodpo.warmup import pick_targets

    # one prompt, three samples scored (long, short): a long one, a short one, one in between
    scores = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.6, 0.6]]])
    weights = torch.tensor([[[0.9, 0.1], [0.1, 0.9], [0.5, 0.5]]])
    # rewards per vector: (0.9, 0.1, 0.6), (0.1, 0.9, 0.6), (0.5, 0.5, 0.6)
    assert pick_targets(scores, weights, torch.zeros(1, 3)).tolist() == [[0, 1, 2]]
    # a sample that never ended loses the penalty under every vector
    assert pick_targets(scores, weights, torch.tensor([[1.0, 0.0, 0.0]])).tolist() == [[2, 1, 2]]


def test_warmup_targets_weigh_objectives_on_their_spread_within_the_prompt():
    from rlhfpipe.moodpo.warmup import pick_targets

    # a wide objective (a reward model: 2 vs -2) and a narrow one (brevity: 0.5 vs 0.6), two samples
    scores = torch.tensor([[[2.0, 0.5], [-2.0, 0.6]]])
    weights = torch.tensor([[[0.2, 0.8], [0.8, 0.2]]])
    # raw rewards would pick sample 0 under both vectors (0.8 vs 0.08; 1.7 vs -1.48); standardised over the two
    # samples each objective is (+0.71, -0.71) vs (-0.71, +0.71), so weighting brevity high picks the briefer one
    assert pick_targets(scores, weights, torch.zeros(1, 2)).tolist() == [[1, 0]]
    # an objective on which the samples do not differ decides nothing
    flat = torch.tensor([[[0.3, 1.0], [0.3, 0.0]]])
    assert pick_targets(flat, torch.tensor([[[0.9, 0.1]]]), torch.zeros(1, 2)).tolist() == [[0]]


def test_warmup_target_stats_by_hand():
    from rlhfpipe.moodpo.warmup import target_stats

    scores = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.2, 0.2], [0.4, 0.4]]])
    weights = torch.tensor([[[0.9, 0.1], [0.1, 0.9]], [[0.9, 0.1], [0.1, 0.9]]])
    targets = torch.tensor([[0, 1], [1, 1]])
    stats = target_stats(scores, weights, targets, ["long", "short"])
    assert stats["target_contrast"] == 0.5  # the first prompt's vectors picked different samples, the second's did not
    # "long" weighted 0.9 picked (1.0, 0.4), weighted 0.1 picked (0.0, 0.4)
    assert stats["target_scores"]["long"] == {"high": pytest.approx(0.7), "low": pytest.approx(0.2),
                                              "all_samples": pytest.approx(0.4)}
    assert stats["target_scores"]["short"]["high"] == pytest.approx(0.7)


def test_warmup_rows_follow_each_vector_and_training_is_reproducible(tmp_path):
    from rlhfpipe.config import MoodpoObjective
    from rlhfpipe.models.generation import encode_prompts
    from rlhfpipe.models.loading import load_causal_lm
    from rlhfpipe.moodpo.warmup import best_of_n_rows, train_warmup
    from rlhfpipe.training.common import NullLive

    tokenizer = tiny_policy(tmp_path)
    names = ["long", "short"]
    cfg = params_config("moodpo")
    cfg = dataclasses.replace(cfg, objectives=[MoodpoObjective(n, 0.0) for n in names], grad_accum=2, max_new_tokens=8,
                              temperature=1.0, missing_eos_penalty=0.0,
                              warmup=dataclasses.replace(cfg.warmup, prompts=8, samples=4, weights_per_prompt=2,
                                                         sample_batch=16, epochs=1, batch_size=4, learning_rate=1e-3, seed=0))
    prompts = [[{"role": "user", "content": f"how are you feeling today {i}"}] for i in range(8)]

    def warm():
        policy = load_causal_lm(str(tmp_path), tokenizer)
        rows, stats = best_of_n_rows(policy, tokenizer, ConflictingObjectives(), cfg, prompts, "fp32", torch.device("cpu"))
        return policy, rows, stats, train_warmup(policy, tokenizer, rows, cfg, NullLive(), "fp32", torch.device("cpu"))

    (a, rows, stats, metrics), (b, rows_b, _, _) = warm(), warm()
    assert rows == rows_b and all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert len(rows) == 16 and metrics["steps"] == 4
    assert stats["target_contrast"] > 0
    assert stats["target_scores"]["long"]["high"] > stats["target_scores"]["long"]["low"]
    # every row's prompt carries its vector's instruction, and the response is a sample of that prompt (ids only)
    assert all(r["prompt"][-2]["role"] == "system" and r["prompt"][-2]["content"].startswith("weights:") for r in rows)
    assert all(isinstance(t, int) for r in rows for t in r["response"])
    encode_prompts(tokenizer, [r["prompt"] for r in rows])  # the rows are valid chat prompts
