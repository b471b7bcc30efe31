"""verl_ext: the RPO (Reinforcement fine-tuning with Partial reasoning Optimization) library for verl."""
