"""Seed robustness: the RL results of several experiments that differ only in the RL seeds, as mean ± std, and
how many seeds meet each target.

The experiments come from ``scripts/seeds.sh`` (``dvc exp run --queue`` with the seeds of ppo, grpo, both
MOODPO iterations and dialogue PPO set per experiment, SFT and reward model shared). ``dvc exp show --json``
names them and their commits; each experiment's metrics files are read from its commit, as a mapping metrics
file -> its data: metrics/summary.json (compare), metrics/moodpo.json (moodpo_eval), metrics/dialogue_ppo.json.

Targets, one seed at a time:
- ppo: reward gain >= 1.0 SFT std, mean KL to SFT <= 6 nats, empathy ratio above SFT's, no monitor flagged;
  also on the means over seeds (gain, KL, both empathy ratios; no seed flagged);
- grpo: mean reward-model score above SFT's, no monitor flagged;
- moodpo: for every objective the paired 95% interval of weight high minus low lies above 0, and the
  hypervolume is above SFT's under the same instructions;
- dialogue_ppo: the paired 95% interval of the held-out cohesion gain lies above 0, and the child's words
  per turn stay at least 0.8 of their length before PPO.
"""

from __future__ import annotations

import json
import math
from typing import Callable

from rlhfpipe.errors import PipelineError

SUMMARY, MOODPO, DIALOGUE = "metrics/summary.json", "metrics/moodpo.json", "metrics/dialogue_ppo.json"
PPO_MIN_GAIN, PPO_MAX_KL, MIN_WORDS_RATIO = 1.0, 6.0, 0.8


def experiments_from_show(show: list[dict], prefix: str) -> dict[str, str]:
    """Experiments named ``prefix``... in ``dvc exp show --json`` output: name -> the commit holding its results.

    Only finished experiments count: a failed, queued or running one stops with its name, since a queued or
    running experiment's entry carries the baseline's metrics, not its own."""
    found: dict[str, str] = {}
    for baseline in show:
        for exp_range in baseline.get("experiments") or []:
            for state in exp_range["revs"][:1]:  # the first rev of a range is the experiment's result
                name = state.get("name") or exp_range.get("name") or state["rev"]
                if not name.startswith(prefix):
                    continue
                if state.get("error") or not state.get("data"):
                    raise PipelineError(f"experiment {name}: no results ({(state.get('error') or {}).get('msg', 'not run')}); "
                                        f"rerun it or remove it with dvc exp remove {name}")
                run = (exp_range.get("executor") or {}).get("state", "success")
                if run != "success":
                    raise PipelineError(f"experiment {name}: {run}; wait until `dvc queue status` shows it done, "
                                        f"or remove it with dvc exp remove {name}")
                found[name] = state["rev"]
    if not found:
        raise PipelineError(f"dvc exp show: no experiment named {prefix}*; run scripts/seeds.sh first")
    return dict(sorted(found.items()))


def experiment_metrics(revs: dict[str, str], read: Callable[[str, str], str]) -> dict[str, dict[str, dict]]:
    """name -> {metrics file: data}, each file read from the experiment's commit with ``read(rev, path)``.

    Not from ``dvc exp show --json``: it leaves out list values, the 95% intervals the targets are stated in."""
    out: dict[str, dict[str, dict]] = {}
    for name, rev in revs.items():
        out[name] = {}
        for path in (SUMMARY, MOODPO, DIALOGUE):
            try:
                out[name][path] = json.loads(read(rev, path))
            except (OSError, ValueError) as err:
                raise PipelineError(f"experiment {name} ({rev[:7]}): cannot read {path} ({err})") from None
    return out


def _get(metrics: dict[str, dict], name: str, path: str, *keys: str):
    value = metrics.get(path, {})
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            raise PipelineError(f"experiment {name}: {path} has no {'.'.join(keys)}; did every stage run?")
        value = value[key]
    return value


