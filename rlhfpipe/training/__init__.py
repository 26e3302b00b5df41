"""Training loops: SFT and reward (TRL), PPO (our own)."""
