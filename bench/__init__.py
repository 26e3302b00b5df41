"""Benchmarks of our PPO against TRL's, and the FLOP counter they use."""
