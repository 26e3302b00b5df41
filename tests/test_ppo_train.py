"""train_ppo itself on a tiny random policy: the scores it trains on, its first mini-batch, the alignment of
values with response tokens, and gradient accumulation. Hand values come from the test, never from the loop."""

import dataclasses
import copy

import pytest
import torch

from rlhfpipe.config import PPOConfig
from rlhfpipe.data.corpus import generate_corpus
from rlhfpipe.models.generation import Generation, encode_prompts, position_ids_from_mask
from rlhfpipe.models.loading import build_causal_lm, save_model, train_tokenizer
from rlhfpipe.rewards.reward_model import sequence_scores
from rlhfpipe.training.common import NullLive
import rlhfpipe.training.ppo as ppo
from conftest import params_config

PROMPTS = [[{"role": "user", "content": text}] for text in (
    "I lost my job at the bakery, and I feel so sad.", "Hi.", "My sister stopped speaking to me.",
    "I cannot sleep before exams.", "My dog is ill.", "Work is too much lately.", "I moved to a new city.",
    "Nobody called me on my birthday.")]


@pytest.fixture(scope="module")
def tokenizer():
    rows = generate_corpus(40, 0)
    return train_tokenizer([u for r in rows for u in r["Utterance"] + r["utt_user_most_recent"]], 400)


@pytest.fixture(scope="module")
def policy_dir(tokenizer, tmp_path_factory):
    torch.manual_seed(0)
    cfg = params_config("model", hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_position_embeddings=256)
    path = tmp_path_factory.mktemp("policy")
    save_model(build_causal_lm(cfg, tokenizer), tokenizer, path)
    return path


def config(**overrides) -> PPOConfig:
    base = dict(total_episodes=8, batch_size=8, mini_batches=1, grad_accum=1, ppo_epochs=1, max_new_tokens=8,
                value_model="head", temperature=0.7, kl_coef=0.1, save_every=1.0, log_samples=0, seed=0)
    cfg = params_config("ppo", **{**base, **overrides})
    cfg.validate()
    return cfg


class FixedScores:
    """A reward registry that scores row i of every rollout with ``values[i]``."""

    def __init__(self, values):
        self.values = torch.tensor(values, dtype=torch.float32)

    def combine(self, terms, prompts, texts):
        return self.values[:len(texts)].clone(), {}


def fixed_rollout(tokenizer, rows: list[list[int]]):
    """A ``sample`` that answers row i with ``rows[i]`` (padded after it), whatever the model."""

    def sample(model, input_ids, attention_mask, *, max_new_tokens, temperature, eos_token_id, pad_token_id,
               generator=None):
        out = torch.full((input_ids.shape[0], max_new_tokens), pad_token_id, dtype=torch.long)
        for i, tokens in enumerate(rows[:input_ids.shape[0]]):
            out[i, :len(tokens)] = torch.tensor(tokens)
        return Generation(responses=out, logprobs=torch.zeros(out.shape))

    return sample


def record(monkeypatch, name: str) -> list:
    """Wrap ``ppo.<name>``: every call's (args, result) is appended to the returned list."""
    calls, original = [], getattr(ppo, name)

    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        calls.append((args, kwargs, result))
        return result

    monkeypatch.setattr(ppo, name, wrapper)
    return calls


def run(cfg, tokenizer, policy_dir, registry, tmp_path, models=None):
    models = models or ppo.build_models(cfg, str(policy_dir), None, tokenizer, torch.device("cpu"))
    return ppo.train_ppo(cfg, models, tokenizer, PROMPTS, registry, NullLive(), tmp_path / "ckpt"), models


