"""Domain layer: pure-Python configuration, catalog, traits, prompt formats and manifests.

Nothing in this package imports torch, transformers, peft, bitsandbytes or datasets; a test
enforces it so that ``finetune-studio --help`` and config validation stay fast.
"""
