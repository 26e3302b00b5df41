"""Behaviour that matters at real scale, shown on tiny CPU models: memory of the rollout forwards, prompt caps,
precision, device placement, stop tokens and the value model's start."""

from __future__ import annotations

import dataclasses
import json
import sys

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

from rlhfpipe.config import ParamError
from rlhfpipe.data.corpus import generate_corpus
from rlhfpipe.models.loading import train_tokenizer
from rlhfpipe.models.prompt_length import drop_long_prompts, prompt_length
from rlhfpipe.training.ppo import PPOModels, ValueHead, forward_policy, rollout_scores
from rlhfpipe.training.common import NullLive
from conftest import params_config, pipeline_copy, run

VOCAB, PROMPT, RESPONSE, BATCH = 50_000, 512, 8, 4


def big_vocab_config(**extra) -> LlamaConfig:
    return LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=PROMPT + RESPONSE + 8,
                       pad_token_id=0, tie_word_embeddings=True, **extra)


@pytest.fixture(scope="module")
def big_vocab_policy():
    torch.manual_seed(0)
    return LlamaForCausalLM(big_vocab_config()).eval()


def record_head_outputs(model) -> list[tuple[int, ...]]:
    """Shapes of every LM-head output, i.e. of every logits tensor the model builds."""
    shapes: list[tuple[int, ...]] = []
    model.lm_head.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape)))
    return shapes


def rollout_batch():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, VOCAB, (BATCH, PROMPT + RESPONSE), generator=g)
    mask = torch.ones_like(ids)
    return ids, mask, ids[:, PROMPT:]


@pytest.mark.parametrize("value", ["head", "separate"])
def test_rollout_forwards_build_logits_for_response_positions_only_and_in_micro_batches(big_vocab_policy, value):
    # Full-vocabulary logits over all 520 positions of 4 rows would be 4 * 520 * 50k floats = 416 MB; the
    # bound below allows 2 rows (the micro-batch) of RESPONSE + 1 positions: 2 * 9 * 50k floats = 3.6 MB.
    policy = big_vocab_policy
    shapes = record_head_outputs(policy)
    if value == "head":
        value_model = ValueHead(policy.config.hidden_size)
    else:
        torch.manual_seed(1)
        value_model = LlamaForSequenceClassification(big_vocab_config(num_labels=1)).eval()
    models = PPOModels(policy=policy, ref_policy=policy, value_model=value_model)
    ids, mask, responses = rollout_batch()
    ref_logprobs, values, _ = rollout_scores(models, ids, mask, responses, PROMPT, 1.0, chunk=2)
    assert ref_logprobs.shape == values.shape == (BATCH, RESPONSE)
    assert shapes and max(s[0] * s[1] for s in shapes) <= 2 * (RESPONSE + 1)
    assert all(s[-1] == VOCAB for s in shapes)
    # and the chunked log-probs are those of one full-batch forward that slices after the head
    with torch.no_grad():
        full = policy(input_ids=ids, attention_mask=mask).logits[:, PROMPT - 1:-1].log_softmax(-1)
    expected = full.gather(-1, responses[..., None]).squeeze(-1)
    torch.testing.assert_close(ref_logprobs, expected, atol=1e-4, rtol=1e-4)


def test_training_forward_keeps_response_logits_only(big_vocab_policy):
    shapes = record_head_outputs(big_vocab_policy)
    ids, mask, _ = rollout_batch()
    models = PPOModels(policy=big_vocab_policy, ref_policy=None, value_model=None)
    logits, _ = forward_policy(models, ids, mask, PROMPT, 1.0)
    assert logits.shape == (BATCH, RESPONSE, VOCAB)
    assert shapes == [(BATCH, RESPONSE + 1, VOCAB)]


@pytest.fixture(scope="module")
def tokenizer():
    rows = generate_corpus(40, 0)
    return train_tokenizer([u for r in rows for u in r["Utterance"] + r["utt_user_most_recent"]], 400)


