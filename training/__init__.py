"""Offline side of graphrec: data, graphs, models, feature jobs and evaluation."""
