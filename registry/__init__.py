"""MLflow side of graphrec: tracking of runs, registration and gated promotion of models."""