def test_long_prompts_are_dropped_and_counted(tokenizer):
    short = [{"role": "user", "content": "Hi."}]
    long = [{"role": "user", "content": "I feel sad today. " * 40}]
    # "<s><|user|>\nHi.</s>\n<|assistant|>\n": the template adds <s>, <|user|>, </s>, <|assistant|> and newlines
    cap = prompt_length(tokenizer, short)
    assert cap < prompt_length(tokenizer, long)
    kept, dropped = drop_long_prompts(tokenizer, [long, short, long], cap, "ppo.max_prompt_length")
    assert kept == [short] and dropped == 2
    with pytest.raises(ParamError, match=r"ppo\.max_prompt_length=.*every one of the 1 prompts"):
        drop_long_prompts(tokenizer, [long], cap, "ppo.max_prompt_length")


# ------------------------------------------------------------------------------------------------ precision
class ConstantRegistry:
    """Every response scores 1.0: the first update's statistics do not depend on the rewards."""

    def combine(self, terms, prompts, texts):
        return torch.ones(len(texts)), {"constant": torch.ones(len(texts))}




PROMPTS = [
    [{"role": "user", "content": "I lost my job at the bakery, and I feel so sad."}],
    [{"role": "user", "content": "Hi."}],
    [{"role": "assistant", "content": "How are you?"}, {"role": "user", "content": "My sister stopped speaking to me."}],
    [{"role": "user", "content": "Nobody calls me any more."}],
]


def one_ppo_update(tokenizer, precision: str, tmp_path):
    """The first update of train_ppo, one mini-batch and one epoch: its ratio is measured before any step."""
    from rlhfpipe.models.loading import build_causal_lm
    from rlhfpipe.training.ppo import train_ppo

    policy = build_causal_lm(params_config("model", hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                                         max_position_embeddings=256), tokenizer)
    models = PPOModels(policy=policy, ref_policy=build_causal_lm(params_config("model", 
        hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_position_embeddings=256), tokenizer).eval(),
        value_model=ValueHead(32))
    cfg = params_config("ppo", total_episodes=4, batch_size=4, mini_batches=1, ppo_epochs=1, max_new_tokens=8, temperature=1.0,
                    value_model="head")
    state = train_ppo(cfg, models, tokenizer, PROMPTS, ConstantRegistry(), NullLive(), tmp_path / precision,
                      precision=precision)
    return state.history[0], models


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_first_ppo_minibatch_has_unit_ratio_and_zero_kl_under_autocast(tokenizer, precision, tmp_path):
    row, models = one_ppo_update(tokenizer, precision, tmp_path)
    assert abs(row["policy/ratio"] - 1.0) < 1e-5
    assert abs(row["objective/kl"]) < 1e-4
    assert row["policy/clipfrac"] == 0.0
    # master weights stay fp32 under autocast
    assert {p.dtype for p in models.policy.parameters()} == {torch.float32}
    assert {p.dtype for p in models.value_model.parameters()} == {torch.float32}


@pytest.mark.parametrize("avx512_bf16, amx, chosen", [(True, False, "bf16"), (False, True, "bf16"), (False, False, "fp32")])
def test_auto_precision_takes_bf16_only_where_the_cpu_has_bf16_units(avx512_bf16, amx, chosen, monkeypatch, capsys):
    from rlhfpipe.devices import stage_precision

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    cpu = torch.device("cpu")
    assert stage_precision("auto", cpu) == chosen
    units = "has" if chosen == "bf16" else "has no"
    assert capsys.readouterr().out == f"runtime.precision auto -> {chosen} (this CPU {units} bf16 units)\n"
    # an explicit choice is kept, whatever the hardware, and says nothing
    assert (stage_precision("fp32", cpu), stage_precision("bf16", cpu)) == ("fp32", "bf16")
    assert capsys.readouterr().out == ""


def test_auto_precision_asks_the_gpu_when_one_is_visible(monkeypatch):
    from rlhfpipe import devices

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: not including_emulation)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert devices.stage_precision("auto") == "bf16"  # native bf16 on the GPU, none on the CPU
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert devices.stage_precision("auto") == "fp32"  # a GPU that only emulates bf16 (pre-Ampere)


