"""The text encoder: skip-gram with negative sampling (gensim's Word2Vec, sg=1) over tag, artist and KG-entity
co-occurrence within items and users, trained here on the dataset; its word vectors are the topic decoder's rho."""

from __future__ import annotations

import zlib

import numpy as np
from gensim.models import Word2Vec

from training.topics.config import TopicConfig
from training.topics.vocabulary import Vocabulary


def stable_hash(text: str) -> int:
    """CRC-32 of the text: gensim seeds each initial vector from ``hashfxn(seed + word)``, and Python's own string
    hash changes per process (PYTHONHASHSEED), which would make the embeddings differ from run to run."""
    return zlib.crc32(text.encode("utf-8"))


def shuffled_sentences(sentences: list[list[str]], seed: int) -> list[list[str]]:
    """Each sentence's tokens in a seeded random order: tokens of an item or a user are a set, and Word2Vec's
    window would otherwise pair only alphabetically close tags."""
    rng = np.random.default_rng(seed)
    return [[sentence[i] for i in rng.permutation(len(sentence))] for sentence in sentences]


def train_skipgram(sentences: list[list[str]], vocabulary: Vocabulary, config: TopicConfig) -> np.ndarray:
    """(V, embedding_dim) skip-gram vectors of the vocabulary's tokens, L2-normalised, trained with one worker and
    the config's seed so the same input gives the same vectors. A token the corpus lacks (possible when an
    evaluation hides part of the documents) gets the zero vector: every topic then gives it the same logit."""
    model = Word2Vec(
        sentences=shuffled_sentences(sentences, config.seed),
        vector_size=config.embedding_dim,
        window=config.skipgram_window,
        min_count=1,
        sg=1,
        negative=5,
        workers=1,
        seed=config.seed,
        epochs=config.skipgram_epochs,
        hashfxn=stable_hash,
    )
    vectors = np.zeros((len(vocabulary), config.embedding_dim), dtype=np.float32)
    for row, token in enumerate(vocabulary.tokens):
        if token in model.wv.key_to_index:
            vectors[row] = model.wv[token]
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-8)
