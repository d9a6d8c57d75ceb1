"""Equal-budget hyper-parameter search (issue 11): one seeded Optuna TPE study per model on *validation* AUC only.

Search spaces are declared per model in ``training/models/search_spaces.yaml``, beside the models' defaults. Every
trial trains with the same seed, the same epoch cap and patience (the study's, not the model's) and a fixed training
regime, through :func:`training.trainer.fit`, which never reads the test split; its objective is the restored
epoch's validation AUC. No pruning: early stopping on validation already cuts every model's trials the same way,
and a pruner's intermediate reports would favour models whose AUC rises fast in the first epochs. The first trial of
every study is its starting config (the model's defaults, or the ``--config`` file's values; the defaults lie inside
every declared space but RippleNet's weight decay of 0, which starts at 1e-7), so a study never ends below where it
started on validation, at no extra budget.

The winning config is written to ``training/models/tuned/<model>.<regime>.yaml`` (the config fields under
``config``, the study's budget and protocol under ``study``), which ``graphrec train`` and ``graphrec evaluate``
use when present. MLflow logging lives in ``registry.tuning`` (training does not import the registry layer).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from training.models.base import MODELS, ModelConfig, TrainingData, load_models
from training.trainer import EpochRecord, fit

if TYPE_CHECKING:
    import optuna

MODELS_DIR = Path(__file__).resolve().parent / "models"
SPACES_PATH = MODELS_DIR / "search_spaces.yaml"
TUNED_DIR = MODELS_DIR / "tuned"


class FloatParam(BaseModel):
    """A float in [low, high], log-uniform when ``log``."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["float"]
    low: float
    high: float
    log: bool = False


class IntParam(BaseModel):
    """An integer in [low, high], log-uniform when ``log``."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["int"]
    low: int
    high: int
    log: bool = False


class CategoricalParam(BaseModel):
    """One of a list of scalar choices."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["categorical"]
    choices: list[bool | int | float | str] = Field(min_length=1)


Param = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="kind")]
Space = dict[str, Param]
_SPACES = TypeAdapter(dict[str, Space])


class StudyRecord(BaseModel):
    """What produced a tuned config: the budget and the conditions every model's study shares."""

    model_config = ConfigDict(extra="forbid")
    model: str
    regime: str
    protocol: str
    dataset: str
    n_trials: int  # trials that completed
    seed: int
    epochs: int
    patience: int
    best_trial: int
    best_valid_auc: float
    sampler: str = "TPESampler"
    base_config: str | None = None  # the file whose values the fields outside the space kept (None: the defaults)
    first_trial_is_start: bool = False  # trial 0 trained the starting config (studies made since 2026-12-03)


@dataclass(frozen=True)
class Tuned:
    """A committed tuned config and the study behind it."""

    config: ModelConfig
    study: StudyRecord
    path: Path


@dataclass(frozen=True)
class TrialOutcome:
    """One finished trial: the sampled parameters, the config trained, its validation history and objective."""

    number: int
    params: dict[str, object]
    config: ModelConfig
    history: list[EpochRecord]
    best_epoch: int
    valid_auc: float
    seconds: float


def search_spaces(path: Path = SPACES_PATH) -> dict[str, Space]:
    """Every model's declared search space, validated (kinds, bounds' types)."""
    return _SPACES.validate_python(yaml.safe_load(path.read_text()) or {})


def search_space(model_name: str, path: Path = SPACES_PATH) -> Space:
    """The search space of one model; a model without one (popularity learns nothing) cannot be tuned."""
    spaces = search_spaces(path)
    if model_name not in spaces:
        raise KeyError(f"no search space for {model_name!r} in {path}; declared: {', '.join(sorted(spaces))}")
    return spaces[model_name]


def suggest(trial: optuna.Trial, space: Space) -> dict[str, object]:
    """Sample one value per declared parameter from ``trial``."""
    values: dict[str, object] = {}
    for name, param in space.items():
        if isinstance(param, FloatParam):
            values[name] = trial.suggest_float(name, param.low, param.high, log=param.log)
        elif isinstance(param, IntParam):
            values[name] = trial.suggest_int(name, param.low, param.high, log=param.log)
        else:
            values[name] = trial.suggest_categorical(name, param.choices)
    return values