def test_sft_under_bfloat16_weights_trains_fp32_masters(tokenizer, tmp_path, monkeypatch):
    from rlhfpipe.training.sft import train_sft

    monkeypatch.chdir(tmp_path)  # checkpoints/ goes under tmp_path
    rows = [{"prompt": p, "completion": [{"role": "assistant", "content": "I hear you. That sounds hard."}]}
            for p in PROMPTS * 2]
    model_cfg = params_config("model", hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                            max_position_embeddings=128, dtype="bfloat16")
    model, metrics = train_sft(params_config("sft", epochs=1.0, batch_size=4, learning_rate=1e-3, max_length=64),
                               model_cfg, tokenizer, rows, rows[:4], NullLive(), "key")
    assert metrics["steps"] == 2
    assert {p.dtype for p in model.parameters()} == {torch.float32}


# ------------------------------------------------------------------------------------------------ device
def test_every_model_and_generator_of_a_stage_is_placed_through_the_device_helper(tokenizer, tmp_path, monkeypatch):
    from rlhfpipe import devices
    from rlhfpipe.models.generation import generate_texts
    from rlhfpipe.models.loading import build_causal_lm, save_model
    from rlhfpipe.rewards.reward_model import RewardModel
    from rlhfpipe.training.ppo import build_models

    save_model(build_causal_lm(params_config("model", hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                                           max_position_embeddings=128), tokenizer), tokenizer, tmp_path / "sft")
    placed, generators = [], []
    real_place, real_generator = devices.place, devices.generator
    monkeypatch.setattr(devices, "place", lambda obj, device: placed.append((obj, device)) or real_place(obj, device))
    monkeypatch.setattr(devices, "generator",
                        lambda seed, device: generators.append(device) or real_generator(seed, device))
    stage = torch.device("cpu", 0)  # a device object distinct from the default torch.device("cpu")
    models = build_models(params_config("ppo"), str(tmp_path / "sft"), str(tmp_path / "sft"), tokenizer, stage)
    rm = RewardModel(tmp_path / "sft", stage)
    placed_ids = {id(obj) for obj, device in placed if device is stage}
    for model in (models.policy, models.ref_policy, models.value_model, rm.model):
        assert id(model) in placed_ids
    assert rm.score(PROMPTS[:2], ["Okay.", "I hear you."]).shape == (2,)
    generate_texts(models.policy, tokenizer, PROMPTS[:2], batch_size=2, max_new_tokens=2, temperature=1.0, seed=0)
    assert generators == [next(models.policy.parameters()).device]


# ------------------------------------------------------------------------------------------------ stop tokens
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture()
def chatml_tokenizer(tokenizer):
    import copy

    tok = copy.deepcopy(tokenizer)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = CHATML
    return tok


class AlwaysEmits(torch.nn.Module):
    """A 'model' whose every next token is ``token`` with certainty."""

    def __init__(self, vocab: int, token: int):
        super().__init__()
        self.vocab, self.token = vocab, token

    def forward(self, input_ids, logits_to_keep=0, **kwargs):
        from types import SimpleNamespace

        logits = torch.full((*input_ids.shape, self.vocab), -1e4)
        logits[..., self.token] = 0.0
        return SimpleNamespace(logits=logits[:, -1:] if logits_to_keep else logits, past_key_values=None)


def test_the_template_turn_end_is_a_stop_token(chatml_tokenizer, tokenizer):
    from rlhfpipe.models.stop_tokens import stop_token_ids

    im_end = chatml_tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert stop_token_ids(chatml_tokenizer) == [chatml_tokenizer.eos_token_id, im_end]
    assert stop_token_ids(tokenizer) == [tokenizer.eos_token_id]  # our template ends a turn with EOS itself


def test_sampler_and_truncation_stop_at_im_end(chatml_tokenizer):
    from rlhfpipe.models.generation import encode_prompts, sample
    from rlhfpipe.training.ppo_math import truncate_after_eos
    from rlhfpipe.models.stop_tokens import stop_token_ids

    im_end = chatml_tokenizer.convert_tokens_to_ids("<|im_end|>")
    ids, mask = encode_prompts(chatml_tokenizer, PROMPTS[:2])
    stops, pad = stop_token_ids(chatml_tokenizer), chatml_tokenizer.pad_token_id
    gen = sample(AlwaysEmits(len(chatml_tokenizer), im_end), ids, mask, max_new_tokens=5, temperature=1.0,
                 eos_token_id=stops, pad_token_id=pad, generator=torch.Generator().manual_seed(0))
    assert gen.responses.tolist() == [[im_end, pad, pad, pad, pad]] * 2
    responses, response_mask = truncate_after_eos(torch.tensor([[5, im_end, 7], [5, 6, 7]]), stops, pad)
    assert responses.tolist() == [[5, im_end, pad], [5, 6, 7]]
    assert response_mask.tolist() == [[1, 1, 0], [1, 1, 1]]


