"""The feature-store layer: graphrec's Feast configuration and its one ``feature_store()`` factory (config.py),
applying definitions and reading features back (store.py), offline snapshots (offline.py), the fast materializer as
a Feast compute engine (engine.py: encoding.py, sqlite_writer.py, redis_writer.py) and graphrec's materialize through
Feast's API (materialize.py). Private Feast and redis names are touched only in internals.py. It never imports
``training``.
"""
