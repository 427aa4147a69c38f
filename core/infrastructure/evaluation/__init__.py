"""Evaluation: metrics (via evaluate metric modules in this repo), instruction checks, loss, generation and reports."""