def test_align_embeddings_keeps_a_list_of_eos_ids(tokenizer):
    from rlhfpipe.models.loading import align_embeddings

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2))
    model.generation_config.eos_token_id = [7, 9]
    align_embeddings(model, tokenizer)
    assert model.generation_config.eos_token_id == [7, 9, tokenizer.eos_token_id]
    assert model.config.eos_token_id == tokenizer.eos_token_id


# ------------------------------------------------------------------------------------------------ value model
@pytest.fixture()
def reward_dir(tokenizer, tmp_path):
    import json

    from rlhfpipe.models.loading import save_model

    torch.manual_seed(3)
    model = LlamaForSequenceClassification(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, num_labels=1, pad_token_id=tokenizer.pad_token_id))
    save_model(model, tokenizer, tmp_path / "reward")
    (tmp_path / "reward" / "reward_stats.json").write_text(json.dumps({"mean": 2.0, "std": 4.0}))
    return tmp_path / "reward"


def test_value_model_starts_on_the_normalised_reward_scale(tokenizer, reward_dir):
    from rlhfpipe.models.loading import load_sequence_classifier
    from rlhfpipe.rewards.reward_model import token_values
    from rlhfpipe.training.ppo import build_models

    ids = torch.tensor([[5, 9, 12, 40], [7, 7, 30, 2]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        raw = token_values(load_sequence_classifier(str(reward_dir), tokenizer).eval(), ids, mask)
        for normalize, expected in ((True, (raw - 2.0) / 4.0), (False, raw)):
            models = build_models(params_config("ppo", normalize_rewards=normalize), str(reward_dir), str(reward_dir), tokenizer,
                                  torch.device("cpu"))
            torch.testing.assert_close(token_values(models.value_model.eval(), ids, mask), expected)
    assert raw.abs().max() > 0.05  # a head of zeros would make the comparison vacuous


def test_value_model_gets_lora_with_the_policy(tokenizer, reward_dir):
    from rlhfpipe.training.ppo import build_models

    models = build_models(params_config("ppo", lora=dataclasses.replace(params_config("ppo").lora, enabled=True, dropout=0.1)), str(reward_dir), str(reward_dir),
                          tokenizer, torch.device("cpu"))
    trainable = [n for n, p in models.value_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or n.startswith("score.") for n in trainable)
    assert any("lora_" in n for n in trainable)
    # LoRA's dropout is off in both models: PPO's first ratio must be 1
    for model in (models.policy, models.value_model):
        assert all(m.p == 0.0 for m in model.modules() if isinstance(m, torch.nn.Dropout))


# ------------------------------------------------------------------------------------------------ reward pairs
def test_reward_trainer_counts_the_pairs_it_drops_for_length(tokenizer, reward_dir, tmp_path, monkeypatch):
    from rlhfpipe.training.common import NullLive
    from rlhfpipe.training.reward_model import train_reward

    monkeypatch.chdir(tmp_path)
    short = [{"role": "assistant", "content": "I hear you."}]
    long = [{"role": "assistant", "content": "I hear you and I am here with you. " * 30}]  # far over 64 tokens

    def pair(chosen, rejected):
        return {"prompt": PROMPTS[1], "chosen": chosen, "rejected": rejected, "source": "toy"}

    train = [pair(short, short)] * 4 + [pair(long, short), pair(short, long), pair(long, long)]
    test = [pair(short, short)] * 2 + [pair(short, long)]
    _, metrics = train_reward(params_config("reward", epochs=1.0, batch_size=4, max_length=64), str(reward_dir), tokenizer,
                              train, test, NullLive(), "key")
    assert metrics["pairs_dropped_too_long"] == {"train": 3, "test": 1}


def test_disable_dropout_zeroes_the_attention_layers_own_rate():
    from rlhfpipe.models.loading import disable_dropout

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2, attention_dropout=0.5))
    assert model.model.layers[0].self_attn.attention_dropout == 0.5
    disable_dropout(model)
    assert model.model.layers[0].self_attn.attention_dropout == 0.0
    model.train()  # dropout would act in training mode only
    ids = torch.tensor([[3, 5, 7, 9, 11]])
    torch.testing.assert_close(model(input_ids=ids).logits, model(input_ids=ids).logits, rtol=0, atol=0)


