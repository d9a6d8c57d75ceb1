"""graphrec: graph machine learning for recommendation with a real feature store, registry and serving layer."""

__version__ = "0.1.0"
