"""The topic evaluation as a Markdown report (results/topics.md): one table overall, one per activity tercile, the
topic-level scores, and each variant's topics."""

from __future__ import annotations

from training.data.splits import TERCILE_NAMES
from training.topics.config import TopicConfig
from training.topics.evaluate import HELD_OUT_SHARE, K_RECALL, LDA, VariantResult

PER_GROUP = (
    ("perplexity", "held-out perplexity ↓", "{:.1f}"),
    ("recall_tags", f"tag Recall@{K_RECALL} ↑", "{:.4f}"),
    ("recall_items", f"item Recall@{K_RECALL} ↑", "{:.4f}"),
    ("cos_friends", "cos θ friends", "{:.3f}"),
    ("cos_random", "cos θ random pairs", "{:.3f}"),
)


def _group_table(results: list[VariantResult], group: str) -> list[str]:
    header = "| model | " + " | ".join(label for _, label, _ in PER_GROUP) + " | friends − random |"
    lines = [header, "|---" * (len(PER_GROUP) + 2) + "|"]
    for result in results:
        values = result.groups[group]
        cells = [form.format(values[key]) for key, _, form in PER_GROUP]
        lines.append(
            f"| {result.name} | " + " | ".join(cells) + f" | {values['cos_friends'] - values['cos_random']:+.3f} |"
        )
    return lines


def _reading(results: list[VariantResult]) -> list[str]:
    """Sentences computed from the numbers: the GNN's effect on the sparsest tercile and where LDA stands."""
    by_name = {r.name: r for r in results}
    full, plain, lda = results[0], by_name.get("no GNN"), by_name.get(LDA)
    lines = []
    if plain is not None:
        a, b = full.groups[TERCILE_NAMES[0]], plain.groups[TERCILE_NAMES[0]]
        lines.append(
            f"- Sparsest tercile, GNN vs no GNN: perplexity {a['perplexity']:.1f} vs {b['perplexity']:.1f}, tag "
            f"Recall@{K_RECALL} {a['recall_tags']:.4f} vs {b['recall_tags']:.4f}, item Recall@{K_RECALL} "
            f"{a['recall_items']:.4f} vs {b['recall_items']:.4f}."
        )
    for result in results:
        values = result.groups["all"]
        lines.append(
            f"- {result.name}: friends' θ cosine {values['cos_friends']:.3f} vs random pairs "
            f"{values['cos_random']:.3f} ({values['cos_friends'] - values['cos_random']:+.3f})."
        )
    if lda is not None:
        best = min((r for r in results if r is not lda), key=lambda r: r.groups["all"]["perplexity"])
        verdict = "ahead of" if best.groups["all"]["perplexity"] < lda.groups["all"]["perplexity"] else "not ahead of"
        lines.append(
            f"- The best neural variant by perplexity ({best.name}, {best.groups['all']['perplexity']:.1f}) is "
            f"{verdict} scikit-learn LDA ({lda.groups['all']['perplexity']:.1f})."
        )
    return lines


def render_report(
    results: list[VariantResult],
    dataset: str,
    config: TopicConfig,
    command: str,
    seconds: float,
    seed: int,
    threads: int,
) -> str:
    """The whole report as Markdown."""
    counts = results[0].groups
    lines = [
        f"# User-intent topics on {dataset} (issue 12)",
        "",
        f"Made by `{command}` in {seconds / 60:.1f} min (wall time, {threads} torch thread(s)). Every number below "
        "comes from that run; nothing is copied by hand.",
        "",
        f"Protocol: the CTR split (seed {seed}) gives the training positives that join users to items and the test "
        "positives to recall; tag rows on validation/test pairs never enter a document. Each user's document "
        f"(tags of consumed items + own tags) is split by seeded binomial thinning: {HELD_OUT_SHARE:.0%} of its tokens "
        "are held out, the models see the rest (the skip-gram corpus too). Perplexity = exp(−held-out log-likelihood / "
        f"held-out tokens) under p(w|θ_u) = θ_u β. Tag Recall@{K_RECALL}: held-out tags absent from the observed part, "
        f"ranked by p(w|θ_u) among tags not observed ({counts['all']['users_tags']} users have some). Item "
        f"Recall@{K_RECALL}: test positives ({counts['all']['users_items']} users), items scored by the mean "
        "p(w|θ_u) of their profile tags, training positives excluded. Cosines: θ of each friendship (both ways) vs as "
        "many seeded random pairs. NPMI: mean over topics of their top-10 pairs' NPMI by co-occurrence in the held-out "
        "parts (never together = −1). Diversity: distinct tags among all topics' top 25 / (25 K).",
        "",
        f"Config: K = {config.n_topics}, {config.epochs} epochs, lr {config.lr}, hidden {config.hidden}, "
        f"{config.gnn_layers} GNN layers, skip-gram dim {config.embedding_dim}, vocabulary: tags in ≥ "
        f"{config.min_users} users' documents, item profiles: top {config.item_tags} tags"
        + (
            "; KG tokens on (each consumed item's KG relation:entity pairs are tokens too, so perplexity and tag"
            " recall are over a larger vocabulary and compare only within this report)"
            if config.kg_tokens
            else ""
        )
        + ". LDA: scikit-learn "
        "`LatentDirichletAllocation` (batch, 50 iterations, same K and seed) on the same observed counts.",
        "",
        "## Reading (computed from the tables below)",
        "",
        *_reading(results),
        "",
        "## All users",
        "",
        *_group_table(results, "all"),
        "",
        "## Topic quality and cost",
        "",
        "| model | NPMI ↑ | diversity ↑ | fit seconds |",
        "|---|---|---|---|",
        *[f"| {r.name} | {r.npmi:.4f} | {r.diversity:.3f} | {r.seconds:.0f} |" for r in results],
    ]
    for name in TERCILE_NAMES:
        lines += ["", f"## Activity tercile: {name}", "", *_group_table(results, name)]
    lines += ["", "## Top tags per topic", ""]
    for result in results:
        lines += [f"### {result.name}", ""]
        lines += [f"{k}. {', '.join(words[:8])}" for k, words in enumerate(result.top_words)]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
