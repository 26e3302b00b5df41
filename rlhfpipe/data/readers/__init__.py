"""Native-format readers: one module per family of public datasets, all returning the normalised schema."""