def test_missing_eos_penalty_then_clipping(tokenizer, policy_dir, tmp_path, monkeypatch):
    eos, word = tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("I")
    rows = [[word, eos], [word, word], [word, word, eos], [word], [eos], [word] * 8, [word, eos], [word] * 3]
    monkeypatch.setattr(ppo, "sample", fixed_rollout(tokenizer, rows))
    calls = record(monkeypatch, "token_rewards")
    raw = [4.5, 4.5, 0.5, -6.0, -1.0, 1.0, 9.0, -0.5]
    run(config(missing_eos_penalty=2.0, reward_clip=3.0), tokenizer, policy_dir, FixedScores(raw), tmp_path)
    scores = calls[0][0][0]
    # by hand: rows without EOS (1, 3, 5, 7) lose 2.0, then everything is clipped to [-3, 3]
    assert scores.tolist() == [3.0, 2.5, 0.5, -3.0, -1.0, -1.0, 3.0, -2.5]


def test_clipping_off_and_no_penalty_keep_the_raw_scores(tokenizer, policy_dir, tmp_path, monkeypatch):
    word = tokenizer.convert_tokens_to_ids("I")
    monkeypatch.setattr(ppo, "sample", fixed_rollout(tokenizer, [[word]] * 8))
    calls = record(monkeypatch, "token_rewards")
    raw = [40.0, -40.0, 0.5, 1.5, -2.5, 3.5, 0.0, 7.0]
    run(config(missing_eos_penalty=0.0, reward_clip=0.0), tokenizer, policy_dir, FixedScores(raw), tmp_path)
    assert calls[0][0][0].tolist() == raw


@pytest.mark.parametrize("lora", [False, True], ids=["copied_reference", "lora"])
def test_first_minibatch_of_a_real_update_has_unit_ratio_and_zero_kl(tokenizer, policy_dir, tmp_path, monkeypatch,
                                                                    lora):
    """Sampling, the reference (a deep copy, or LoRA's disabled adapter) and the training forward all at the
    rollout temperature 0.7: before the first step the three distributions are one."""
    kls, losses = record(monkeypatch, "kl_estimate"), record(monkeypatch, "policy_loss")
    cfg = config(mini_batches=2, ppo_epochs=2, lora=dataclasses.replace(params_config("ppo").lora, enabled=lora, r=4, alpha=8, dropout=0.0,
                                                               target_modules=["q_proj", "v_proj"]))
    _, models = run(cfg, tokenizer, policy_dir, FixedScores([1.0, -1.0] * 4), tmp_path)
    assert (models.ref_policy is None) == lora
    args, _, kl = kls[0]
    mask = (args[0] != 0).float()  # sampled log-probs are < 0 on real tokens, 0 on padding
    assert mask.sum() > 8
    assert (kl * mask).abs().max() < 1e-4
    _, _, (_, first) = losses[0]
    assert abs(first["ratio"].item() - 1.0) < 1e-5 and first["clipfrac"].item() == 0.0
    assert first["approxkl"].item() < 1e-8
    # the check can fail: after a step the policy has moved, so a later mini-batch sees ratio != 1
    assert any(abs(stats["ratio"].item() - 1.0) > 1e-6 for _, _, (_, stats) in losses[1:])


