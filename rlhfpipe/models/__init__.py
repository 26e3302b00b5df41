"""Models: loading and saving (safe formats only), tokenizers, batched generation."""
