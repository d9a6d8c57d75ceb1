"""The topic model's settings, with the defaults every command uses unless told otherwise."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TopicConfig(BaseModel):
    """Settings of one topic-model fit: documents, skip-gram encoder, model, optimiser, and the ablation switches."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_topics: int = Field(default=16, ge=2, description="K, the number of intents.")
    min_users: int = Field(
        default=3, ge=1, description="A tag enters the vocabulary when this many users' documents hold it."
    )
    item_tags: int = Field(default=10, ge=1, description="An item's profile: its tags applied by the most users.")
    kg_tokens: bool = Field(default=False, description="Add the KG entities of a user's items as extra tokens.")
    embedding_dim: int = Field(default=64, ge=4, description="Skip-gram word embedding size (rho).")
    skipgram_epochs: int = Field(default=10, ge=1, description="Passes of Word2Vec over the co-occurrence sentences.")
    skipgram_window: int = Field(default=10, ge=1, description="Word2Vec context window within a shuffled sentence.")
    hidden: int = Field(default=128, ge=8, description="Width of the encoder and GNN layers.")
    gnn: bool = Field(default=True, description="Message passing over friends and items feeds the encoder.")
    gnn_layers: int = Field(default=2, ge=1, description="Rounds of message passing when gnn is on.")
    embedded_decoder: bool = Field(default=True, description="beta_k = softmax(rho^T alpha_k); off: a free matrix.")
    prior_alpha: float = Field(
        default=1.0, gt=0, description="Dirichlet concentration the logistic normal approximates."
    )
    dropout: float = Field(default=0.2, ge=0, lt=1, description="Dropout on the encoder input during training.")
    epochs: int = Field(default=300, ge=1, description="Full-batch training epochs.")
    lr: float = Field(default=2e-2, gt=0, description="Adam learning rate.")
    kl_warmup: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Share of the epochs over which the KL weight rises from 0 to 1; without it the free decoder's "
        "posteriors collapse onto the prior on Last.FM (every user the same mixture). 0: full weight from the start.",
    )
    weight_decay: float = Field(default=1e-6, ge=0, description="Adam weight decay.")
    seed: int = Field(default=2021, description="Seeds Word2Vec, parameter init, dropout and the reparameterisation.")
    top_words: int = Field(default=10, ge=1, description="Top tags kept per topic for display and coherence.")