def test_file_digest_streams_and_matches_md5_of_names_and_bytes(tmp_path):
    import hashlib

    from rlhfpipe.training.common import file_digest

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b.bin").write_bytes(b"x" * (3 << 20))  # three blocks
    (tmp_path / "d" / "a.txt").write_bytes(b"hello")
    expected = hashlib.md5(b"a.txt" + b"hello" + b"b.bin" + b"x" * (3 << 20)).hexdigest()
    assert file_digest(tmp_path / "d") == expected


def test_date_stamping_templates_render_a_fixed_date(tokenizer):
    import copy
    import datetime

    from rlhfpipe.models.loading import TEMPLATE_DATE, pin_template_date

    tok = copy.deepcopy(tokenizer)
    # the shape of Llama 3.2's template: date_string from the clock unless given
    tok.chat_template = pin_template_date(
        '{%- if not date_string is defined %}{%- if strftime_now is defined %}'
        '{%- set date_string = strftime_now("%d %b %Y") %}{%- else %}{%- set date_string = "none" %}{%- endif %}'
        '{%- endif %}Today Date: {{ date_string }}\n{% for m in messages %}{{ m["content"] }}{% endfor %}')
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert text == f"Today Date: {TEMPLATE_DATE}\nhi"
    assert datetime.date.today().strftime("%d %b %Y") not in text
    assert pin_template_date("{{ messages }}") == "{{ messages }}"


def test_several_gpus_without_a_launcher_and_deepspeed_under_ppo_are_refused_in_one_line(monkeypatch):
    from rlhfpipe import devices
    from rlhfpipe.errors import PipelineError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(PipelineError, match=r"^4 GPUs are visible to one process: set runtime.launcher"):
        devices.stage_device(launched=True)
    with pytest.raises(PipelineError, match=r"^4 GPUs are visible, and this stage trains in one process: pick one"):
        devices.stage_device(single_process=True)
    monkeypatch.setenv("WORLD_SIZE", "4")
    devices.refuse_unlaunched_gpus()  # one process per GPU: fine
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(PipelineError, match=r"^ppo: DeepSpeed launchers are not supported"):
        devices.refuse_deepspeed("ppo")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "false")
    devices.refuse_deepspeed("ppo")


@pytest.mark.slow
def test_gpu_smoke_script_runs_end_to_end_on_the_cpu():
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run(["bash", "bench/gpu_smoke.sh", "--cpu", "--tiny", "--steps", "1", "--batch", "4"],
                          cwd=repo, capture_output=True, text=True, timeout=900,
                          env={**__import__("os").environ, "PYTHON": sys.executable, "PYTHONPATH": str(repo)})
    assert done.returncode == 0, done.stderr[-2000:]
    table = [line for line in done.stdout.splitlines() if line.startswith("| tiny |")]
    assert [line.split("|")[2].strip() for line in table] == ["sft", "reward", "ppo", "grpo"]


# ------------------------------------------------------------------------------------------------ checkpoints
class LengthRegistry:
    calls = 0

    def combine(self, terms, prompts, texts):
        LengthRegistry.calls += 1
        scores = torch.tensor([len(t) / 20.0 for t in texts])
        return scores, {"length": scores}


def lora_ppo(tokenizer, reward_dir, checkpoints, seed_models: int = 0):
    from rlhfpipe.training.ppo import build_models, train_ppo

    cfg = params_config("ppo", total_episodes=8, batch_size=4, mini_batches=2, ppo_epochs=1, max_new_tokens=6, temperature=1.0,
                    save_every=0.5, learning_rate=1e-2, lora=dataclasses.replace(params_config("ppo").lora, enabled=True, r=4, alpha=8))
    torch.manual_seed(seed_models)  # LoRA's A matrices are drawn at random
    models = build_models(cfg, str(reward_dir), str(reward_dir), tokenizer, torch.device("cpu"))
    state = train_ppo(cfg, models, tokenizer, PROMPTS, LengthRegistry(), NullLive(), checkpoints)
    return models, state


