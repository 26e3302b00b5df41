"""Evaluation: pure metrics, policy-level evaluation on held-out prompts, static figures."""
