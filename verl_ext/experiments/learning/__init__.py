"""The learning testbed: RPO arms against full-path GRPO from one warmed-up tiny model, on CPU, with the arms of a seed
sharing data order and sampling seeds.

``scripts/learning_experiment.py`` is its command line. Modules: :mod:`.arms` (what each arm overrides),
:mod:`.testbed` (the task, model and warm-up every run starts from), :mod:`.curves` (accuracy curves and
diagnostics from verl's file logger), :mod:`.comparison` (statistics over seeds, each arm against the full path
under one pooled variance, the frontier), :mod:`.report` (``curves.json``, plots, ``summary.md``), :mod:`.runner`
(one RL run of the recipe's trainer per arm and seed) and :mod:`.cli`. The pure parts (curves, comparison, report
tables) import neither verl nor matplotlib.
"""
