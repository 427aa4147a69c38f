"""OpenAI-compatible HTTP API over runs and registered models."""
