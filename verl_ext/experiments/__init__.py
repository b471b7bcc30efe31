"""Experiment tooling around the recipe, not part of a training run: benchmarks (``bench``), the learning testbed
(``learning``), the shared-prefix exactness harness and check (``shared_prefix_harness``, ``shared_prefix_check``),
the demo's run summary (``run_summary``) and the machine record every result carries (``machine``).
Each script in ``scripts/`` is a thin command line over one of these."""
