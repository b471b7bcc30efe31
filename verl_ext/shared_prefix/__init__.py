"""Shared-prefix training passes: each group's shared part (prompt + cached prefix) computed once per micro-batch.

Torch and transformers only (importable without verl): ``layout`` (packing), ``attention`` (grouped sdpa),
``support`` (which models are served). Plain Python: ``rank_balance`` (rows to data-parallel ranks),
``micro_batches`` (rows to micro-batches), ``packing_metrics`` (the per-pass report), ``install_check`` (the engine
plugin is loadable and asked for). With verl: ``engine`` (verl's FSDP engine with the packed passes; the verl
internals it relies on are in ``verl_ext/verl_compat.py``), ``batch`` (the trainer's columns and checks),
``verl_plugin`` (installs the engine in the processes of a run with ``rpo.shared_prefix=true``). The exactness
harness and check are experiment tooling: ``verl_ext/experiments/shared_prefix_harness.py`` and
``verl_ext/experiments/shared_prefix_check.py``.
"""
