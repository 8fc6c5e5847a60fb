"""Evaluation: label propagation and metrics."""
