"""Shared-prefix training passes: each group's shared part (prompt + cached prefix) computed once per micro-batch.

Torch and transformers only (importable without verl): ``layout`` (packing), ``attention`` (grouped sdpa), ``check``
(exactness on tiny models), ``support`` (which models are served). Plain Python: ``rank_balance`` (rows to
data-parallel ranks), ``micro_batches`` (rows to micro-batches), ``packing_metrics`` (the per-pass report). With
verl: ``engine`` (verl's FSDP engine with the packed passes), ``verl_compat`` (the verl internals it relies on),
``batch`` (the trainer's columns and checks), ``install_check`` (the engine plugin is loadable), ``harness``.
"""
