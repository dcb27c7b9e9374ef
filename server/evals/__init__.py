"""Evals: labelled question sets, retrieval and answer metrics, the `docgate eval` runner."""
