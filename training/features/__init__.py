"""Feature jobs: compute the catalogue's graph features (jobs.py drives aggregates.py and transh_job.py) and write
them as offline snapshots through :mod:`featurestore.offline`; names and dtypes come from feature_repo/catalog.py."""
