"""Infrastructure layer: everything that touches torch, transformers, peft, bitsandbytes or datasets."""
