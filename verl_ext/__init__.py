"""verl_ext: the RPO (Reinforcement fine-tuning with Partial reasoning Optimization) library for verl 0.9.1.

The recipe in ``recipe/rpo/`` (``main_rpo.py``, ``RayRPOTrainer``) runs a training step through these modules:

* ``config``: every ``rpo.*`` option as verl config dataclasses (``RPOConfig``), and the checks of what RPO supports.
* ``verl_compat``: every private verl name the project uses, checked by name and signature against verl 0.9.1.
* ``cache``: the experience cache (store, prompt keys, replacement policies, healing, checkpoint files, offline
  build).
* ``rollout``: cut policies (the adaptive one and the run's token budget among them), cold-start policies,
  ``PartialRollout``, the ``rpo_agent`` agent loop, verified cuts.
* ``rewards``: ``compute_score`` (accuracy + format + cosine length), verl's custom reward function.
* ``training``: per-step ``rpo/*`` metrics, the DAPO group filter, start-up data and topology checks.
* ``shared_prefix``: rank balancing, micro-batches and ``SharedPrefixFSDPEngine`` computing each group's shared part
  once in the log-prob, reference and update passes; its ``verl.plugins`` entry point.
* ``cpu``: the CPU backend as verl and vLLM plugins, inert unless ``VERL_PLATFORM=cpu``.
* ``data_prep``: hub math data sets to verl's RL parquet with the RPO system prompt.
* ``tiny``: a tiny tokenizer, model and arithmetic task built from code, for tests, the demo and CPU experiments.
* ``compare``: a run against its baseline from verl's logs (file logger, tensorboard, wandb): ratios, accuracy
  differences with intervals, plots (``python -m verl_ext.compare``).
* ``experiments``: benchmarks, the learning testbed, the shared-prefix exactness check and the demo's run summary.

docs/architecture.md has the package map and the data flow of one training step.
"""
