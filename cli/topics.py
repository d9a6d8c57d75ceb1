"""``graphrec topics``: fit the user-intent topic model, show its topics, pick a topic's audience, evaluate it."""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.context import CliError, console, err_console, settings_of
from cli.output import JsonFlag, name_column, number_column, print_json, text_column

if TYPE_CHECKING:
    from graphrec.settings import Settings
    from training.topics.artefacts import SavedTopics
    from training.topics.config import TopicConfig

app = typer.Typer(help="User-intent topics: fit, show, audience, evaluate (issue 12).", no_args_is_help=True)


@contextmanager
def _reported() -> Iterator[None]:
    """A topic-model input problem (no tags, no fit yet, a topic out of range) as one ``error:`` line."""
    from training.topics.errors import TopicInputError

    try:
        yield
    except TopicInputError as exc:
        raise CliError(str(exc)) from None


def _config(
    topics: int | None, epochs: int | None, gnn: bool, embedded_decoder: bool, kg_tokens: bool, seed: int
) -> TopicConfig:
    """The default config with the command line's overrides."""
    from training.topics.config import TopicConfig

    values = {"gnn": gnn, "embedded_decoder": embedded_decoder, "kg_tokens": kg_tokens, "seed": seed}
    values |= {k: v for k, v in {"n_topics": topics, "epochs": epochs}.items() if v is not None}
    return TopicConfig(**values)


def _options(ctx: typer.Context) -> list[str]:
    """The options of one command level that differ from their defaults, as they would be typed."""
    words: list[str] = []
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if param.param_type_name != "option" or value is None or value == param.default:
            continue
        if isinstance(value, bool):
            flags = param.opts if value else getattr(param, "secondary_opts", [])
            words += flags[:1]
        else:
            words += [param.opts[0], shlex.quote(str(value))]
    return words


def _command_line(ctx: typer.Context) -> str:
    """The command as typed (root options, subcommands, non-default options), for the report to name what made it;
    rebuilt from the parsed options because sys.argv is not the command's when it is invoked from Python."""
    chain = []
    level: typer.Context | None = ctx
    while level is not None:
        chain.append(level)
        level = level.parent
    words = ["graphrec"]
    for level in reversed(chain):
        words += ([] if level.parent is None else [level.info_name or ""]) + _options(level)
    return " ".join(words)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )


@app.command()
def train(
    ctx: typer.Context,
    topics: int | None = typer.Option(None, "--topics", help="K, the number of topics (default 16)."),
    epochs: int | None = typer.Option(None, help="Training epochs (default 300)."),
    gnn: bool = typer.Option(True, "--gnn/--no-gnn", help="Message passing over friends and items (ablation: off)."),
    embedded_decoder: bool = typer.Option(
        True, "--embedded-decoder/--free-decoder", help="β from skip-gram vectors, or a free topic-word matrix."
    ),
    kg_tokens: bool = typer.Option(False, "--kg-tokens", help="Add the KG entities of a user's items as tokens."),
    threads: int = typer.Option(1, help="Torch threads."),
    track: bool = typer.Option(True, "--track/--no-track", help="Log the fit to MLflow."),
    as_json: JsonFlag = False,
) -> None:
    """Fit the topic model on the configured dataset's training split, save it under <work>/topics and log it."""
    import pandas as pd
    import torch

    from registry.topics import log_topic_fit
    from training.data.load import load_dataset
    from training.data.splits import activity_terciles, ctr_split
    from training.topics.artefacts import save_topics, topics_dir
    from training.topics.pipeline import fit_user_intent

    torch.set_num_threads(threads)
    settings = settings_of(ctx)
    config = _config(topics, epochs, gnn, embedded_decoder, kg_tokens, settings.seed)
    dataset = load_dataset(settings)
    split = ctr_split(dataset.interactions, settings.seed)
    positives = split.train_positives()
    started = time.perf_counter()
    with _reported(), _progress() as progress:
        task = progress.add_task("topics", total=config.epochs, info="")
        _, fit = fit_user_intent(
            dataset,
            positives,
            pd.concat([split.valid, split.test]),
            config,
            on_epoch=lambda epoch, record: progress.update(task, completed=epoch, info=f"loss {record['loss']:.2f}"),
        )
    seconds = time.perf_counter() - started
    folder = save_topics(
        topics_dir(settings.work_dir),
        fit,
        activity_terciles(positives, dataset.n_users),
        dataset.name,
        dataset.fingerprint,
    )
    run_id = log_topic_fit(settings, fit, dataset.name, dataset.fingerprint, folder) if track else None
    words = fit.top_words(config.top_words)
    if as_json:
        print_json(
            {
                "dataset": dataset.name,
                "folder": str(folder),
                "mlflow_run": run_id,
                "seconds": seconds,
                "vocabulary": len(fit.vocabulary),
                "final_loss": fit.history[-1]["loss"],
                "top_words": words,
            }
        )
        return
    console.print(
        f"fitted {config.n_topics} topics over {len(fit.vocabulary):,} tags for {len(fit.theta):,} users of "
        f"{dataset.name} in {seconds:.0f}s (final loss {fit.history[-1]['loss']:.2f}) -> {folder}"
    )
    if run_id:
        console.print(f"logged to MLflow run {run_id}")
    console.print("next: `graphrec topics show`, or `graphrec features build --only intent` to serve the mixtures")


