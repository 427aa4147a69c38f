"""Application layer: one use case per CLI command, each readable top to bottom."""
