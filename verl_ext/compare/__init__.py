"""Compare runs with their baseline from the metrics verl logged (``python -m verl_ext.compare``, see ``cli``).

* ``sources``: a registry of readers (verl's file logger, tensorboard, wandb) giving one per-step view of a run.
* ``file_logger``: verl's file-logger JSONL, also read by the demo's summary and the learning testbed.
* ``claims``: the paper's claims on the runs: cost ratios, validation differences with intervals, diagnostics.
* ``curves``: accuracy against cumulative wall-clock and tokens, and the mean of several runs' curves.
* ``plots``, ``report``: the pictures, the table and ``report.md``.
"""
