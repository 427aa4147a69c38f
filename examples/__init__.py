"""Examples: YAML presets, accelerate configs and notebooks."""
