"""Graphs built from a dataset: the collaborative knowledge graph (CKG) and the heterograph, with id maps."""
