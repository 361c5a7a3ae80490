"""Evaluation: one evaluator for every policy, and agents compared side by side."""
