"""RPO's rollout glue for verl's agent-loop machinery: the suffix-generation agent loop and its registration."""

from .agent_loop import RPO_AGENT_NAME, RPOAgentLoop, agent_loop_config_path

__all__ = ["RPO_AGENT_NAME", "RPOAgentLoop", "agent_loop_config_path"]
