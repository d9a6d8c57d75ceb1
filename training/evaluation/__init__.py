"""Evaluation: CTR and top-K metrics overall and per activity tercile, the multi-model harness, and the report."""
