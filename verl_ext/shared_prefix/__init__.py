"""Shared-prefix training passes: each group's shared part (prompt + cached prefix) computed once per micro-batch.

``layout`` and ``attention`` need torch and transformers only; ``engine`` plugs them into verl's FSDP engine."""
