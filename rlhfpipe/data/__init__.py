"""Data: the generated corpus, native-format readers, the normalised schema and the prepare step."""
