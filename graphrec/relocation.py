"""Moving a work dir: the one rule by which every store rewrites the absolute paths it holds under the old location.

MLflow and Feast store absolute paths (artefact locations, offline sources), so a copied or moved work dir would read
and write the original's files until they are rewritten (``graphrec work relocate``, docs/ARCHITECTURE.md §7). A path
is rewritten only where the old location is a whole path prefix (``/a/work/x``, ``file:///a/work``), never part of
a longer name (``/a/work2``), in plain and in URI-quoted form.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

NAME_CHAR = r"[\w.\-~%]"  # a character that would continue a path component


@dataclass(frozen=True)
class Move:
    """A work dir moved (or copied) from ``old`` to ``new``, both absolute."""

    old: Path
    new: Path

    def _pairs(self) -> list[tuple[str, str]]:
        plain = (str(self.old), str(self.new))
        quoted = (quote(plain[0]), quote(plain[1]))
        return [plain] if quoted == plain else [plain, quoted]

    def _pattern(self, old: str) -> re.Pattern[str]:
        return re.compile(rf"(?<!{NAME_CHAR}){re.escape(old)}(?!{NAME_CHAR})")

    def count(self, text: str) -> int:
        """How many paths under the old location ``text`` holds."""
        return sum(len(self._pattern(old).findall(text)) for old, _ in self._pairs())

    def rewrite(self, text: str) -> str:
        """``text`` with every path under the old location moved under the new one."""
        for old, new in self._pairs():
            text = self._pattern(old).sub(new.replace("\\", r"\\"), text)
        return text


@dataclass(frozen=True)
class Rewrite:
    """Paths rewritten in one place: ``file`` (relative to the work dir), ``item`` (a table column, a registry
    collection, a file), ``count`` (values changed)."""

    file: str
    item: str
    count: int


def rewrite_text_file(path: Path, move: Move, work_dir: Path) -> Rewrite | None:
    """Rewrite the paths in text file ``path`` (atomically); what changed, or None when nothing did."""
    text = path.read_text()
    found = move.count(text)
    if not found:
        return None
    temporary = path.with_name(f".{path.name}.relocating")
    temporary.write_text(move.rewrite(text))
    os.replace(temporary, path)
    return Rewrite(str(path.relative_to(work_dir)), "contents", found)
