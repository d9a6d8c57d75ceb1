"""Which file a path names right now, so a service holding a database file open can tell it was replaced or deleted.

An open SQLite connection keeps reading the file it opened: after ``rm`` it reads the unlinked file, after a file is
moved into place it still reads the old one. Comparing the path's ``(st_dev, st_ino)`` with the one recorded when the
connection was opened detects both, for the price of one ``stat``.
"""

from __future__ import annotations

from pathlib import Path

FileIdentity = tuple[int, int]  # (st_dev, st_ino)


def file_identity(path: Path) -> FileIdentity | None:
    """``(st_dev, st_ino)`` of the file at ``path`` (None when there is none): a replaced file has a new identity."""
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return status.st_dev, status.st_ino
