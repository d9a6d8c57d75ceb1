"""Online side of graphrec: the scoring service. Imports nothing from training/ and never DGL."""
