"""Reliability tier: long-running load, promotion, outage and schema-fuzzing tests (marker ``system``)."""
