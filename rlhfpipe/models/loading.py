"""Tokenizer and models: a from-scratch byte-level BPE + Llama, or any local path / hub id."""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from rlhfpipe.config import LoraConfig, ModelConfig
from rlhfpipe.errors import PipelineError, first_line

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]

# Each message ends with EOS, so a generated assistant turn stops at EOS. The template is
# prefix-consistent (prompt with add_generation_prompt is a prefix of prompt + completion), which
# TRL's completion-only SFT loss relies on.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}

# Weight files that torch.load unpickles; unpickling can run arbitrary code.
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
TRUE_VALUES = {"1", "ON", "YES", "TRUE"}


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE (no unknown bytes) with a pad token distinct from EOS and our chat template."""
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[PAD, BOS, EOS, UNK, *ROLE_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
        additional_special_tokens=ROLE_TOKENS, padding_side="left", model_max_length=4096,
    )
    hf.chat_template = CHAT_TEMPLATE
    return hf


def adapt_pretrained_tokenizer(name_or_path: str, trust_remote_code: bool) -> PreTrainedTokenizerFast:
    """Load a pretrained tokenizer; add a dedicated pad token and a chat template if it lacks them."""
    return adapt_tokenizer(load_tokenizer(name_or_path, key="model.name_or_path", trust_remote_code=trust_remote_code))


def adapt_tokenizer(tok: PreTrainedTokenizerFast) -> PreTrainedTokenizerFast:
    """Give a pretrained tokenizer a dedicated pad token and a chat template if it lacks them (in place)."""
    if tok.pad_token is None or tok.pad_token_id == tok.eos_token_id:
        # A pad equal to EOS would mask the real EOS out of the loss and of PPO's truncation.
        tok.add_special_tokens({"pad_token": PAD})
    if not tok.chat_template:
        if tok.bos_token is None:
            tok.add_special_tokens({"bos_token": BOS})
        tok.chat_template = CHAT_TEMPLATE
    tok.chat_template = pin_template_date(tok.chat_template)
    tok.padding_side = "left"
    return tok


# The date Llama 3.1's template falls back to; any fixed date keeps prompts (hence every result) independent
# of the day a stage runs.
TEMPLATE_DATE = "26 Jul 2024"


def pin_template_date(template: str) -> str:
    """A chat template that calls ``strftime_now`` (Llama 3.2 stamps "Today Date" into every system prompt)
    gets a macro of that name returning TEMPLATE_DATE, which shadows the renderer's clock."""
    if not isinstance(template, str) or "strftime_now" not in template:
        return template
    return "{%- macro strftime_now(format) -%}" + TEMPLATE_DATE + "{%- endmacro -%}" + template


def load_tokenizer(path: str | Path, *, key: str | None = None, trust_remote_code: bool = False) -> PreTrainedTokenizerFast:
    """A saved tokenizer; ``key`` names the param ``path`` came from (None: an output of an earlier stage)."""
    hub_guard(str(path), key)
    try:
        tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise PipelineError(f"{_source(str(path), key)}: cannot load the tokenizer ({first_line(err)})") from None
    tok.padding_side = "left"
    return tok


def _source(name_or_path: str, key: str | None) -> str:
    """How an error names a model: the params key it came from, or the path of an earlier stage's output."""
    return f"params.yaml: {key}={name_or_path!r}" if key else name_or_path


def hub_guard(name_or_path: str, key: str | None) -> None:
    """One clear line instead of a traceback for a model that is neither a local directory nor reachable.

    Outputs of earlier stages (``key`` None) must exist locally; a params value may also be a hub id,
    refused when HF_HUB_OFFLINE is set and it is not in the local cache.
    """
    if Path(name_or_path).exists():
        return
    if key is None:
        raise PipelineError(f"{name_or_path}: no such directory (run the upstream stage first: dvc repro)")
    if not HUB_ID.match(name_or_path):
        raise PipelineError(f"{_source(name_or_path, key)}: no such directory, and not a hub id")
    if os.environ.get("HF_HUB_OFFLINE", "").upper() in TRUE_VALUES:
        from huggingface_hub import try_to_load_from_cache

        if try_to_load_from_cache(name_or_path, "config.json") is None:
            raise PipelineError(
                f"{_source(name_or_path, key)}: not a local path, and HF_HUB_OFFLINE=1 "
                "forbids downloading it; download it first or point to a local copy"
            )


