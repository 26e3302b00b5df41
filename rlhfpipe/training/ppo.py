"""PPO for a chat policy, on plain PyTorch + transformers (+ peft), read top to bottom like CleanRL.

One update = rollout -> rewards -> advantages -> several epochs of clipped updates over mini-batches.
Implementation details follow "The N+ Implementation Details of RLHF with PPO" (Huang et al.,
arXiv:2403.17031) and its code, vwxyzjn/summarize_from_feedback_details/summarize_from_feedback_details/ppo.py@ee77a9abc31f5338365ee087945c5bcafac7f1ca
("N+ ppo.py#L<line>" below): dropout off (#L195, #L493), EOS truncation with a missing-EOS penalty
(#L665-L667), per-token KL penalty with the score on the last token (#L680-L685), the rollout
temperature reused for every log-prob (#L625, #L733), rewards optionally and advantages always
whitened per rollout (#L688-L690, #L703). The math itself is in ppo_math, each function with its line.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from rlhfpipe import devices, distributed
from rlhfpipe.config import ParamError, PPOConfig, as_dict
from rlhfpipe.devices import autocast
from rlhfpipe.errors import PipelineError
from rlhfpipe.models.generation import decode, encode_prompts, position_ids_from_mask, sample
from rlhfpipe.models.loading import disable_dropout, load_causal_lm, load_sequence_classifier, peft_config
from rlhfpipe.models.stop_tokens import stop_token_ids
from rlhfpipe.rewards.reward_model import token_values
from rlhfpipe.training.ppo_math import (
    AdaptiveKLController,
    FixedKLController,
    compute_gae,
    entropy_from_logits,
    kl_estimate,
    logprobs_from_logits,
    masked_mean,
    masked_mean_var_reduced,
    masked_whiten,
    policy_loss,
    response_positions,
    token_rewards,
    truncate_after_eos,
    value_loss,
)


class ValueHead(torch.nn.Module):
    """A scalar head on the policy's last hidden state (``ppo.value_model: head``): no second network."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.score = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.score.weight)
        torch.nn.init.zeros_(self.score.bias)


@dataclass
class PPOModels:
    policy: torch.nn.Module
    """trainable causal LM (a peft model when LoRA is on)"""
    ref_policy: torch.nn.Module | None
    """frozen reference; None with LoRA, where the base with the adapter disabled is the reference"""
    value_model: torch.nn.Module
    """sequence classifier initialised from the reward model, or a ValueHead on the policy"""
    lora: bool = False

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        params = [p for p in self.policy.parameters() if p.requires_grad]
        return params + [p for p in self.value_model.parameters() if p.requires_grad]


def build_models(cfg: PPOConfig, policy_dir: str, value_dir: str, tokenizer, device) -> PPOModels:
    """The policy from ``policy_dir`` with dropout off; its reference, a frozen copy (with LoRA: the base with
    the adapter disabled, so no second copy); the value model, a head on the policy (``value_model: head``)
    or a sequence classifier started from ``value_dir`` (the reward model, in the ppo stage)."""
    policy = load_causal_lm(policy_dir, tokenizer)
    disable_dropout(policy)
    ref_policy = None
    if cfg.lora.enabled:
        from peft import get_peft_model

        policy = get_peft_model(policy, peft_config(cfg.lora, "CAUSAL_LM"))
        disable_dropout(policy)  # LoRA's own dropout too
    else:
        ref_policy = copy.deepcopy(policy).eval().requires_grad_(False)
    if cfg.value_model == "head":
        value_model = ValueHead(policy.config.hidden_size)
    else:
        value_model = load_sequence_classifier(value_dir, tokenizer)
        if cfg.normalize_rewards:
            fold_normalisation(value_model, value_dir)
        if cfg.lora.enabled:
            value_model = with_lora(value_model, cfg)
        disable_dropout(value_model)
    for model in (policy, ref_policy, value_model):
        if model is not None:
            devices.place(model, device)
    return PPOModels(policy=policy, ref_policy=ref_policy, value_model=value_model, lora=cfg.lora.enabled)