def seed_values(name: str, metrics: dict[str, dict]) -> dict[str, float]:
    """The numbers the targets are stated in, for one experiment."""
    objectives = _get(metrics, name, MOODPO, "moodpo", "responsiveness")
    return {
        "ppo_gain_sft_std": _get(metrics, name, SUMMARY, "ppo", "reward_gain_sft_std"),
        "ppo_kl_to_sft": _get(metrics, name, SUMMARY, "ppo", "kl_to_sft"),
        "ppo_empathy_ratio": _get(metrics, name, SUMMARY, "ppo", "empathy_ratio"),
        "sft_empathy_ratio": _get(metrics, name, SUMMARY, "sft", "empathy_ratio"),
        "ppo_flags": _get(metrics, name, SUMMARY, "ppo", "monitors", "flagged"),
        "grpo_reward_gain": (_get(metrics, name, SUMMARY, "grpo", "reward_mean")
                             - _get(metrics, name, SUMMARY, "sft", "reward_mean")),
        "grpo_flags": _get(metrics, name, SUMMARY, "grpo", "monitors", "flagged"),
        "moodpo_hv_gain": _get(metrics, name, MOODPO, "hypervolume_gain_over_sft"),
        "moodpo_min_ci_low": min(c["difference_ci95"][0] for c in objectives.values()),
        "dialogue_cohesion_gain": (_get(metrics, name, DIALOGUE, "cohesion_after")
                                   - _get(metrics, name, DIALOGUE, "cohesion_before")),
        "dialogue_gain_ci_low": _get(metrics, name, DIALOGUE, "cohesion_gain_ci95")[0],
        "dialogue_words_ratio": _get(metrics, name, DIALOGUE, "child_words_ratio"),
    }


def _ppo_meets(v: dict) -> bool:
    return (v["ppo_gain_sft_std"] >= PPO_MIN_GAIN and v["ppo_kl_to_sft"] <= PPO_MAX_KL
            and v["ppo_empathy_ratio"] > v["sft_empathy_ratio"] and v["ppo_flags"] == 0)


TARGETS = {
    "PPO: gain >= 1.0 SFT std, KL <= 6, empathy above SFT, no flag": _ppo_meets,
    "GRPO: reward above SFT, no flag": lambda v: v["grpo_reward_gain"] > 0 and v["grpo_flags"] == 0,
    "MOODPO: every objective's high-low interval above 0, hypervolume above SFT":
        lambda v: v["moodpo_min_ci_low"] > 0 and v["moodpo_hv_gain"] > 0,
    "Dialogue PPO: cohesion gain interval above 0, words ratio >= 0.8":
        lambda v: v["dialogue_gain_ci_low"] > 0 and v["dialogue_words_ratio"] is not None
        and v["dialogue_words_ratio"] >= MIN_WORDS_RATIO,
}


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n - 1); no std for one value."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((x - mean) ** 2 for x in values) / (len(values) - 1))


def aggregate(experiments: dict[str, dict[str, dict]]) -> dict:
    """Per-quantity mean and std over experiments, and per target the experiments that meet it."""
    values = {name: seed_values(name, metrics) for name, metrics in experiments.items()}
    keys = next(iter(values.values())).keys()
    columns = {k: [float(v[k]) for v in values.values() if v[k] is not None] for k in keys}
    stats = {k: mean_std(xs) for k, xs in columns.items() if xs}
    met = {target: [name for name, v in values.items() if rule(v)] for target, rule in TARGETS.items()}
    means = {k: m for k, (m, _) in stats.items()}
    ppo_on_means = _ppo_meets({**means, "ppo_flags": max(v["ppo_flags"] for v in values.values())})
    return {"experiments": list(values), "values": values, "stats": stats, "met": met, "ppo_mean_meets": ppo_on_means}


def _fmt(mean: float, std: float | None) -> str:
    return f"{mean:.3f} ± {std:.3f}" if std is not None else f"{mean:.3f}"


def seed_table_markdown(result: dict) -> str:
    n = len(result["experiments"])
    lines = [f"Over {n} seeds ({', '.join(result['experiments'])}); mean ± sample std.", "",
             "| quantity | mean ± std |", "|---|---:|"]
    lines += [f"| {k} | {_fmt(*result['stats'][k])} |" for k in result["stats"]]
    lines += ["", "| target | seeds meeting it |", "|---|---:|"]
    for target, names in result["met"].items():
        extra = f"; on the means: {'yes' if result['ppo_mean_meets'] else 'no'}" if target.startswith("PPO") else ""
        lines.append(f"| {target} | {len(names)} of {n}{extra} |")
    return "\n".join(lines) + "\n"