def starting_point(config: ModelConfig, space: Space) -> dict[str, object]:
    """The values ``config`` gives the searched parameters, the study's first trial (so a study never ends below the
    configuration it started from, on validation, at no extra budget). A number outside its range is moved to the
    nearest bound (a weight decay of 0 to a log range's lowest); a choice the space does not offer is left to the
    sampler."""
    point: dict[str, object] = {}
    for name, param in space.items():
        value = getattr(config, name)
        if isinstance(param, FloatParam | IntParam):
            point[name] = min(max(value, param.low), param.high)
        elif value in param.choices:
            point[name] = value
    return point


def default_regime(model_name: str) -> str:
    """The model's own training regime (its Config's ``loss`` default); ``none`` for a model without one."""
    load_models()
    field = MODELS[model_name].Config.model_fields.get("loss")
    return "none" if field is None else str(field.default)


def with_regime(config: ModelConfig, regime: str | None) -> ModelConfig:
    """``config`` trained under ``regime`` (its ``loss``); unchanged for None or a model without a loss field."""
    if regime is None or "loss" not in type(config).model_fields:
        return config
    return type(config).model_validate(config.model_dump() | {"loss": regime})


def regime_of(config: ModelConfig) -> str:
    """The config's training regime: its ``loss``, or ``none`` (popularity)."""
    return str(getattr(config, "loss", "none"))


def tune(
    model_name: str,
    data: TrainingData,
    n_trials: int,
    seed: int = 0,
    timeout: float | None = None,
    epochs: int = 30,
    patience: int = 5,
    regime: str | None = None,
    on_trial: Callable[[TrialOutcome], None] | None = None,
    spaces_path: Path = SPACES_PATH,
    base: ModelConfig | None = None,
) -> optuna.Study:
    """A seeded TPE study maximising validation AUC over the model's space, every trial under the same epoch cap,
    patience, seed and regime; ``on_trial`` sees each finished trial (MLflow logging, progress). Fields outside the
    space keep ``base``'s values (default: the model's defaults). The best trial's config is the study's
    ``best_trial.user_attrs["config"]``."""
    import optuna

    load_models()
    space = search_space(model_name, spaces_path)
    base = with_regime(MODELS[model_name].Config() if base is None else base, regime)
    fixed = {"epochs": epochs, "patience": patience}

    def objective(trial: optuna.Trial) -> float:
        started = time.perf_counter()
        params = suggest(trial, space)
        config = type(base).model_validate(base.model_dump() | params | fixed)
        result = fit(model_name, data, config, seed)
        trial.set_user_attr("config", config.model_dump())
        trial.set_user_attr("best_epoch", result.best_epoch)
        outcome = TrialOutcome(
            trial.number,
            params,
            config,
            result.history,
            result.best_epoch,
            result.best_valid_auc,
            time.perf_counter() - started,
        )
        if on_trial is not None:
            on_trial(outcome)
        return outcome.valid_auc

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed), study_name=f"{model_name}-tuning"
    )
    study.enqueue_trial(starting_point(base, space))
    study.optimize(objective, n_trials=n_trials, timeout=timeout)
    return study


def tuned_path(model_name: str, regime: str, directory: Path = TUNED_DIR) -> Path:
    """Where the tuned config of ``model_name`` under ``regime`` lives."""
    return Path(directory) / f"{model_name}.{regime}.yaml"


def write_tuned(study: optuna.Study, record: StudyRecord, directory: Path = TUNED_DIR) -> Path:
    """Write the best trial's config and the study record as YAML; return the path."""
    path = tuned_path(record.model, record.regime, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"study": record.model_dump(), "config": study.best_trial.user_attrs["config"]}
    path.write_text(
        f"# Written by `graphrec tune --model {record.model}`: best of {record.n_trials} trials on validation AUC.\n"
        + yaml.safe_dump(document, sort_keys=False)
    )
    return path


def load_tuned(model_name: str, dataset: str, regime: str | None = None, directory: Path = TUNED_DIR) -> Tuned | None:
    """The tuned config of ``model_name`` under ``regime`` (default: the model's own) from a study on ``dataset``
    (a Dataset name), or None: a config tuned on another dataset is not used."""
    path = tuned_path(model_name, regime or default_regime(model_name), directory)
    if not path.exists():
        return None
    document = yaml.safe_load(path.read_text()) or {}
    study = StudyRecord.model_validate(document.get("study") or {})
    if study.dataset != dataset:
        return None
    config = MODELS[model_name].Config.model_validate(document.get("config") or {})
    return Tuned(config=config, study=study, path=path)
