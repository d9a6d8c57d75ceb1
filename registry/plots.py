"""The PNG plots logged with a training run: the training curve and the test metrics by activity tercile.

Drawn on :class:`matplotlib.figure.Figure` objects directly (matplotlib's documented way for servers and scripts):
no pyplot, so no backend is chosen and no global state is touched, at import or later.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

TERCILES = ("sparse", "medium", "active")
DPI = 110


def training_curve_png(model_name: str, history: list[dict[str, float]], best_epoch: int, folder: Path) -> Path:
    """Train loss and validation AUC per epoch, the selected epoch marked; written to ``folder``."""
    epochs = [record["epoch"] for record in history]
    figure = Figure(figsize=(6, 3.5))
    left = figure.subplots()
    left.plot(epochs, [record["train_loss"] for record in history], color="tab:blue", label="train loss")
    left.set_xlabel("epoch")
    left.set_ylabel("train loss")
    right = left.twinx()
    right.plot(epochs, [record["valid_auc"] for record in history], color="tab:orange", label="valid AUC")
    right.axvline(best_epoch, color="grey", linestyle=":", label="best epoch")
    right.set_ylabel("validation AUC")
    figure.legend(loc="lower center", ncols=3, fontsize=8)
    figure.suptitle(f"{model_name}: training curve")
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    path = folder / "training_curve.png"
    figure.savefig(path, dpi=DPI)
    return path


def metrics_by_tercile_png(model_name: str, test_metrics: dict[str, float], folder: Path) -> Path:
    """Test AUC, Recall@20 and NDCG@20 of the sparse, medium and active terciles; written to ``folder``."""
    figure = Figure(figsize=(5, 3.5))
    axis = figure.subplots()
    for metric in ("auc", "recall@20", "ndcg@20"):
        values = [test_metrics.get(f"{metric}/{name}", float("nan")) for name in TERCILES]
        axis.plot(list(TERCILES), values, marker="o", label=metric)
    axis.set_xlabel("user activity tercile")
    axis.set_title(f"{model_name}: test metrics by tercile")
    axis.legend(fontsize=8)
    figure.tight_layout()
    path = folder / "metrics_by_tercile.png"
    figure.savefig(path, dpi=DPI)
    return path
