"""Finetune Studio engine: data preparation, training, evaluation and inference for causal LMs.

The package has three layers:

* ``core.domain`` holds configuration, technique traits, the model catalog, prompt formats and the
  run manifest. It imports no torch or transformers.
* ``core.application`` holds one use case per CLI command, each readable top to bottom.
* ``core.infrastructure`` holds everything that touches torch, transformers, peft, bitsandbytes
  and datasets.
"""

__version__ = "0.1.0"
