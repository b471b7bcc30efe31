"""Tiny offline assets: a character-level ChatML tokenizer, small random Qwen2 models and a synthetic addition
task, all built from code so tests, the demo and CPU experiments never touch a model or dataset hub.

Only the build entry points are exported here, because they import nothing heavy; the builders live in
verl_ext.tiny.tokenizer, verl_ext.tiny.model and verl_ext.tiny.arithmetic.
"""

from verl_ext.tiny.assets import TinyAssets, TinyBuildParams, ensure_tiny_assets

__all__ = ["TinyAssets", "TinyBuildParams", "ensure_tiny_assets"]
