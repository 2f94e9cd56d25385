"""Datasets, loaders and the conversion of string-id frames into index space."""