SOURCE_HELP = (
    "Where each user's mixture comes from: 'online' (the user_intent view in the online store, what is served), "
    "'offline' (its latest offline snapshot) or 'fit' (the latest `topics train` or features build fit itself)."
)
SOURCES = ("online", "offline", "fit")


def _source(value: str) -> str:
    if value not in SOURCES:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(SOURCES)}")
    return value


def _mixtures(settings: Settings, source: str) -> SavedTopics:
    """The latest fit (its tags per topic, each user's tercile) with the mixtures of ``source``."""
    import numpy as np

    from feature_repo.catalog import USER_INTENT
    from featurestore.store import view_values
    from training.topics.artefacts import load_topics, topics_dir
    from training.topics.operations import with_served_mixture

    saved = load_topics(topics_dir(settings.work_dir))
    if source == "fit":
        return saved
    served = view_values(
        settings, USER_INTENT, np.arange(len(saved.theta)), "online" if source == "online" else "offline"
    )
    return with_served_mixture(saved, served, f"{source} store")


@app.command()
def show(
    ctx: typer.Context,
    words: int = typer.Option(6, help="Top tags shown per topic."),
    source: str = typer.Option("online", "--source", callback=_source, help=SOURCE_HELP),
    as_json: JsonFlag = False,
) -> None:
    """Each topic's top tags, its size (users whose dominant topic it is), its share of all intent and the share of
    sparse users among its members, over the mixtures of --source (default: what the online store serves)."""
    from training.topics.operations import summarise

    settings = settings_of(ctx)
    with _reported():
        saved = _mixtures(settings, source)
    summaries = summarise(saved, words)
    if as_json:
        print_json({"dataset": saved.dataset, "source": source, "topics": summaries})
        return
    table = Table(
        number_column("k"),
        number_column("users"),
        number_column("share"),
        number_column("sparse"),
        text_column("top tags"),
        title=f"{saved.n_topics} intent topics of {saved.dataset} ({source} mixtures)",
        caption="users: dominant topic; share: mean θ_k; sparse: members in the sparsest tercile",
    )
    for summary in summaries:
        sparse = "-" if summary.size == 0 else f"{summary.sparse_share:.0%}"
        table.add_row(
            str(summary.topic), f"{summary.size:,}", f"{summary.mass:.1%}", sparse, ", ".join(summary.top_words)
        )
    console.print(table)


