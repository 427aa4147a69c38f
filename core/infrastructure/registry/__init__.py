"""Model registry: versioned local store with a SQLite index, and the Hugging Face Hub path."""
