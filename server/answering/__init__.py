"""Grounded answers: context selection, extractive and model backends, grounding, the answer cache."""
