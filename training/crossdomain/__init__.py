"""Cross-domain recommendation (issue 13): per-domain views of a two-domain dataset, CD-GNN and its baselines, and the
evaluation protocol (sampled ranking of held-out rows, by user group and by kept target share)."""
