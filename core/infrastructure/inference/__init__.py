"""Inference: loading runs and models for generation, the predictor, batch inference and merging."""
