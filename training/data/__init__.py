"""Datasets: the on-disk format, validation, loaders for real data, splits."""
