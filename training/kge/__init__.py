"""Knowledge-graph embeddings: TransH (Wang et al., AAAI 2014) trained with Bernoulli negatives, a twin-aware
triple split and filtered link-prediction evaluation. ``TransH`` is a plain layer so a recommender can train it jointly.
"""
