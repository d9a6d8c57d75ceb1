"""Cross-domain (issue 13): the Amazon Clothing + Sports loader and its validation, the synthetic two-domain split and
its sparsity knob, leakage, the alignment losses' closed forms, model determinism and a tiny two-domain fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from graphrec.settings import Settings
from training.data.amazon import COMMON_FILE, DOMAIN_FOLDERS, load_amazon
from training.data.errors import DataNotFoundError, DatasetError
from training.synth.crossdomain import cross_domain_config, cross_domain_split, target_counts
from training.synth.generator import generate_dataset

# A two-domain toy in the release's layout. Overlapping users 0..3 (C = 4); Clothing cold users: 3; Sports cold: 2.
# Private users (ids >= 4) differ per domain: Clothing's 4 and Sports' 4 are two people.
_TOY = {
    "cloth_sport": {
        "train.txt": ["0\t0", "0\t1", "1\t1", "2\t2", "4\t0", "4\t2"],
        "valid.txt": ["3\t0"],
        "test.txt": ["3\t2"],
        COMMON_FILE: ["0\t0\t1", "0\t1\t1", "1\t1\t1", "2\t2\t1", "3\t0\t1", "3\t2\t1"],
    },
    "sport_cloth": {
        "train.txt": ["0\t0", "1\t1", "3\t0", "3\t1", "4\t1", "5\t0"],
        "valid.txt": ["2\t1"],
        "test.txt": ["2\t0"],
        COMMON_FILE: ["0\t0\t1", "1\t1\t1", "3\t0\t1", "3\t1\t1", "2\t1\t1", "2\t0\t1"],
    },
}


def _write_toy(root: Path, changes: dict[tuple[str, str], list[str]] | None = None) -> Path:
    folder = root / "amazon-cloth-sport"
    for sub, files in _TOY.items():
        (folder / sub).mkdir(parents=True, exist_ok=True)
        for name, lines in files.items():
            lines = (changes or {}).get((sub, name), lines)
            (folder / sub / name).write_text("".join(line + "\n" for line in lines))
    return folder


def _problems(root: Path, changes: dict[tuple[str, str], list[str]]) -> list[str]:
    with pytest.raises(DatasetError) as caught:
        load_amazon(_write_toy(root, changes))
    return [str(p) for p in caught.value.problems]


def test_amazon_toy_loads_with_private_users_kept_apart(tmp_path: Path) -> None:
    dataset, split = load_amazon(_write_toy(tmp_path))
    assert dataset.domains == ["clothing", "sports"]
    # 4 overlapping + Clothing's private user 4 + Sports' private users 4 and 5 (renumbered 5 and 6)
    assert dataset.n_users == 7
    assert dataset.n_items == 3 + 2
    sports_train = split.train[split.train["domain"] == 1]
    assert set(sports_train["user"]) == {0, 1, 3, 5, 6}
    assert set(sports_train["item"]) == {3, 4}  # Sports items follow Clothing's 3
    assert split.valid[["user", "item", "domain"]].to_numpy().tolist() == [[3, 0, 0], [2, 4, 1]]
    assert (dataset.interactions["label"] == 1).all()
    assert len(dataset.interactions) == len(split.train) + len(split.valid) + len(split.test)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({("cloth_sport", "valid.txt"): ["3\t0", "0\t1"]}, "cloth_sport/valid.txt:2: user 0 item 1 is also in train"),
        (
            {("cloth_sport", "test.txt"): ["3\t2", "1\t0"]},
            "cloth_sport/test.txt:2: held-out user 1 has training rows in this domain (target-domain leakage)",
        ),
        ({("sport_cloth", "train.txt"): ["0\t0", "1\tx"]}, "sport_cloth/train.txt:2 column 'item'"),
        ({("sport_cloth", "test.txt"): ["2\t0", "2\t1"]}, "sport_cloth/test.txt:2: user 2 item 1 is also in valid.txt"),
        ({("cloth_sport", "valid.txt"): ["3\t0", "4\t1"]}, "cloth_sport/valid.txt:2: user 4 is not an overlapping"),
        ({("cloth_sport", COMMON_FILE): ["0\t0\t1"]}, "sport_cloth/common_new_reindex.txt: 4 overlapping users"),
    ],
)
def test_amazon_validation_names_file_and_line(tmp_path: Path, changes: dict, expected: str) -> None:
    assert any(expected in problem for problem in _problems(tmp_path, changes)), _problems(tmp_path, changes)


def test_amazon_cold_user_without_source_history_is_refused(tmp_path: Path) -> None:
    cloth_train = [line for line in _TOY["cloth_sport"]["train.txt"] if not line.startswith("2\t")]
    problems = _problems(tmp_path, {("cloth_sport", "train.txt"): cloth_train})
    expected = "sport_cloth/valid.txt:1: held-out user 2 has no training row in the other domain"
    assert any(expected in problem for problem in problems)


def test_amazon_missing_folder_names_the_files(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="cloth_sport/train.txt"):
        load_amazon(tmp_path)


def test_amazon_real_release_counts() -> None:
    root = Settings().data_dir
    if not (root / "amazon-cloth-sport" / DOMAIN_FOLDERS[0] / "train.txt").exists():
        pytest.skip("the Amazon Clothing + Sports release is not here")
    dataset, split = load_amazon(root)
    assert dataset.n_users == 59_329  # SOURCE.md: users in the union of both domains
    trains = [split.train[split.train["domain"] == d] for d in (0, 1)]
    assert [len(t) for t in trains] == [187_880, 163_291]
    assert len(set(trains[0]["user"]) & set(trains[1]["user"])) == 7_856  # 9,828 overlap less both cold blocks
    assert [split.test[split.test["domain"] == d]["user"].nunique() for d in (0, 1)] == [907, 897]


@pytest.fixture(scope="module")
def synth_two_domains(tmp_path_factory: pytest.TempPathFactory):
    from training.data.dataset import load_dataset_dir

    folder = tmp_path_factory.mktemp("cd") / "synth"
    generate_dataset(cross_domain_config(600, seed=3, n_items=400), folder)
    return load_dataset_dir(folder)


def test_synthetic_split_is_seeded_nested_and_leak_free(synth_two_domains) -> None:
    dataset = synth_two_domains
    sparse, full = cross_domain_split(dataset, 1, 0.3, seed=5), cross_domain_split(dataset, 1, 1.0, seed=5)
    again = cross_domain_split(dataset, 1, 0.3, seed=5)
    assert sparse.train.equals(again.train) and sparse.test.equals(again.test)
    key = lambda frame: set(zip(frame["user"], frame["item"], strict=True))  # noqa: E731
    assert key(sparse.train) < key(full.train)  # the rows kept at 0.3 are among those kept at 1.0
    assert sparse.test.equals(full.test) and sparse.valid.equals(full.valid)  # the knob never moves held-out rows
    held = key(full.valid) | key(full.test)
    assert not held & key(full.train)
    assert (full.test["domain"] == 1).all() and (full.valid["domain"] == 1).all()
    source = dataset.positives[dataset.positives["domain"] == 0]
    assert key(source) <= key(sparse.train)  # the source domain is all training
    counts = target_counts(full, 1, dataset.n_users)
    assert (counts[full.test["user"].to_numpy()] == 0).any()  # cold users exist even with every row kept
    target_share = (sparse.train["domain"] == 1).sum() / (full.train["domain"] == 1).sum()
    assert 0.2 < target_share < 0.4


def test_synthetic_split_refuses_bad_share(synth_two_domains) -> None:
    with pytest.raises(ValueError, match="keep must lie in"):
        cross_domain_split(synth_two_domains, 1, 1.5)


def test_synthetic_generator_has_overlapping_users(synth_two_domains) -> None:
    positives = synth_two_domains.positives
    users = [set(positives.loc[positives["domain"] == d, "user"]) for d in (0, 1)]
    assert len(users[0] & users[1]) > 0.3 * synth_two_domains.n_users
    assert np.array_equal(np.unique(positives["domain"]), [0, 1])
