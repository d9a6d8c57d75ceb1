"""Plain helpers shared by tests (and bench/): data builders and publishing helpers, no fixtures.

Fixtures live in ``tests/conftest.py``; local services (ports, redis-server, mlflow server) in ``graphrec/testing.py``.
"""
