"""Recommenders: one interface (base.Recommender), plugged in by registering (base.register_model)."""
