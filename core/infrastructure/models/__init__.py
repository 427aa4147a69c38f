"""Model resolution, provisioning of the embedded model, and loading of models and tokenizers."""
