"""Data preparation: readers, format converters, validation, tokenization and the prepared-dataset store."""
