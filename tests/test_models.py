"""Model-level invariants on a tiny random Llama: padding side, sampling log-probs, PPO's first step."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForSequenceClassification

from conftest import params_config
from rlhfpipe.data.corpus import generate_corpus
from rlhfpipe.models.generation import encode_prompts, sample, sample_from
from rlhfpipe.models.loading import build_causal_lm, train_tokenizer
from rlhfpipe.rewards.reward_model import encode_conversations, last_token_index, sequence_scores
from rlhfpipe.training.ppo import PPOModels, forward_policy
from rlhfpipe.training.ppo_math import kl_estimate, logprobs_from_logits, masked_mean, policy_loss, truncate_after_eos


@pytest.fixture(scope="module")
def tokenizer():
    rows = generate_corpus(40, 0)
    return train_tokenizer([u for r in rows for u in r["Utterance"] + r["utt_user_most_recent"]], 400)


@pytest.fixture(scope="module")
def policy(tokenizer):
    cfg = params_config("model", hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_position_embeddings=256)
    return build_causal_lm(cfg, tokenizer).eval()


PROMPTS = [
    [{"role": "user", "content": "I lost my job at the bakery, and I feel so sad."}],
    [{"role": "user", "content": "Hi."}],
    [{"role": "assistant", "content": "How are you?"}, {"role": "user", "content": "My sister stopped speaking to me."}],
]


def test_tokenizer_has_distinct_pad_and_chat_template(tokenizer):
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    text = tokenizer.apply_chat_template(PROMPTS[0], tokenize=False, add_generation_prompt=True)
    assert text.startswith("<s><|user|>\n") and text.endswith("</s>\n<|assistant|>\n")


def test_last_token_index_left_and_right():
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1]])
    assert last_token_index(mask).tolist() == [3, 2, 3]


def test_reward_scores_do_not_depend_on_padding_side(tokenizer):
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, num_labels=1,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(config).eval()
    responses = ["That sounds hard.", "I am here with you, and we will keep working on it together.", "Okay."]
    with torch.no_grad():
        left = sequence_scores(model, *encode_conversations(tokenizer, PROMPTS, responses, "left"))
        right = sequence_scores(model, *encode_conversations(tokenizer, PROMPTS, responses, "right"))
        alone = torch.cat([sequence_scores(model, *encode_conversations(tokenizer, [p], [r], "left"))
                           for p, r in zip(PROMPTS, responses)])
    torch.testing.assert_close(left, right, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(left, alone, atol=1e-5, rtol=1e-5)
    assert left.std() > 0  # different inputs, different scores: the comparison is not vacuous


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_generation_logprobs_equal_recomputed_logprobs(tokenizer, policy, temperature):
    queries, mask = encode_prompts(tokenizer, PROMPTS)
    gen = sample(policy, queries, mask, max_new_tokens=12, temperature=temperature,
                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                 generator=torch.Generator().manual_seed(0))
    responses, response_mask = truncate_after_eos(gen.responses, tokenizer.eos_token_id, tokenizer.pad_token_id)
    assert torch.equal(responses, gen.responses)  # sampling already pads after EOS
    models = PPOModels(policy=policy, ref_policy=policy, value_model=None)
    with torch.no_grad():
        logits, _ = forward_policy(models, torch.cat([queries, responses], 1), torch.cat([mask, response_mask], 1),
                                   queries.shape[1], temperature)
    recomputed = logprobs_from_logits(logits, responses, temperature)
    torch.testing.assert_close(recomputed * response_mask, gen.logprobs * response_mask, atol=1e-4, rtol=1e-4)
    # At another temperature the log-probs differ: the test above would catch a missing temperature.
    other = logprobs_from_logits(logits, responses, temperature * 2)
    assert not torch.allclose(other * response_mask, gen.logprobs * response_mask, atol=1e-3)


def test_first_minibatch_has_zero_kl_and_unit_ratio(tokenizer, policy):
    queries, mask = encode_prompts(tokenizer, PROMPTS)
    gen = sample(policy, queries, mask, max_new_tokens=10, temperature=1.0, eos_token_id=tokenizer.eos_token_id,
                 pad_token_id=tokenizer.pad_token_id, generator=torch.Generator().manual_seed(1))
    responses, response_mask = truncate_after_eos(gen.responses, tokenizer.eos_token_id, tokenizer.pad_token_id)
    models = PPOModels(policy=policy, ref_policy=policy, value_model=None)
    ids, att = torch.cat([queries, responses], 1), torch.cat([mask, response_mask], 1)
    with torch.no_grad():
        ref_logits, _ = forward_policy(models, ids, att, queries.shape[1], 1.0, use_reference=True)
        new_logits, _ = forward_policy(models, ids, att, queries.shape[1], 1.0)
    old = gen.logprobs * response_mask
    ref = logprobs_from_logits(ref_logits, responses) * response_mask
    new = logprobs_from_logits(new_logits, responses) * response_mask
    kl = kl_estimate(old, ref) * response_mask
    assert masked_mean(kl.abs(), response_mask.float()) < 1e-4
    _, stats = policy_loss(new, old, torch.randn_like(new), response_mask.float(), 0.2)
    assert abs(stats["ratio"].item() - 1.0) < 1e-4
    assert stats["clipfrac"].item() == 0.0


def test_sample_from_matches_the_distribution_and_never_draws_a_zero_probability_token():
    probs = torch.tensor([[0.0, 0.5, 0.2, 0.3, 0.0]]).repeat(20000, 1)
    draws = sample_from(probs, torch.Generator().manual_seed(0))
    counts = torch.bincount(draws, minlength=5).float() / len(draws)
    assert counts[0] == 0 and counts[4] == 0
    assert torch.allclose(counts, probs[0], atol=0.015)
    again = sample_from(probs, torch.Generator().manual_seed(0))
    assert torch.equal(draws, again)
    one_hot = torch.zeros(3, 7)
    one_hot[torch.arange(3), torch.tensor([6, 0, 3])] = 1.0
    assert sample_from(one_hot, torch.Generator().manual_seed(1)).tolist() == [6, 0, 3]


class EOSAtStep:
    """The policy, except that row 0 is made to say EOS as its 4th response token (a +12 logit: p > 0.99)."""

    def __init__(self, model, eos: int):
        self.model, self.eos, self.calls = model, eos, 0

    def __call__(self, **kwargs):
        out = self.model(**kwargs)
        self.calls += 1
        if self.calls == 4:  # the prompt's forward gives token 1; the 3rd cached step gives token 4
            out.logits[0, -1, self.eos] += 12.0
        return out


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampling_pads_after_an_eos_and_gives_those_positions_log_prob_zero(tokenizer, policy, temperature):
    queries, mask = encode_prompts(tokenizer, PROMPTS)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    gen = sample(EOSAtStep(policy, eos), queries, mask, max_new_tokens=10, temperature=temperature,
                 eos_token_id=eos, pad_token_id=pad, generator=torch.Generator().manual_seed(0))
    assert gen.responses[0, 3] == eos and (gen.responses[0, :3] != eos).all()
    assert gen.responses[0, 4:].tolist() == [pad] * 6 and gen.logprobs[0, 4:].tolist() == [0.0] * 6
    assert (gen.logprobs[0, :4] < 0).all()  # the EOS itself keeps its log-prob (near zero, not zero)
    responses, response_mask = truncate_after_eos(gen.responses, eos, pad)
    assert torch.equal(responses, gen.responses) and response_mask[0].tolist() == [1] * 4 + [0] * 6
