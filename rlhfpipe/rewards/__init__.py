"""Rewards: the registry PPO, GRPO and MOODPO optimise (reward model, empathy, cohesion, brevity, summary, faithful)."""
