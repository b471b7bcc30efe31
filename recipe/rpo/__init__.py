"""RPO: reinforcement fine-tuning with partial reasoning optimization, as a verl recipe."""
