"""Graph features: offline snapshots (offline.py), the Feast feature store configured from Settings (store.py) and
fast materialization into its online store (materialize.py, with the online_* encoders and writers).

The feature jobs (jobs.py, aggregates.py, transh_job.py) compute the catalogue's features and write them as offline
snapshots; names and dtypes come from feature_repo/catalog.py.
"""
