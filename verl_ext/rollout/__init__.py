"""RPO's rollout: where to cut a cached answer (``truncation``, a registry of cut policies; ``adaptive``, the per-prompt
depth policy; ``token_budget``, the run's budget budgeted policies honour), what a cold prompt gets
(``cold_start``, a registry), the step's partial rollout over verl's agent-loop manager (``partial``), the agent loop
that generates a suffix after a cached prefix (``agent_loop``, registered through ``agent_loops.yaml``) and the
current policy's pass over cached answers that verifying cuts read (``verify``).

Import the modules themselves: this package imports nothing, so that the configuration (``verl_ext/config.py``) can
read the registries without verl's agent-loop machinery."""
