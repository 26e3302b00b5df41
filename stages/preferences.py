"""Stage preferences: build chosen/rejected pairs (strategy in params) and split them for the reward model."""

from collections import Counter
from pathlib import Path

from tqdm import tqdm

from rlhfpipe.cli import run_stage, setup_runtime, usage
from rlhfpipe.config import load_section
from rlhfpipe.data import preferences as prefs
from rlhfpipe.data.schema import SPLITS
from rlhfpipe.errors import PipelineError
from rlhfpipe.io import atomic_path, read_jsonl, write_json, write_jsonl
from rlhfpipe.models.generation import generate_texts
from rlhfpipe.models.loading import load_causal_lm, load_tokenizer


def main(argv: list[str]) -> None:
    prepared, sft_dir, out_dir, metrics_path = usage(argv, 4, "preferences.py PREPARED_DIR SFT_DIR OUT_DIR METRICS_JSON")
    runtime, cfg, model_cfg = load_section("runtime"), load_section("preferences"), load_section("model")
    setup_runtime(runtime.num_threads, cfg.seed)
    prepared = Path(prepared)
    dropped = Counter()
    if cfg.strategy == "generated":
        rows = prefs.select_prompts(read_jsonl(prepared / "prompts_train.jsonl"), cfg)
        generator, key = (cfg.generator, "preferences.generator") if cfg.generator else (sft_dir, None)
        tokenizer = load_tokenizer(generator, key=key)
        model = load_causal_lm(generator, tokenizer, allow_pickle=model_cfg.allow_pickle, key=key).eval()
        prompts = [r["prompt"] for r in rows for _ in range(cfg.num_samples)]
        with tqdm(total=len(prompts), desc="sampling rejected responses", unit="resp") as bar:
            texts = generate_texts(model, tokenizer, prompts, batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens,
                                   temperature=cfg.temperature, seed=cfg.seed, progress=bar)
        samples = [texts[i * cfg.num_samples:(i + 1) * cfg.num_samples] for i in range(len(rows))]
        pairs, dropped = prefs.generated_pairs(rows, samples, cfg)
    elif cfg.strategy == "shuffled":
        pairs, dropped = prefs.shuffled_pairs(prefs.select_prompts(read_jsonl(prepared / "prompts_train.jsonl"), cfg), cfg)
    elif cfg.strategy == "upvotes":
        dialogues = [d for s in SPLITS for d in read_jsonl(prepared / f"dialogues_{s}.jsonl")]
        pairs, dropped = prefs.upvote_pairs(dialogues)
    else:
        pairs = prefs.native_pairs([p for s in SPLITS for p in read_jsonl(prepared / f"pairs_{s}.jsonl")])
    splits = prefs.dedupe_and_split(pairs, cfg, dropped)
    if not splits["train"] or not splits["test"]:
        raise PipelineError(
            f"preferences.strategy={cfg.strategy}: too few pairs (train={len(splits['train'])}, test={len(splits['test'])}, "
            f"dropped={dict(dropped)}); raise preferences.rouge_threshold or num_samples, or check the data")
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for name, rows in splits.items():
            write_jsonl(tmp / f"{name}.jsonl", rows)
    metrics = prefs.preference_metrics(splits, dropped)
    write_json(metrics_path, metrics)
    print(f"preferences: kept {metrics['kept']}, dropped {metrics['dropped']}")


if __name__ == "__main__":
    run_stage(main)