def fold_normalisation(value_model, reward_dir: str) -> None:
    """Rescale the scalar head so the value model starts by predicting the normalised score PPO is trained on,
    (r - mean) / std, rather than the raw reward: a head with a bias, w / std and -mean / std (a no-op without
    stored statistics)."""
    from rlhfpipe.rewards.reward_model import STATS_FILE

    stats_path = Path(reward_dir) / STATS_FILE
    if not stats_path.is_file():
        return
    stats = json.loads(stats_path.read_text())
    mean, std = float(stats["mean"]), float(stats["std"])
    old = value_model.score
    head = torch.nn.Linear(old.in_features, old.out_features, bias=True, dtype=old.weight.dtype)
    with torch.no_grad():
        head.weight.copy_(old.weight / std)
        head.bias.copy_((old.bias if old.bias is not None else torch.zeros_like(head.bias)) / std - mean / std)
    value_model.score = head


def with_lora(value_model, cfg: PPOConfig):
    """The value model with LoRA adapters on ``ppo.lora``'s modules and a trainable head; the backbone is frozen.

    Returns the model itself (adapters injected in place), so the per-token value read stays one code path.
    """
    from peft import get_peft_model

    peft_model = get_peft_model(value_model, peft_config(cfg.lora, "SEQ_CLS"))
    return peft_model.base_model.model


@dataclass
class RunState:
    update: int = 0
    kl_coef: float = 0.0
    history: list[dict] = field(default_factory=list)


def forward_policy(models: PPOModels, input_ids, attention_mask, context_length: int, temperature: float,
                   use_reference: bool = False, want_hidden: bool = False):
    """Logits for the response positions: the token at t is predicted from position context_length - 1 + t.

    The LM head runs on those T positions only (``logits_to_keep``): with a 50k-128k vocabulary, logits over
    the prompt positions would dominate the memory of every forward.
    """
    model = models.ref_policy if use_reference and models.ref_policy is not None else models.policy
    kwargs = dict(input_ids=input_ids, attention_mask=attention_mask,
                  position_ids=position_ids_from_mask(attention_mask), output_hidden_states=want_hidden,
                  logits_to_keep=input_ids.shape[1] - context_length + 1)
    if use_reference and models.lora:
        with models.policy.disable_adapter():
            out = models.policy(**kwargs)
    else:
        out = model(**kwargs)
    logits = out.logits[:, :-1]  # (B, T, V): the head ran on the last T + 1 positions only
    hidden = response_positions(out.hidden_states[-1], context_length) if want_hidden else None
    return logits, hidden


