"""verl recipes of this project (run from the repository root: python -m recipe.rpo.main_rpo)."""
