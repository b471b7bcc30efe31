"""What the recipe's trainer computes and checks around verl's loop, without verl's workers (testable anywhere):
``metrics`` (the per-step ``rpo/*`` metrics), ``group_filter`` (DAPO's dynamic sampling), ``data_checks`` (the
training data RPO keys its cache by) and ``topology`` (the configuration against the world size it names)."""