@torch.no_grad()
def rollout_scores(models: PPOModels, input_ids, attention_mask, responses, context_length: int, temperature: float,
                   chunk: int, with_policy: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(B, T) reference log-probs, values and (``with_policy``) the policy's log-probs of a rollout, ``chunk``
    rows per forward, so the no-grad forwards never hold more activations than one training micro-batch does."""
    ref_logprobs, values, logprobs = [], [], []
    value_head = isinstance(models.value_model, ValueHead)
    for start in range(0, input_ids.shape[0], chunk):
        rows = slice(start, start + chunk)
        ids, att = input_ids[rows], attention_mask[rows]
        ref_logits, _ = forward_policy(models, ids, att, context_length, temperature, use_reference=True)
        ref_logprobs.append(logprobs_from_logits(ref_logits, responses[rows], temperature))
        del ref_logits
        hidden = None
        if value_head or with_policy:
            logits, hidden = forward_policy(models, ids, att, context_length, temperature, want_hidden=value_head)
            if with_policy:
                logprobs.append(logprobs_from_logits(logits, responses[rows], temperature))
            del logits
        values.append(response_values(models, ids, att, context_length, hidden))
    return torch.cat(ref_logprobs), torch.cat(values), torch.cat(logprobs) if with_policy else None


def response_values(models: PPOModels, input_ids, attention_mask, context_length: int, hidden=None):
    """(B, T) value of the state before each response token."""
    if isinstance(models.value_model, ValueHead):
        return models.value_model.score(hidden).squeeze(-1).float()
    return response_positions(token_values(models.value_model, input_ids, attention_mask), context_length)


def lr_lambda(schedule: str, total: int, warmup: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        if schedule == "constant":
            return 1.0
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return max(0.0, 1.0 - progress)
    return factor


# --------------------------------------------------------------------------------------------------
# Checkpoints: tensors in safetensors, everything else in JSON (no pickle anywhere).
# --------------------------------------------------------------------------------------------------
def trainable_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters the optimizer updates, by name; a tied weight is listed once (named_parameters dedups)."""
    return {name: p.detach().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def load_trainable(model: torch.nn.Module, path: Path) -> None:
    """Load what trainable_tensors saved; the names must be exactly the model's trainable ones."""
    tensors = load_file(path)
    expected = {name for name, p in model.named_parameters() if p.requires_grad}
    if set(tensors) != expected:
        raise PipelineError(f"{path}: holds other tensors than this model trains; delete the checkpoint folder")
    model.load_state_dict(tensors, strict=False)


def generator_key(rank: int) -> str:
    # rank 0 keeps the one-process name, so a one-process checkpoint is laid out as before
    return "generator" if rank == 0 else f"generator.{rank}"


def save_checkpoint(directory: Path, models: PPOModels, optimizer, scheduler, generator_states: list[torch.Tensor],
                    state: RunState, batch_size: int) -> None:
    """Called by the main process; ``generator_states`` holds every process's sampling generator, in rank order."""
    tmp = directory / "checkpoint.tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    # trainable tensors only: the frozen base (under LoRA) is rebuilt from the stage's inputs on resume
    save_file(trainable_tensors(models.policy), tmp / "policy.safetensors")
    save_file(trainable_tensors(models.value_model), tmp / "value.safetensors")
    opt = optimizer.state_dict()
    tensors = {f"{i}.{k}": v for i, s in opt["state"].items() for k, v in s.items()}
    for r, generator_state in enumerate(generator_states):
        tensors[generator_key(r)] = generator_state.cpu()
    tensors["torch_rng"] = torch.get_rng_state()
    save_file(tensors, tmp / "optimizer.safetensors")
    (tmp / "state.json").write_text(json.dumps({
        "update": state.update, "kl_coef": state.kl_coef, "history": state.history, "world_size": len(generator_states),
        "param_groups": opt["param_groups"], "scheduler": scheduler.state_dict(),
    }))
    # for people and tools watching a run; resuming reads state.json only
    scores = [row["objective/score"] for row in state.history]
    (tmp / "training_info.json").write_text(json.dumps({
        "step": state.update, "episodes": state.update * batch_size, "mean_reward": sum(scores) / len(scores),
    }, indent=2) + "\n")
    # Swap by renames so a kill at any moment leaves one complete checkpoint (old or new) on disk.
    final, old = directory / "checkpoint", directory / "checkpoint.old"
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)


def load_checkpoint(directory: Path, models: PPOModels, optimizer, scheduler, generator: torch.Generator) -> RunState | None:
    ckpt = directory / "checkpoint"
    if not ckpt.exists():  # killed between the two renames of save_checkpoint
        ckpt = directory / "checkpoint.old"
    if not (ckpt / "state.json").is_file():
        return None
    meta = json.loads((ckpt / "state.json").read_text())
    world, written_by = distributed.world_size(), meta.get("world_size", 1)
    if written_by != world:  # each process resumes its own sampling generator
        print(f"ppo: not resuming {ckpt}: it was written by {written_by} processes, this run has {world}")
        return None
    load_trainable(models.policy, ckpt / "policy.safetensors")
    load_trainable(models.value_model, ckpt / "value.safetensors")
    tensors = load_file(ckpt / "optimizer.safetensors")
    generator.set_state(tensors[generator_key(distributed.rank())])
    for r in range(world):
        tensors.pop(generator_key(r))
    torch.set_rng_state(tensors.pop("torch_rng"))
    opt_state: dict[int, dict] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        opt_state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": opt_state, "param_groups": meta["param_groups"]})
    scheduler.load_state_dict(meta["scheduler"])
    return RunState(update=meta["update"], kl_coef=meta["kl_coef"], history=meta["history"])


# --------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------
def train_ppo(cfg: PPOConfig, models: PPOModels, tokenizer, prompts: list[list[dict]], registry, live,
              checkpoint_directory: Path, precision: str = "fp32") -> RunState:
    """Run ``cfg.num_updates`` PPO updates; resumes from ``checkpoint_directory`` when it holds a checkpoint.
    ``precision`` (runtime.precision) bf16 runs every forward under bf16 autocast.

    With several processes each one rolls out and trains on its slice of every rollout (batch sizes are global):
    gradients are averaged, advantages whitened and logged means taken over all of them.
    """
    eos_id, pad_id = stop_token_ids(tokenizer, models.policy), tokenizer.pad_token_id
    world, rank = distributed.world_size(), distributed.rank()
    if cfg.micro_batch_size % world:
        raise ParamError("ppo.batch_size", cfg.batch_size, f"its micro-batch (batch_size / mini_batches / grad_accum "
                         f"= {cfg.micro_batch_size}) must be divisible by the number of processes ({world})")
    batch_size, mini_batch_size, micro_batch_size = (n // world for n in (
        cfg.batch_size, cfg.mini_batch_size, cfg.micro_batch_size))
    device = next(models.policy.parameters()).device
    if device.type == "cpu":
        # Weights loaded from safetensors are copy-on-write maps of the file: the first optimizer step would fault
        # their pages in one at a time (3 s for the real model's policy and value). One copy now costs a tenth.
        for param in models.trainable_parameters():
            param.data = param.data.clone()
    # The fused kernel updates every tensor in one pass; the default foreach path holds temporaries the size of
    # all trainable weights, which on a full fine-tune of the real model is a gigabyte and several seconds.
    optimizer = torch.optim.AdamW(models.trainable_parameters(), lr=cfg.learning_rate, eps=1e-5, weight_decay=0.0,
                                  fused=True if device.type in ("cpu", "cuda") else None)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(cfg.lr_schedule, cfg.num_updates, int(cfg.warmup_ratio * cfg.num_updates)))
    kl_ctl = (AdaptiveKLController(cfg.kl_coef, cfg.target_kl, cfg.kl_horizon) if cfg.adaptive_kl
              else FixedKLController(cfg.kl_coef))
    # rank 0 samples as a single process does; the offset keeps other ranks off the prompt-order seed (seed + 1)
    generator = devices.generator(cfg.seed + 1_000_003 * rank, device)
    state = load_checkpoint(checkpoint_directory, models, optimizer, scheduler, generator) or RunState(kl_coef=kl_ctl.value)
    kl_ctl.value = state.kl_coef
    if state.update:
        tqdm.write(f"ppo: resuming at update {state.update} of {cfg.num_updates}")
    for row in state.history:  # replay the curves of the interrupted run
        for key, value in row.items():
            live.log_metric(key, value)
        live.next_step()
    save_every = checkpoint_interval(cfg)
    # Prompt order: a fixed permutation per pass over the data, derived from the seed alone, so a
    # resumed run sees the same prompts as an uninterrupted one.
    order_gen = torch.Generator().manual_seed(cfg.seed + 1)
    passes = math.ceil(cfg.num_updates * cfg.batch_size / len(prompts))
    order = torch.cat([torch.randperm(len(prompts), generator=order_gen) for _ in range(passes)]).tolist()

    shared = isinstance(models.value_model, ValueHead)  # a value head reads the policy's own hidden states
    bar = tqdm(total=cfg.num_updates, initial=state.update, desc="ppo updates", unit="update",
               disable=not distributed.is_main())
    for update in range(state.update, cfg.num_updates):
        rollout = order[update * cfg.batch_size:(update + 1) * cfg.batch_size]
        batch_prompts = [prompts[i] for i in rollout[rank * batch_size:(rank + 1) * batch_size]]
        # 1. rollout: sample responses with the KV cache; keep the sampling log-probs
        models.policy.eval()
        queries, query_mask = encode_prompts(tokenizer, batch_prompts)
        queries, query_mask = queries.to(device), query_mask.to(device)
        context_length = queries.shape[1]
        with autocast(precision, device):
            gen = sample(models.policy, queries, query_mask, max_new_tokens=cfg.max_new_tokens,
                         temperature=cfg.temperature, eos_token_id=eos_id, pad_token_id=pad_id, generator=generator)
        # 2. truncate after the first EOS; the mask keeps the EOS itself. Columns past the longest response
        # hold only padding: dropping them saves every later forward and backward their cost.
        responses, mask = truncate_after_eos(gen.responses, eos_id, pad_id)
        width = max(1, int(mask.sum(1).max()))
        responses, mask = responses[:, :width], mask[:, :width]
        logprobs = gen.logprobs[:, :width] * mask
        input_ids = torch.cat([queries, responses], dim=1)
        attention_mask = torch.cat([query_mask, mask], dim=1)
        texts = decode(tokenizer, responses)
        with torch.no_grad():
            # 3. reference log-probs at the rollout temperature, values of the rollout states. Under bf16 the
            # sampler's cached one-token forwards round differently from the full forward of the update, so the
            # old log-probs are recomputed by that forward: the first ratio is then 1, as in fp32.
            with autocast(precision, device):
                ref_logprobs, values, recomputed = rollout_scores(
                    models, input_ids, attention_mask, responses, context_length, cfg.temperature, micro_batch_size,
                    with_policy=precision != "fp32")
            ref_logprobs, values = ref_logprobs * mask, values * mask
            if recomputed is not None:
                logprobs = recomputed * mask
            # 4. scores: weighted registry rewards, missing-EOS penalty, clipping; the reward model's forward runs
            # under the same autocast as the other rollout forwards (scores come out in fp32)
            with autocast(precision, device):
                scores, components = registry.combine(cfg.rewards, batch_prompts, texts)
            scores = scores.to(device)
            has_eos = torch.isin(responses, torch.tensor(eos_id, device=device)).any(dim=1)
            scores = scores - cfg.missing_eos_penalty * (~has_eos).float()  # N+ ppo.py#L665-L667
            if cfg.reward_clip > 0:
                scores = scores.clamp(-cfg.reward_clip, cfg.reward_clip)
            # 5. per-token rewards: KL penalty everywhere, score on the last real token
            kl = kl_estimate(logprobs, ref_logprobs, cfg.kl_estimator) * mask
            rewards, non_score_reward = token_rewards(scores, kl, kl_ctl.value, mask)
            if cfg.whiten_rewards:  # N+ ppo.py#L688-L690
                rewards = masked_whiten(rewards, mask, shift_mean=False, all_reduce_sum=distributed.all_reduce_sum)
            # 6. advantages and returns (GAE), advantages whitened over the whole rollout
            advantages, returns = compute_gae(values, rewards, mask, cfg.gamma, cfg.lam)
            advantages = masked_whiten(advantages, mask, all_reduce_sum=distributed.all_reduce_sum)  # N+ ppo.py#L703

        # 7. PPO epochs over shuffled mini-batches, with gradient accumulation over micro-batches
        models.policy.train()
        stats: dict[str, list[float]] = {k: [] for k in ("pg_loss", "vf_loss", "clipfrac", "vf_clipfrac", "approxkl",
                                                         "entropy", "ratio")}
        for _ in range(cfg.ppo_epochs):
            perm = torch.randperm(batch_size, generator=generator, device=device)
            for mb_start in range(0, batch_size, mini_batch_size):
                mb_inds = perm[mb_start:mb_start + mini_batch_size]
                optimizer.zero_grad(set_to_none=True)
                # every process's tokens in this mini-batch: each micro-batch's token mean is weighted by its share
                mb_tokens = distributed.all_reduce_sum(mask[mb_inds].sum().float())
                for micro_start in range(0, mini_batch_size, micro_batch_size):
                    inds = mb_inds[micro_start:micro_start + micro_batch_size]
                    mb_mask = mask[inds].float()
                    # Token means over this process's micro-batch rows, weighted by their share of the mini-batch's
                    # tokens over all processes (times the process count, which averaging gradients divides out):
                    # summed over micro-batches and averaged over processes they become the token mean over the
                    # whole mini-batch, however ragged the responses and however many micro-batches.
                    weight = float(mb_mask.sum() * distributed.world_size() / mb_tokens)
                    share = weight * cfg.grad_accum  # logged means: one entry per micro-batch, token-weighted
                    with autocast(precision, device):
                        logits, mb_hidden = forward_policy(
                            models, input_ids[inds], attention_mask[inds], context_length, cfg.temperature,
                            want_hidden=shared)
                    new_logprobs = logprobs_from_logits(logits, responses[inds], cfg.temperature)
                    pg_loss, pg_stats = policy_loss(new_logprobs, logprobs[inds], advantages[inds], mb_mask, cfg.cliprange)
                    if not shared:
                        # A separate value model shares no weights with the policy: backward through each graph in
                        # turn gives the same gradients as one backward of the sum, and never holds both graphs.
                        (pg_loss * weight).backward()
                    with autocast(precision, device):
                        new_values = response_values(models, input_ids[inds], attention_mask[inds], context_length,
                                                     mb_hidden)
                    vf_loss, vf_clipfrac = value_loss(new_values, values[inds], returns[inds], mb_mask, cfg.cliprange_value)
                    if shared:
                        ((pg_loss + cfg.vf_coef * vf_loss) * weight).backward()
                    else:
                        (cfg.vf_coef * vf_loss * weight).backward()
                    with torch.no_grad():
                        stats["pg_loss"].append(pg_loss.item() * share)
                        stats["vf_loss"].append(vf_loss.item() * share)
                        stats["clipfrac"].append(pg_stats["clipfrac"].item() * share)
                        stats["approxkl"].append(pg_stats["approxkl"].item() * share)
                        stats["ratio"].append(pg_stats["ratio"].item() * share)
                        stats["vf_clipfrac"].append(vf_clipfrac.item() * share)
                        stats["entropy"].append(
                            masked_mean(entropy_from_logits(logits, cfg.temperature), mb_mask).item() * share)
                distributed.average_gradients(models.trainable_parameters())
                torch.nn.utils.clip_grad_norm_(models.trainable_parameters(), cfg.max_grad_norm)
                optimizer.step()
        lr = scheduler.get_last_lr()[0]
        scheduler.step()

        # 8. KL controller and logging
        # means over the whole rollout, every process's slice included, so all processes adapt the KL alike
        mean_kl = distributed.mean(kl.sum(1))
        kl_ctl.update(mean_kl, cfg.batch_size)
        residual_var = masked_mean_var_reduced(returns - values, mask, distributed.all_reduce_sum)[1]
        returns_var = masked_mean_var_reduced(returns, mask, distributed.all_reduce_sum)[1]
        explained_var = 1.0 - float(residual_var / returns_var.clamp(min=1e-8))
        row = {
            "objective/score": distributed.mean(scores),
            "objective/kl": mean_kl,
            "objective/non_score_reward": distributed.mean(non_score_reward.sum(1)),
            "objective/kl_coef": state.kl_coef,
            **{key: distributed.average(sum(stats[name]) / len(stats[name])) for key, name in (
                ("policy/entropy", "entropy"), ("policy/approxkl", "approxkl"), ("policy/clipfrac", "clipfrac"),
                ("policy/ratio", "ratio"), ("loss/policy", "pg_loss"), ("loss/value", "vf_loss"),
                ("value/clipfrac", "vf_clipfrac"))},
            "value/explained_variance": explained_var,
            "train/learning_rate": lr,
            "rollout/response_length": distributed.mean(mask.sum(1).float()),
            "rollout/eos_rate": distributed.mean(has_eos.float()),
            **{f"reward/{name}": distributed.mean(v) for name, v in components.items()},
        }
        row = {k: round(v, 6) for k, v in row.items()}
        for key, value in row.items():
            live.log_metric(key, value)
        live.next_step()
        state.update, state.kl_coef = update + 1, kl_ctl.value
        state.history.append(row)
        bar.set_postfix(score=f"{row['objective/score']:.3f}", kl=f"{mean_kl:.2f}")
        bar.update(1)
        if cfg.log_samples and (update % max(1, cfg.num_updates // 5) == 0) and distributed.is_main():
            tqdm.write(f"[update {update}] {texts[0]!r} -> score {float(scores[0]):.3f}")
        if state.update % save_every == 0 and state.update < cfg.num_updates:
            generator_states = distributed.all_gather(generator.get_state())
            if distributed.is_main():
                save_checkpoint(checkpoint_directory, models, optimizer, scheduler, generator_states, state,
                                cfg.batch_size)
            distributed.barrier()  # no process runs ahead of a checkpoint that is still being written
    bar.close()
    return state


def checkpoint_interval(cfg: PPOConfig) -> int:
    """Updates between checkpoints: ``save_every`` of training, at least one."""
    return max(1, round(cfg.save_every * cfg.num_updates))


def run_config(cfg: PPOConfig) -> dict:
    """The resolved settings written next to the final policy (derived sizes included)."""
    return {**as_dict(cfg), "mini_batch_size": cfg.mini_batch_size, "micro_batch_size": cfg.micro_batch_size,
            "num_updates": cfg.num_updates}
