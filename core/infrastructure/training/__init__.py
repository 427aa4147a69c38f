"""Training engine on transformers' Trainer: precision, collators, checkpoints, callbacks, monitoring."""
