"""tags.tsv rows: a few users ("taggers") label some of their clicked items with words of the item's sector or
category, which gives a later topic model text whose topics line up with the KG."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.synth.catalog import Catalog
from training.synth.config import SynthConfig
from training.synth.counter_rng import Stream, below, uniform, within
from training.synth.interactions import WINDOW_END, positive_timestamps
from training.synth.users import Users
from training.synth.vocab import topic_words

MAX_TAGS_PER_ITEM = 3
TAG_DELAY_SECONDS = 7 * 86_400


def tag_rows(config: SynthConfig, catalog: Catalog, users: Users, positives: np.ndarray) -> pd.DataFrame:
    """Tags of a chunk's positives (sorted keys), sorted by (user, item, word); each (user, item, tag) at most once."""
    seed, n_items = config.seed, config.n_items
    vocab = topic_words()
    words = np.array([word for topic in vocab for word in topic], dtype=object)
    sizes = np.array([len(topic) for topic in vocab], dtype=np.int64)
    starts = np.cumsum(sizes) - sizes

    user, item = np.divmod(positives, n_items)
    is_tagger = users.tagger[np.searchsorted(users.ids, user)]
    tagged = np.flatnonzero(is_tagger & (uniform(seed, Stream.TAG_PICK, user, item) < config.tag_rate))
    user, item = user[tagged], item[tagged]
    count = 1 + below(seed, Stream.TAG_COUNT, MAX_TAGS_PER_ITEM, user, item)
    row = np.repeat(np.arange(len(tagged)), count)
    topic = catalog.topic[item[row]]
    word = starts[topic] + below(seed, Stream.TAG_WORD, sizes[topic], user[row], item[row], within(count))
    row, word = np.divmod(np.unique(row * len(words) + word), len(words))
    user, item = user[row], item[row]
    delay = below(seed, Stream.TAG_DELAY, TAG_DELAY_SECONDS, user, item, word)
    timestamp = np.minimum(positive_timestamps(config, positives[tagged][row]) + delay, WINDOW_END - 1)
    return pd.DataFrame({"user": user, "item": item, "tag": words[word], "timestamp": timestamp}, copy=False)
