"""Hyperparameter studies with Optuna (``plantml-tune``): search spaces written in Hydra's
sweep grammar, pruning while trials train, the study runner, and the study folder's files."""
