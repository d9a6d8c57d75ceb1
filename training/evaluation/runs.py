"""The runs file of ``graphrec evaluate``: every finished run's row, appended as it completes (JSON lines), so an
evaluation that stops midway can resume without repeating finished runs (``--resume``).

JSON lines rather than CSV: rows of different models carry different diagnostics columns.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from training.evaluation.harness import RunKey, row_key

REQUIRED = ("dataset", "model", "regime", "seed", "config")


def runs_path(report: Path) -> Path:
    """Where the runs of the report ``report`` are recorded: ``RESULTS.md`` → ``RESULTS.runs.jsonl``."""
    return Path(report).with_suffix(".runs.jsonl")


def _json_value(value: object) -> object:
    """A row value as JSON: numpy scalars as Python numbers, NaN as null."""
    if hasattr(value, "item"):
        value = value.item()  # type: ignore[union-attr]
    return None if isinstance(value, float) and math.isnan(value) else value


@dataclass(frozen=True)
class Reuse:
    """The runs of a report read back from its runs file (``--resume``) instead of made by this invocation."""

    runs: int = 0
    timed: int = 0  # how many of them record their run time (rows written before runs were timed do not)
    seconds: float = 0.0  # their recorded run times, summed


@dataclass
class RunLog:
    """The runs file of one report: rows already recorded (by dataset and run key) and an append-only writer."""

    path: Path
    rows: dict[str, dict[RunKey, dict[str, object]]] = field(default_factory=dict)
    appended: int = 0  # runs recorded by this invocation
    appended_seconds: float = 0.0  # their run times, summed

    @classmethod
    def open(cls, report: Path, resume: bool) -> RunLog:
        """The runs file next to ``report``: read back when ``resume`` (a malformed line raises ValueError naming the
        file and line), else emptied, since a new evaluation starts."""
        path = runs_path(report)
        path.parent.mkdir(parents=True, exist_ok=True)
        log = cls(path)
        if not resume or not path.exists():
            path.write_text("")
            return log
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                missing = [k for k in REQUIRED if k not in row]
                if missing:
                    raise ValueError(f"missing {', '.join(missing)}")
                key = row_key(row)
            except (ValueError, TypeError) as exc:
                raise ValueError(
                    f"{path}:{number}: not a recorded run ({exc}); remove the line or run without --resume"
                ) from None
            dataset = str(row.pop("dataset"))  # the caller knows which dataset it asks for
            log.rows.setdefault(dataset, {})[key] = {k: math.nan if v is None else v for k, v in row.items()}
        return log

    @property
    def reused(self) -> int:
        """How many recorded runs were read back."""
        return sum(len(rows) for rows in self.rows.values())

    def finished(self, dataset: str) -> Mapping[RunKey, Mapping[str, object]]:
        """The recorded rows of ``dataset``'s runs, by run key."""
        return self.rows.get(dataset, {})

    def append(self, dataset: str, row: Mapping[str, object]) -> None:
        """Record one finished run of ``dataset`` (one line, flushed at once)."""
        document = {"dataset": dataset} | {k: _json_value(v) for k, v in row.items()}
        with self.path.open("a") as handle:
            handle.write(json.dumps(document) + "\n")
        self.appended += 1
        self.appended_seconds += float(row.get("run_seconds") or 0.0)

    def reuse(self, table: pd.DataFrame) -> Reuse:
        """What of ``table`` (every run of the report, this invocation's appended ones among them) was read back:
        the other rows, and the run time recorded in those that hold one."""
        times = table["run_seconds"] if "run_seconds" in table else pd.Series(dtype=float)
        return Reuse(
            runs=len(table) - self.appended,
            timed=int(times.notna().sum()) - self.appended,
            seconds=float(times.sum()) - self.appended_seconds,
        )
