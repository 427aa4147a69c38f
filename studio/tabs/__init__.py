"""The studio tabs, one module each."""
