"""Pick the configured dataset: the real Last.FM data, or a folder in graphrec's format."""

from __future__ import annotations

from pathlib import Path

from graphrec.settings import Settings
from training.data.dataset import Dataset, load_dataset_dir
from training.data.lastfm import load_lastfm

LASTFM = "lastfm"


def load_dataset(settings: Settings) -> Dataset:
    """Load ``settings.dataset``: 'lastfm' reads settings.data_dir; anything else is a dataset folder path."""
    if settings.dataset == LASTFM:
        return load_lastfm(settings.data_dir)
    return load_dataset_dir(Path(settings.dataset))
