"""The one place where graphrec silences third-party warnings: only those a library raises about its own code, which a
graphrec user can neither act on nor fix. Every other warning stays visible."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO


@dataclass(frozen=True)
class Benign:
    """A warning of ``category`` whose message contains ``message``, raised in a file matching ``where``."""

    category: type[Warning]
    message: str
    where: str

    def matches(self, message: Warning | str, category: type[Warning], filename: str) -> bool:
        """Whether this is the warning described."""
        return (
            issubclass(category, self.category)
            and self.message in str(message)
            and re.search(self.where, filename) is not None
        )


BENIGN_WARNINGS = (
    # MLflow's SQLAlchemy tracking store maps a relationship with the ``noload`` loader strategy, which SQLAlchemy 2.1
    # deprecates; it is raised while MLflow configures its own mappers, and only an MLflow release can change it.
    Benign(DeprecationWarning, "The ``noload`` loader strategy is deprecated", r"[/\\]mlflow[/\\]store[/\\]"),
    # MLflow asks for an input example with every logged model. graphrec's signatures have float32 array columns, and
    # MLflow 3.17 parses an example's JSON lists as float64 and then refuses to narrow them ("Can not safely convert
    # float64 to float32"), so an example would only swap this warning for a failed validation of the example. The
    # signature is exact, and the registry tests load a logged model in a fresh process and score with it.
    Benign(UserWarning, "An input example was not provided when logging the model", r"[/\\]mlflow[/\\]pyfunc[/\\]"),
)


class _ShowUnlessBenign:
    """A ``warnings.showwarning`` that drops the warnings of BENIGN_WARNINGS and shows every other one as before.

    A hook rather than ``warnings.filterwarnings``: Feast calls ``warnings.simplefilter("once", DeprecationWarning)``
    when imported, which puts its filter ahead of any filter installed earlier."""

    def __init__(self, show: Callable[..., None]):
        self.show = show

    def __call__(
        self,
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if not any(benign.matches(message, category, filename) for benign in BENIGN_WARNINGS):
            self.show(message, category, filename, lineno, file, line)


def silence_benign_warnings() -> None:
    """Drop the known-benign warnings and log records above; called by the ``graphrec`` command (which also runs the
    serving process), once or more per process."""
    if not isinstance(warnings.showwarning, _ShowUnlessBenign):
        warnings.showwarning = _ShowUnlessBenign(warnings.showwarning)
