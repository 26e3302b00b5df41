"""Static figures a person can look at (DVC renders the interactive ones from the TSV/JSON plots)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PPO_PANELS = (
    ("loss/policy", "policy loss"),
    ("train/learning_rate", "learning rate"),
    ("objective/score", "mean reward (score)"),
    ("objective/kl", "KL to reference (nats / response)"),
)


def training_panels(history: list[dict], path: Path, title: str, panels=PPO_PANELS) -> None:
    """A 2x2 figure of the curves a person checks first; PNG without timestamps, so it hashes stably."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    steps = list(range(1, len(history) + 1))
    for ax, (key, label) in zip(axes.flat, panels):
        ax.plot(steps, [row.get(key, float("nan")) for row in history], color="tab:blue")
        ax.set_title(label)
        ax.set_xlabel("update")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
