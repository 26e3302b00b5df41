"""Training loops: SFT, reward model and GRPO (TRL), PPO (our own) with its math."""