def test_response_values_are_the_values_of_the_states_before_each_response_token(tokenizer, policy_dir):
    """Oracle: the value of the state before response token t is the value model's score of the prefix that
    ends just before it, computed alone (no slicing shared with response_values)."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from rlhfpipe.models.loading import load_causal_lm

    torch.manual_seed(3)
    config_ = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=2, num_key_value_heads=2, num_labels=1,
                          pad_token_id=tokenizer.pad_token_id)
    value_model = LlamaForSequenceClassification(config_).eval()
    policy = load_causal_lm(str(policy_dir), tokenizer).eval()
    head = ppo.ValueHead(32)
    torch.nn.init.normal_(head.score.weight)
    queries, qmask = encode_prompts(tokenizer, PROMPTS[:3])
    responses = torch.randint(5, len(tokenizer), (3, 5), generator=torch.Generator().manual_seed(0))
    ids, att = torch.cat([queries, responses], 1), torch.cat([qmask, torch.ones_like(responses)], 1)
    ctx = queries.shape[1]
    with torch.no_grad():
        separate = ppo.response_values(ppo.PPOModels(policy, None, value_model), ids, att, ctx)
        models = ppo.PPOModels(policy, None, head)
        _, hidden = ppo.forward_policy(models, ids, att, ctx, 1.0, want_hidden=True)
        on_head = ppo.response_values(models, ids, att, ctx, hidden)
        for t in range(responses.shape[1]):
            prefix, prefix_mask = ids[:, :ctx + t], att[:, :ctx + t]
            torch.testing.assert_close(separate[:, t], sequence_scores(value_model, prefix, prefix_mask),
                                       atol=1e-5, rtol=1e-5)
            last = policy(input_ids=prefix, attention_mask=prefix_mask, position_ids=position_ids_from_mask(
                prefix_mask), output_hidden_states=True).hidden_states[-1][:, -1]
            torch.testing.assert_close(on_head[:, t], head.score(last).squeeze(-1), atol=1e-5, rtol=1e-5)
    assert separate.shape == on_head.shape == responses.shape
    assert separate[:, 1:].sub(separate[:, :-1]).abs().max() > 1e-4  # a shifted column would be a different number


def test_gradient_accumulation_gives_the_same_update_on_ragged_responses(tokenizer, policy_dir, tmp_path,
                                                                       monkeypatch):
    """grad_accum 4 splits the mini-batch into micro-batches of 2 with very different token counts; the
    gradient must still be the token mean over the whole mini-batch, as with grad_accum 1."""
    eos, word = tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("I")
    rows = [[eos], [word] * 7 + [eos], [word, eos], [word] * 8, [word] * 2 + [eos], [word] * 5, [eos], [word] * 6]
    monkeypatch.setattr(ppo, "sample", fixed_rollout(tokenizer, rows))
    grads = {}
    step = torch.optim.AdamW.step

    def recording_step(self, *args, **kwargs):
        grads.setdefault(run_name, []).append([p.grad.clone() for g in self.param_groups for p in g["params"]])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", recording_step)
    base = ppo.build_models(config(), str(policy_dir), None, tokenizer, torch.device("cpu"))
    torch.nn.init.normal_(base.value_model.score.weight, std=0.1)  # a non-zero value loss gradient too
    registry = FixedScores([1.0, -2.0, 0.5, 3.0, -1.0, 2.0, 0.0, -0.5])
    for run_name in ("one", "four"):
        cfg = config(grad_accum=1 if run_name == "one" else 4, max_grad_norm=1e9)
        run(cfg, tokenizer, policy_dir, registry, tmp_path / run_name, models=copy.deepcopy(base))
    assert len(grads["one"]) == len(grads["four"]) == 1
    for one, four in zip(grads["one"][0], grads["four"][0]):
        torch.testing.assert_close(four, one, atol=1e-6, rtol=1e-4)
    assert max(g.abs().max() for g in grads["one"][0]) > 1e-4  # not vacuously zero


def test_resume_from_the_checkpoint_equals_the_uninterrupted_run(tokenizer, policy_dir, tmp_path, monkeypatch):
    """Two updates, a checkpoint after the first. A new process (fresh models, fresh optimizer) given that
    checkpoint runs only the second update, and ends where the uninterrupted run ended: weights, curves."""
    samples = record(monkeypatch, "sample")
    cfg = config(total_episodes=16, save_every=0.5, mini_batches=2, ppo_epochs=2, kl_coef=0.2, adaptive_kl=True)
    registry = FixedScores([1.0, -1.0, 0.5, 2.0, -0.5, 0.0, 1.5, -2.0])
    whole, models = run(cfg, tokenizer, policy_dir, registry, tmp_path)
    assert len(samples) == 2 and (tmp_path / "ckpt/checkpoint/state.json").is_file()
    weights = {k: v.clone() for k, v in models.policy.state_dict().items()}
    samples.clear()
    torch.manual_seed(12345)  # the checkpoint restores torch's generator too
    resumed, models = run(cfg, tokenizer, policy_dir, registry, tmp_path)
    assert len(samples) == 1  # it resumed at update 1: a restart from scratch would sample twice
    assert resumed.history == whole.history and resumed.update == 2 and resumed.kl_coef == whole.kl_coef
    for name, value in models.policy.state_dict().items():
        torch.testing.assert_close(value, weights[name], atol=0, rtol=0)
