"""A reproducible RLHF pipeline for emotional-support dialogue models, declared in DVC."""