@app.command("audience")
def audience_command(
    ctx: typer.Context,
    topic: int = typer.Option(..., "--topic", help="The topic (0 to K-1; see `graphrec topics show`)."),
    top: int = typer.Option(100, "--top", help="How many users."),
    out: Path = typer.Option(..., "--out", help="CSV (or .parquet) file to write."),
    source: str = typer.Option("online", "--source", callback=_source, help=SOURCE_HELP),
    as_json: JsonFlag = False,
) -> None:
    """The users most likely to hold one intent (largest θ_k), with θ_k, the topic's rank in their mixture and their
    activity tercile, written to a file for a campaign; θ from --source (default: what the online store serves)."""
    from training.topics.operations import audience

    settings = settings_of(ctx)
    with _reported():
        saved = _mixtures(settings, source)
        frame = audience(saved, topic, top)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".parquet":
        frame.to_parquet(out, index=False)
    else:
        frame.to_csv(out, index=False)
    sparse = int((frame["activity_tercile"] == "sparse").sum())
    if as_json:
        print_json({"topic": topic, "file": str(out), "source": source, "users": len(frame), "sparse_users": sparse})
        return
    console.print(
        f"wrote {len(frame):,} users of topic {topic} ({', '.join(saved.top_words(4)[topic])}) to {out}: "
        f"θ_k from {frame['theta'].max():.3f} down to {frame['theta'].min():.3f}, {sparse:,} sparse users"
    )


@app.command()
def evaluate(
    ctx: typer.Context,
    out: Path = typer.Option(Path("results/topics.md"), "--out", help="Markdown report to write."),
    topics: int | None = typer.Option(None, "--topics", help="K (default 16)."),
    epochs: int | None = typer.Option(None, help="Training epochs of each neural variant (default 300)."),
    kg_tokens: bool = typer.Option(
        False, "--kg-tokens", help="Add the KG entities of a user's items as tokens (every variant, LDA included)."
    ),
    threads: int = typer.Option(1, help="Torch threads."),
    track: bool = typer.Option(True, "--track/--no-track", help="Log the metrics and the report to MLflow."),
    as_json: JsonFlag = False,
) -> None:
    """Held-out perplexity, NPMI, diversity, friends-vs-random θ cosine and Recall@20 of held-out tags and items,
    overall and per activity tercile, for the full model, both ablations and scikit-learn's LDA."""
    import torch

    from registry.topics import log_topic_evaluation
    from training.data.load import load_dataset
    from training.topics.evaluate import evaluate_topics, variants
    from training.topics.report import render_report

    torch.set_num_threads(threads)
    settings = settings_of(ctx)
    config = _config(topics, epochs, True, True, kg_tokens, settings.seed)
    dataset = load_dataset(settings)
    command = _command_line(ctx)
    started = time.perf_counter()
    with _reported(), _progress() as progress:
        task = progress.add_task("variants", total=len(variants(config)), info="")
        epoch_task = progress.add_task("epochs", total=config.epochs, info="")

        def on_variant(name: str) -> None:
            started_before = progress.tasks[task].fields["info"] != ""  # the previous variant is done
            progress.update(task, advance=1 if started_before else 0, info=name)
            progress.reset(epoch_task, total=config.epochs, info="")

        results = evaluate_topics(
            dataset,
            config,
            settings.seed,
            on_variant=on_variant,
            on_epoch=lambda epoch, record: progress.update(epoch_task, completed=epoch),
        )
    seconds = time.perf_counter() - started
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_report(results, dataset.name, config, command, seconds, settings.seed, threads))
    run_id = log_topic_evaluation(settings, results, dataset.name, out) if track else None
    if as_json:
        print_json({"file": str(out), "seconds": seconds, "mlflow_run": run_id, "results": results})
        return
    table = Table(
        name_column("model"),
        number_column("perplexity"),
        number_column("tags R@20"),
        number_column("items R@20"),
        number_column("friends-random"),
        title=f"topics on {dataset.name}, all users",
    )
    for result in results:
        values = result.groups["all"]
        table.add_row(
            result.name,
            f"{values['perplexity']:.1f}",
            f"{values['recall_tags']:.4f}",
            f"{values['recall_items']:.4f}",
            f"{values['cos_friends'] - values['cos_random']:+.3f}",
        )
    console.print(table)
    console.print(f"wrote {out} in {seconds / 60:.1f} min" + (f"; logged to MLflow run {run_id}" if run_id else ""))
