"""Validation problems: each names the file, line and column of one bad record."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MAX_SHOWN = 25


@dataclass(frozen=True)
class Problem:
    """One bad record. ``line`` is 1-based as an editor shows it; ``column`` is None for whole-line problems."""

    file: Path
    line: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}"
        if self.line is not None:
            where += f":{self.line}"
        if self.column is not None:
            where += f" column '{self.column}'"
        return f"{where}: {self.message}"


class DatasetError(ValueError):
    """Raised when input data is invalid; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        shown = "\n".join(f"  - {p}" for p in problems[:MAX_SHOWN])
        more = f"\n  ... and {len(problems) - MAX_SHOWN} more" if len(problems) > MAX_SHOWN else ""
        super().__init__(f"{len(problems)} problem(s) in the input data:\n{shown}{more}")


class DataNotFoundError(FileNotFoundError):
    """Raised when the configured data folder does not hold the expected files; says what was looked for."""
