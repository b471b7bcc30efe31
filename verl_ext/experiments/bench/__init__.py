"""The rollout benchmark behind ``scripts/bench_rollout.py``: RPO against the full path through the recipe's own
trainer. ``arms`` (what each step runs: the registry of arms and the step plan), ``records`` (the file logger's lines
to per-arm ratios and the JSON/markdown summary; no verl import), ``trainer`` (the trainer subclass that runs the plan
through ``RayRPOTrainer``'s per-step hooks) and ``rollout`` (the command line and the run). The update benchmark
(``scripts/bench_update.py``) lives in ``update``."""