def test_ppo_checkpoint_holds_trainable_tensors_only_and_resumes_to_the_uninterrupted_run(tokenizer, reward_dir,
                                                                                         tmp_path):
    from safetensors.torch import load_file

    from rlhfpipe.training.ppo import trainable_tensors

    # reward_dir holds a sequence classifier; as a causal LM its backbone loads and its head is new (seeded)
    torch.manual_seed(0)
    whole, whole_state = lora_ppo(tokenizer, reward_dir, tmp_path / "ckpt")  # leaves its update-1 checkpoint
    saved = load_file(tmp_path / "ckpt" / "checkpoint" / "policy.safetensors")
    assert saved and all("lora_" in name for name in saved)
    value_saved = load_file(tmp_path / "ckpt" / "checkpoint" / "value.safetensors")
    assert all("lora_" in name or name.startswith("score.") for name in value_saved)
    torch.manual_seed(0)
    LengthRegistry.calls = 0
    resumed, resumed_state = lora_ppo(tokenizer, reward_dir, tmp_path / "ckpt")  # resumes at update 1
    assert LengthRegistry.calls == 1  # only update 2 was rolled out
    assert resumed_state.history == whole_state.history and len(whole_state.history) == 2
    for model in ("policy", "value_model"):
        a, b = trainable_tensors(getattr(whole, model)), trainable_tensors(getattr(resumed, model))
        assert a.keys() == b.keys()
        for name in a:
            torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------ normalisation
class RecordingRM:
    def __init__(self):
        self.seen = None

    def score(self, prompts, responses):
        self.seen = (prompts, responses)
        return torch.arange(1.0, len(prompts) + 1)


def test_reward_normalisation_comes_from_sft_samples_on_training_prompts(tokenizer):
    from rlhfpipe.models.generation import generate_texts
    from rlhfpipe.models.loading import build_causal_lm
    from rlhfpipe.training.reward_model import normalisation_stats

    sft = build_causal_lm(params_config("model", hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                                      max_position_embeddings=128), tokenizer).eval()
    prompts = [[{"role": "user", "content": f"Message number {i}."}] for i in range(8)]
    cfg = params_config("reward", norm_prompts=4, norm_temperature=0.7, norm_max_new_tokens=5, seed=3)
    rm = RecordingRM()
    stats = normalisation_stats(rm, sft, tokenizer, prompts, cfg)
    assert rm.seen[0] == prompts[0::2]  # 4 of 8, evenly spaced
    assert rm.seen[1] == generate_texts(sft, tokenizer, prompts[0::2], batch_size=64, max_new_tokens=5,
                                        temperature=0.7, seed=3)
    # scores 1, 2, 3, 4: mean 2.5; unbiased variance (2.25 + 0.25 + 0.25 + 2.25) / 3 = 5/3, std 1.290994
    words = sum(len(r.split()) for r in rm.seen[1]) / 4
    assert stats == {"mean": 2.5, "std": 1.290994, "n": 4, "words_mean": round(words, 6)}


def test_length_floor_refuses_reward_statistics_without_the_sft_length(reward_dir):
    from rlhfpipe.errors import PipelineError
    from rlhfpipe.rewards.registry import RewardRegistry
    from rlhfpipe.rewards.reward_model import RewardModel

    with pytest.raises(PipelineError, match=r"reward_stats.json: no words_mean .* rerun the reward stage"):
        RewardRegistry(RewardModel(reward_dir), length_floor_fraction=0.8)


@pytest.mark.slow
def test_long_prompt_bench_runs_the_ppo_stage_on_the_built_pipeline(pipeline, tmp_path):
    """bench/ppo_long_prompts.py builds the ppo stage's models and rewards itself: on the built tiny pipeline (whose
    ppo rewards include length_floor) one update runs on prompts of exactly the asked length."""
    repo = pipeline_copy(pipeline, tmp_path / "repo")
    out = tmp_path / "long.json"
    run([sys.executable, "-m", "bench.ppo_long_prompts", "--prompt-tokens", "48", "--out", str(out)], cwd=repo)
    result = json.loads(out.read_text())
    assert result["prompt_tokens"] == [48, 48] and result["updates"] == 1
    assert result["peak_rss_gib"] > 0
