"""The experience cache: one earlier answer per training prompt.

``store`` (the in-memory cache and its parquet file), ``keys`` (stable per-prompt keys), ``replacement`` (which new
answer replaces an entry: a registry of policies), ``healing`` (refreshes, counterpart answers, what a new answer
inherits), ``checkpoint`` (the cache and RNG inside verl's checkpoint
folders), ``offline`` (filling the cache before training) and ``atomic`` (crash-safe file writes)."""