def check_weights(name_or_path: str, key: str | None, allow_pickle: bool) -> None:
    """Refuse a local model directory whose only weights are pickles, unless ``allow_pickle``.

    Hub ids are left to from_pretrained, which with use_safetensors=True fails on a pickle-only repo.
    """
    path = Path(name_or_path)
    if not path.is_dir():
        return
    if not (path / "config.json").is_file():
        raise PipelineError(f"{_source(name_or_path, key)}: no config.json in that directory")
    if any(path.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if not pickles:
        raise PipelineError(f"{_source(name_or_path, key)}: no model weights (model.safetensors) in that directory")
    if not allow_pickle:
        raise PipelineError(
            f"{_source(name_or_path, key)}: only pickle weights ({', '.join(pickles)}), which can run code when "
            "loaded; convert them to safetensors, or set model.allow_pickle: true for a source you trust")


def _from_pretrained(auto_class, name_or_path: str, key: str | None, allow_pickle: bool, **kwargs):
    """``auto_class.from_pretrained`` after the checks above; what it still raises about the files is one line.

    Pickle weights, when allowed, are read with torch.load(weights_only=True) all the same.
    """
    from safetensors import SafetensorError

    hub_guard(name_or_path, key)
    check_weights(name_or_path, key, allow_pickle)
    try:
        return auto_class.from_pretrained(name_or_path, use_safetensors=None if allow_pickle else True,
                                          weights_only=True, **kwargs)
    except (OSError, ValueError, SafetensorError) as err:
        raise PipelineError(f"{_source(name_or_path, key)}: cannot load the model ({first_line(err)})") from None


def build_causal_lm(cfg: ModelConfig, tokenizer) -> LlamaForCausalLM:
    """A small Llama-style model from params (used when model.name_or_path is empty)."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        attention_dropout=0.0,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(cfg.seed)
    return LlamaForCausalLM(config).to(DTYPES[cfg.dtype])


def load_causal_lm(name_or_path: str, tokenizer, *, dtype: str = "float32", trust_remote_code: bool = False,
                   allow_pickle: bool = False, key: str | None = None):
    """A causal LM; ``key`` names the param ``name_or_path`` came from (None: an output of an earlier stage)."""
    model = _from_pretrained(AutoModelForCausalLM, name_or_path, key, allow_pickle, dtype=DTYPES[dtype],
                             trust_remote_code=trust_remote_code)
    align_embeddings(model, tokenizer)
    return model


def load_sequence_classifier(name_or_path: str, tokenizer, *, dtype: str = "float32", trust_remote_code: bool = False,
                             allow_pickle: bool = False, key: str | None = None):
    """A one-label sequence classifier; from a causal LM checkpoint the backbone is reused, the head is new."""
    model = _from_pretrained(AutoModelForSequenceClassification, name_or_path, key, allow_pickle, num_labels=1,
                             dtype=DTYPES[dtype], trust_remote_code=trust_remote_code)
    align_embeddings(model, tokenizer)
    return model


def align_embeddings(model, tokenizer) -> None:
    """Grow the embeddings when the tokenizer gained tokens (pad), and tell the model its special ids. A list
    of EOS ids (Llama 3's generation config ends at <|end_of_text|>, <|eom_id|> and <|eot_id|>) is kept, with
    the tokenizer's EOS added to it."""
    if model.get_input_embeddings().num_embeddings < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))
    for cfg in (model.config, getattr(model, "generation_config", None)):
        if cfg is not None:
            cfg.pad_token_id = tokenizer.pad_token_id
            eos = getattr(cfg, "eos_token_id", None)
            if isinstance(eos, list):
                cfg.eos_token_id = eos + [tokenizer.eos_token_id] if tokenizer.eos_token_id not in eos else eos
            else:
                cfg.eos_token_id = tokenizer.eos_token_id
            cfg.bos_token_id = tokenizer.bos_token_id


def peft_config(lora: LoraConfig, task_type: str):
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=list(lora.target_modules),
        task_type=task_type, bias="none",
    )


def disable_dropout(model: torch.nn.Module) -> None:
    """Dropout off everywhere: PPO's ratio must be exactly 1 before the first update."""
    keys = ("attention_dropout", "hidden_dropout", "dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop")
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        # attention layers copy the rate from the config at construction and pass it to the kernel
        for key in keys:
            if isinstance(getattr(module, key, None), float):
                setattr(module, key, 0.0)
    for key in keys:
        if hasattr(model.config, key):
            setattr(model.config, key, 0.0)


def save_model(model, tokenizer, path: Path) -> None:
    """Weights in safetensors, plus the tokenizer, so the directory loads with from_pretrained."""
    model.save_pretrained(path, safe_serialization=True)
    # from_pretrained records how it was called (HF_HUB_OFFLINE sets local_files_only), and save_pretrained would
    # write that into tokenizer_config.json: the same model would get another md5 in another shell
    for key in ("local_files_only", "is_local"):
        tokenizer.init_kwargs.pop(key, None)
    tokenizer.save_pretrained(path)


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())
