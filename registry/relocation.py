"""Relocating the MLflow state of a moved work dir: its SQLite database.

MLflow stores absolute artefact locations (an experiment's ``artifact_location``, a run's ``artifact_uri``, a model
version's ``storage_location``, a logged model's ``artifact_location``) and has no API that changes any of them, so
this module, and only this one, rewrites them with SQL: every text value of the work dir's database that holds a path
under the old location, in one transaction.

The artefacts themselves are left as logged: their bytes are what the registry recorded (and checks) at
registration. The one path in them, the ``artifact_path`` MLflow writes into each MLmodel file, is informational
(MLflow loads a model from where its store says it is, never from that field).
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from urllib.parse import unquote, urlparse

from graphrec.relocation import Move, Rewrite

ARTEFACTS_FOLDER = "mlartifacts"  # Settings.mlflow_artifacts_dir
TEXT_AFFINITY = ("CHAR", "CLOB", "TEXT")  # SQLite's rule for a column of text affinity; no type: any value


def _text_columns(connection: sqlite3.Connection) -> list[tuple[str, str]]:
    """(table, column) of every column that can hold text."""
    tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return [
        (table, name)
        for table in tables
        for _, name, kind, *_ in connection.execute(f'PRAGMA table_info("{table}")')
        if not kind or any(part in kind.upper() for part in TEXT_AFFINITY)
    ]


def stored_roots(db: Path) -> set[Path]:
    """The work dirs the experiments of ``db`` keep their artefacts in (``<root>/mlartifacts/<experiment>``)."""
    with closing(sqlite3.connect(db)) as connection:
        locations = [row[0] for row in connection.execute("SELECT artifact_location FROM experiments")]
    roots = set()
    for location in locations:
        parsed = urlparse(location or "")
        path = Path(unquote(parsed.path))
        if parsed.scheme == "file" and path.parent.name == ARTEFACTS_FOLDER:
            roots.add(path.parent.parent)
    return roots


def relocate_database(db: Path, move: Move, work_dir: Path) -> list[Rewrite]:
    """Rewrite every path under the old location in MLflow database ``db``; one Rewrite per column changed."""
    rewrites = []
    with closing(sqlite3.connect(db)) as connection, connection:
        for table, column in _text_columns(connection):
            query = f'SELECT rowid, "{column}" FROM "{table}" WHERE typeof("{column}") = \'text\''
            changed = [(move.rewrite(value), rowid) for rowid, value in connection.execute(query) if move.count(value)]
            if changed:
                connection.executemany(f'UPDATE "{table}" SET "{column}" = ? WHERE rowid = ?', changed)
                rewrites.append(Rewrite(str(db.relative_to(work_dir)), f"{table}.{column}", len(changed)))
    return rewrites
