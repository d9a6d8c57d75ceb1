"""The feature-store layer: graphrec's Feast configuration and its one ``feature_store()`` factory (config.py),
applying definitions and reading features back (store.py), offline snapshots (offline.py), and the fast
materializer (materialize.py: encoding.py, sqlite_writer.py, redis_writer.py) that Feast runs as a compute engine
(engine.py). Private Feast and redis names are touched only in internals.py. It never imports ``training``.
"""
