"""Self-test of the dialogue PPO setup: ``python -m rlhfpipe.dialogue.check [CHILD_DIR SFT_DIR PREPARED_DIR]``.

Loads the child and the teacher named by params.yaml's ``dialogue`` section (defaults: the pipeline's
models/child_sft, models/sft and data/prepared), runs one child-teacher interaction on a held-out window,
computes the reward and checks every tensor shape PPO relies on. Prints one ``ok:`` line per check and
stops at the first failure with one ``error:`` line and exit code 2.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import torch

from rlhfpipe.cli import run_stage, usage
from rlhfpipe.config import load_section
from rlhfpipe.dialogue.windows import DialogueReward, as_prompt, load_teacher, read_windows
from rlhfpipe.errors import PipelineError, first_line
from rlhfpipe.models.generation import decode, encode_prompts, sample
from rlhfpipe.models.loading import load_tokenizer
from rlhfpipe.rewards.registry import RewardRegistry
from rlhfpipe.training.ppo import build_models, forward_policy, response_values

DEFAULTS = ["models/child_sft", "models/sft", "data/prepared"]


@contextlib.contextmanager
def step(name: str):
    """Turn any failure inside the block into one line naming the check: this tool exists to report them."""
    try:
        yield
    except PipelineError as err:
        raise PipelineError(f"dialogue check failed at {name}: {err}") from None
    except Exception as err:  # noqa: BLE001
        raise PipelineError(f"dialogue check failed at {name}: {type(err).__name__}: {first_line(err)}") from None


def expect(ok: bool, what: str) -> None:
    if not ok:
        raise PipelineError(what)


def main(argv: list[str]) -> None:
    child_dir, sft_dir, prepared = usage(argv, 3, "python -m rlhfpipe.dialogue.check [CHILD_DIR SFT_DIR PREPARED_DIR]"
                                         ) if argv else DEFAULTS
    with step("params"):
        cfg = load_section("dialogue")
        ppo = cfg.ppo
    with step("data"):
        window = read_windows(Path(prepared) / "dialogues_test.jsonl", cfg.min_words, cfg.max_words,
                              cfg.context_turns)[0][0]
    print(f"ok: params and a held-out window of {len(window.context)} context turns")
    with step("child"):
        tokenizer = load_tokenizer(child_dir)
        expect(tokenizer.pad_token_id is not None and tokenizer.pad_token_id != tokenizer.eos_token_id,
               f"{child_dir}: the tokenizer needs a pad token distinct from EOS")
        models = build_models(ppo, child_dir, child_dir, tokenizer, torch.device("cpu"))
    with step("teacher"):
        teacher = load_teacher(cfg, sft_dir, torch.device("cpu"))
    print(f"ok: child {child_dir} and teacher {cfg.teacher or sft_dir} loaded")

    with step("child turn"):
        prompt = as_prompt(window.context)
        queries, query_mask = encode_prompts(tokenizer, [prompt])
        expect(queries.shape == query_mask.shape and queries.shape[0] == 1, f"prompt ids {tuple(queries.shape)} "
               f"and mask {tuple(query_mask.shape)} must both be (1, T)")
        gen = sample(models.policy, queries, query_mask, max_new_tokens=ppo.max_new_tokens, temperature=ppo.temperature,
                     eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                     generator=torch.Generator().manual_seed(cfg.seed))
        width = gen.responses.shape[1]
        expect(gen.responses.shape == gen.logprobs.shape == (1, width) and 1 <= width <= ppo.max_new_tokens,
               f"responses {tuple(gen.responses.shape)} and log-probs {tuple(gen.logprobs.shape)} must both be "
               f"(1, R) with R <= {ppo.max_new_tokens}")
        expect(bool(torch.isfinite(gen.logprobs).all() and (gen.logprobs <= 0).all()), "log-probs must be finite and <= 0")
        child_text = decode(tokenizer, gen.responses)[0]
    print(f"ok: child turn {child_text!r}")
    with step("policy and value forward"):
        input_ids = torch.cat([queries, gen.responses], dim=1)
        attention_mask = torch.cat([query_mask, torch.ones_like(gen.responses)], dim=1)
        with torch.no_grad():
            logits, hidden = forward_policy(models, input_ids, attention_mask, queries.shape[1], ppo.temperature,
                                            want_hidden=True)
            values = response_values(models, input_ids, attention_mask, queries.shape[1], hidden)
        expect(logits.shape[:2] == (1, width) and logits.shape[2] >= len(tokenizer),
               f"logits {tuple(logits.shape)} must be (1, {width}, >= {len(tokenizer)})")
        expect(values.shape == (1, width), f"values {tuple(values.shape)} must be (1, {width})")
    print(f"ok: logits {tuple(logits.shape)}, values {tuple(values.shape)}")
    with step("teacher turn and reward"):
        reward = DialogueReward(teacher, RewardRegistry(cohesion_weights=cfg.cohesion))
        scores, components = reward.combine(ppo.rewards, [prompt], [child_text])
        expect(scores.shape == (1,), f"scores {tuple(scores.shape)} must be (1,)")
        expect(math.isfinite(float(scores[0])), f"score {float(scores[0])} must be finite")
        if "cohesion" in components:
            expect(0.0 <= float(components["cohesion"][0]) <= 1.0, "cohesion must lie in [0, 1]")
        reply = teacher.reply([window.context + [child_text]])[0]
    print(f"ok: teacher turn {reply!r}; reward {float(scores[0]):.4f} "
          f"({', '.join(f'{k} {float(v[0]):.4f}' for k, v in components.items())})")
    print("dialogue check passed")


if __name__ == "__main__":
    run_stage(main)
