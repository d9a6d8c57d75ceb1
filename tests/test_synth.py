"""The synthetic generator: valid, deterministic, skewed, two overlapping domains, a typed KG, homophilous friends,
1:1 negatives, vocabulary tags, and nothing left behind when it fails."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import training.synth.generator as generator
from cli.main import app
from training.data.dataset import Dataset, load_dataset_dir
from training.data.schema import DATASET_TABLES, META_FILE, SOCIAL
from training.data.splits import Split, ctr_split
from training.synth.catalog import (
    COUPON_CATEGORY,
    COUPON_MERCHANT,
    FUND_MANAGER,
    FUND_RISK,
    FUND_SECTOR,
    MERCHANT_CATEGORY,
    RELATION_NAMES,
)
from training.synth.generator import SynthConfig, SynthSummary, generate_dataset
from training.synth.interactions import WINDOW_END, WINDOW_SECONDS
from training.synth.truth import kg_path_hit_rate
from training.synth.vocab import topic_words

N_USERS = 3_000
FILES = [META_FILE] + [spec.file for spec in DATASET_TABLES]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SynthSummary]:
    out = tmp_path_factory.mktemp("synth") / "data"
    return out, generate_dataset(SynthConfig(n_users=N_USERS, seed=0), out)


@pytest.fixture(scope="module")
def dataset(generated: tuple[Path, SynthSummary]) -> Dataset:
    return load_dataset_dir(generated[0])


def _attribute(dataset: Dataset, relation: int) -> np.ndarray:
    """Per item, the tail of its ``relation`` triple (-1 where it has none)."""
    values = np.full(dataset.n_items, -1, dtype=np.int64)
    triples = dataset.kg[dataset.kg["relation"] == relation]
    values[triples["head"].to_numpy()] = triples["tail"].to_numpy()
    return values


def _top_attribute(dataset: Dataset, attribute: np.ndarray) -> np.ndarray:
    """Per user, the attribute value most of their positives carry (-1 for users with none)."""
    positives = dataset.positives
    values = attribute[positives["item"].to_numpy()]
    keep = values >= 0
    table = pd.crosstab(positives["user"].to_numpy()[keep], values[keep])
    top = np.full(dataset.n_users, -1, dtype=np.int64)
    top[table.index.to_numpy()] = table.columns.to_numpy()[table.to_numpy().argmax(axis=1)]
    return top


def _same_share(top: np.ndarray, users: np.ndarray, others: np.ndarray) -> float:
    known = (top[users] >= 0) & (top[others] >= 0) & (users != others)
    return float((top[users][known] == top[others][known]).mean())


def test_output_loads_and_matches_summary(generated: tuple[Path, SynthSummary], dataset: Dataset) -> None:
    _, summary = generated
    counts = dataset.counts()
    assert (dataset.n_users, dataset.n_items, dataset.n_entities) == (N_USERS, 300, summary.n_entities)
    assert counts["labelled rows"] == summary.labelled_rows and counts["positives"] == summary.positives
    assert counts["KG triples"] == summary.kg_triples and counts["friendships (undirected)"] == summary.friendships
    assert counts["tag assignments"] == summary.tags > 0
    assert summary.rows_written == summary.labelled_rows + summary.kg_triples + summary.friendships + summary.tags
    assert dataset.relation_names == list(RELATION_NAMES) and dataset.domains == ["fund", "coupon"]


def test_config_derives_sizes_and_rejects_bad_values() -> None:
    assert SynthConfig(n_users=1_000).n_items == 200
    assert SynthConfig(n_users=50_000).n_items == 5_000
    assert SynthConfig(n_users=10**7).n_items == 200_000
    assert SynthConfig(n_users=1_000, n_items=777).n_items == 777
    for bad in ({"n_users": 1}, {"n_users": 100, "fund_share": 1.5}, {"n_users": 100, "seed": -1}):
        with pytest.raises(ValueError, match="invalid SynthConfig"):
            SynthConfig(**bad)


def test_same_seed_is_byte_identical_whatever_the_chunk_size(
    generated: tuple[Path, SynthSummary], tmp_path: Path
) -> None:
    out, _ = generated
    again = tmp_path / "again"
    generate_dataset(SynthConfig(n_users=N_USERS, seed=0, chunk_users=700), again)
    assert all((out / name).read_bytes() == (again / name).read_bytes() for name in FILES)
    other = tmp_path / "other"
    generate_dataset(SynthConfig(n_users=N_USERS, seed=1), other)
    for name in FILES[1:]:
        assert (out / name).read_bytes() != (other / name).read_bytes(), name


def test_activity_and_popularity_are_skewed(dataset: Dataset) -> None:
    positives = dataset.positives
    per_user = np.bincount(positives["user"], minlength=dataset.n_users)
    assert 2 <= np.median(per_user) <= np.percentile(per_user, 99) / 5
    per_item = np.sort(np.bincount(positives["item"], minlength=dataset.n_items))[::-1]
    assert per_item[: dataset.n_items // 10].sum() > 0.3 * per_item.sum()


def test_two_domains_with_overlapping_users(dataset: Dataset) -> None:
    is_fund = _attribute(dataset, FUND_SECTOR) >= 0
    interactions = dataset.interactions
    assert (interactions["domain"].to_numpy() == np.where(is_fund[interactions["item"]], 0, 1)).all()
    domains_per_user = dataset.positives.groupby("user")["domain"].nunique()
    both, single = int((domains_per_user == 2).sum()), int((domains_per_user == 1).sum())
    assert 0 < both < single
    assert set(dataset.positives["domain"]) == {0, 1}


def test_kg_relations_follow_item_type(generated: tuple[Path, SynthSummary], dataset: Dataset) -> None:
    kg = dataset.kg
    entity_types = json.loads((generated[0] / META_FILE).read_text())["entity_types"]
    items = kg[kg["head"] < dataset.n_items]
    relations_per_item = items.groupby("head")["relation"].apply(lambda r: tuple(sorted(r)))
    assert len(relations_per_item) == dataset.n_items
    assert set(relations_per_item) == {(FUND_MANAGER, FUND_SECTOR, FUND_RISK), (COUPON_MERCHANT, COUPON_CATEGORY)}
    tail_type = {
        FUND_MANAGER: "manager",
        FUND_SECTOR: "sector",
        FUND_RISK: "risk_level",
        COUPON_MERCHANT: "merchant",
        COUPON_CATEGORY: "category",
        MERCHANT_CATEGORY: "category",
    }
    for relation, kind in tail_type.items():
        low, high = entity_types[kind]
        tails = kg.loc[kg["relation"] == relation, "tail"]
        assert tails.between(low, high - 1).all(), RELATION_NAMES[relation]
    merchant_category = kg[kg["relation"] == MERCHANT_CATEGORY].set_index("head")["tail"]
    low, high = entity_types["merchant"]
    assert merchant_category.index.to_series().between(low, high - 1).all()
    merchant = _attribute(dataset, COUPON_MERCHANT)
    category = _attribute(dataset, COUPON_CATEGORY)
    coupons = np.flatnonzero(merchant >= 0)
    assert (merchant_category.loc[merchant[coupons]].to_numpy() == category[coupons]).all()


def test_tastes_drive_clicks_and_friends_share_them(dataset: Dataset) -> None:
    users, friends = dataset.social["user"].to_numpy(), dataset.social["friend"].to_numpy()
    rng = np.random.default_rng(0)
    random_users, random_others = rng.integers(0, dataset.n_users, (2, 20_000))
    for relation in (FUND_SECTOR, COUPON_CATEGORY):
        attribute = _attribute(dataset, relation)
        top = _top_attribute(dataset, attribute)
        assert _same_share(top, users, friends) > 2 * _same_share(top, random_users, random_others)
        positives = dataset.positives
        values = attribute[positives["item"].to_numpy()]
        on_top = values == top[positives["user"].to_numpy()]
        assert on_top[values >= 0].mean() > 0.5, RELATION_NAMES[relation]


def test_social_edges_are_written_once_with_a_heavy_tail(generated: tuple[Path, SynthSummary]) -> None:
    social = pd.read_csv(generated[0] / SOCIAL.file, sep="\t")
    assert (social["user"] < social["friend"]).all()
    assert not social.duplicated().any()
    degree = np.bincount(social.to_numpy().ravel(), minlength=N_USERS)
    assert 4 <= degree.mean() <= 8
    assert degree.max() >= 5 * degree.mean()


def test_one_negative_per_positive_never_a_positive(dataset: Dataset) -> None:
    interactions = dataset.interactions
    labels = interactions.groupby(["user", "label"]).size().unstack(fill_value=0)
    assert (labels[0] == labels[1]).all()
    positives = set(zip(dataset.positives["user"], dataset.positives["item"], strict=True))
    negatives = interactions[interactions["label"] == 0]
    assert not positives & set(zip(negatives["user"], negatives["item"], strict=True))
    assert not interactions.duplicated(["user", "item"]).any()
    assert (negatives["weight"] == 0).all() and (dataset.positives["weight"] >= 1).all()
    assert interactions["timestamp"].between(WINDOW_END - WINDOW_SECONDS, WINDOW_END - 1).all()


def test_tags_are_words_of_their_item_topic(generated: tuple[Path, SynthSummary], dataset: Dataset) -> None:
    tags = dataset.tags
    assert tags is not None and not tags.duplicated(["user", "item", "tag"]).any()
    entity_types = json.loads((generated[0] / META_FILE).read_text())["entity_types"]
    (first_sector, after_sector), (first_category, _) = entity_types["sector"], entity_types["category"]
    sector, category = _attribute(dataset, FUND_SECTOR), _attribute(dataset, COUPON_CATEGORY)
    topic = np.where(sector >= 0, sector - first_sector, after_sector - first_sector + category - first_category)
    vocab = topic_words()
    assert all(tag in vocab[topic[item]] for item, tag in zip(tags["item"], tags["tag"], strict=True))
    positives = set(zip(dataset.positives["user"], dataset.positives["item"], strict=True))
    assert set(zip(tags["user"], tags["item"], strict=True)) <= positives
    assert tags["timestamp"].between(WINDOW_END - WINDOW_SECONDS, WINDOW_END - 1).all()


def test_progress_is_reported_per_chunk(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    generate_dataset(SynthConfig(n_users=500, chunk_users=200), tmp_path / "data", progress=lambda *a: calls.append(a))
    assert calls == [(200, 500), (400, 500), (500, 500)]


def test_failure_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[str] = []
    real_write_table = generator.write_table

    def failing_write_table(frame: pd.DataFrame, path: Path, *args: object, **kwargs: object) -> None:
        if len(written) == 2:
            raise OSError("disk full")
        written.append(path.name)
        real_write_table(frame, path, *args, **kwargs)

    monkeypatch.setattr(generator, "write_table", failing_write_table)
    parent = tmp_path / "parent"
    with pytest.raises(OSError, match="disk full"):
        generate_dataset(SynthConfig(n_users=500), parent / "data")
    assert written and list(parent.iterdir()) == []

    existing = parent / "data"
    existing.mkdir()
    (existing / "keep.txt").write_text("old")
    written.clear()
    with pytest.raises(OSError, match="disk full"):
        generate_dataset(SynthConfig(n_users=500), existing)
    assert [p.name for p in parent.iterdir()] == ["data"] and (existing / "keep.txt").read_text() == "old"


# --- KG-driven clicks (issue 11, item 4): a synthetic set whose knowledge-graph truth is known ---

# dataset fingerprint of SynthConfig(n_users=3_000, seed=0), computed before kg_driven_share existed
FINGERPRINT_BEFORE_KG_PATHS = "90bf0d1efd28675f"
KG_WORLD = {"n_users": 2_000, "n_items": 1_000, "seed": 0}  # items enough that a manager is a small part of a sector


@pytest.fixture(scope="module")
def kg_worlds(tmp_path_factory: pytest.TempPathFactory) -> dict[float, Path]:
    folders = {}
    for share in (0.0, 0.8):
        folders[share] = tmp_path_factory.mktemp("kg") / "data"
        generate_dataset(SynthConfig(**KG_WORLD, kg_driven_share=share), folders[share])
    return folders


def test_share_zero_reproduces_the_dataset_from_before_kg_paths(dataset: Dataset) -> None:
    assert dataset.fingerprint == FINGERPRINT_BEFORE_KG_PATHS
    assert "kg_driven_share" not in SynthConfig(n_users=N_USERS).provenance()


def test_kg_driven_share_puts_held_out_positives_on_kg_paths(kg_worlds: dict[float, Path]) -> None:
    rates = {}
    for share, folder in kg_worlds.items():
        world = load_dataset_dir(folder)
        rates[share] = kg_path_hit_rate(world, ctr_split(world.interactions, seed=2021))
    assert rates[0.8] > 0.7 and rates[0.8] > 2 * rates[0.0], rates


def test_kg_driven_world_keeps_the_format_and_is_chunk_invariant(kg_worlds: dict[float, Path], tmp_path: Path) -> None:
    world = load_dataset_dir(kg_worlds[0.8])
    labels = world.interactions.groupby(["user", "label"]).size().unstack(fill_value=0)
    assert (labels[0] == labels[1]).all()
    assert json.loads((kg_worlds[0.8] / META_FILE).read_text())["generator"]["kg_driven_share"] == 0.8
    again = tmp_path / "again"
    generate_dataset(SynthConfig(**KG_WORLD, kg_driven_share=0.8, chunk_users=300), again)
    assert all((kg_worlds[0.8] / name).read_bytes() == (again / name).read_bytes() for name in FILES)
    with pytest.raises(ValueError, match="kg_driven_share must lie in"):
        SynthConfig(n_users=100, kg_driven_share=1.5)


def test_kg_path_hit_rate_counts_shared_entities_of_users_with_training_positives() -> None:
    kg = pd.DataFrame({"head": [0, 1, 2, 3, 0], "relation": [0, 0, 0, 0, 1], "tail": [4, 4, 5, 5, 6]})
    rows = lambda pairs: pd.DataFrame(  # noqa: E731
        {"user": [u for u, _ in pairs], "item": [i for _, i in pairs], "label": [1] * len(pairs)}
    )
    world = Dataset(
        name="toy",
        n_users=2,
        n_items=4,
        n_entities=7,
        n_relations=2,
        interactions=rows([(0, 0), (0, 1), (0, 2), (1, 3)]),
        kg=kg,
        social=pd.DataFrame({"user": [], "friend": []}),
        relation_names=["fund.manager", "fund.sector"],
    )
    split = Split(train=rows([(0, 0)]), valid=rows([(0, 1)]), test=rows([(0, 2), (1, 3)]))
    assert kg_path_hit_rate(world, split, relations=["fund.manager"]) == 0.5  # user 1 has no training positive
    assert kg_path_hit_rate(world, split, relations=["fund.sector"]) == 0.0
    with pytest.raises(ValueError, match="not in dataset toy"):
        kg_path_hit_rate(world, split)


def test_cli_generates_a_kg_driven_set(tmp_path: Path) -> None:
    out = tmp_path / "synth"
    args = ["data", "synth", "--users", "300", "--out", str(out), "--kg-driven-share", "0.7"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    meta = json.loads((out / META_FILE).read_text())
    assert meta["generator"]["kg_driven_share"] == 0.7
    assert meta["name"] == "synthetic-alipay-kg0.7"  # its own name: reports and tuned configs key on it
    assert CliRunner().invoke(app, [*args[:-1], "1.5"]).exit_code != 0


def test_cli_generates_a_cold_catalogue_when_items_are_given(tmp_path: Path) -> None:
    out = tmp_path / "cold"
    args = ["data", "synth", "--users", "300", "--out", str(out), "--kg-driven-share", "0.7", "--items", "600"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    meta = json.loads((out / META_FILE).read_text())
    assert meta["n_items"] == 600
    assert meta["name"] == "synthetic-alipay-kg0.7-items600"
    too_few = CliRunner().invoke(app, [*args[:-1], "20"])  # 20 items leave fewer funds than fund sectors
    assert too_few.exit_code != 0
    assert "n_items=20" in too_few.output
    assert json.loads((out / META_FILE).read_text())["n_items"] == 600  # the refused run left the set as it was
