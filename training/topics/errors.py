"""The one error the topic model raises for unusable input, so the CLI can report it in one line."""

from __future__ import annotations


class TopicInputError(ValueError):
    """The dataset or the arguments cannot make a topic model; the message names what is wrong and what to do."""
