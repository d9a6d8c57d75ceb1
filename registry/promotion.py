"""Gated promotion: champion/challenger aliases, a metric gate on a frozen evaluation set, servability checks, an
audit trail of every alias move (as registered-model tags) and rollback.

Promotions and rollbacks of one work dir are serialised by a file lock, so two racing promotions leave one
consistent outcome (the second is gated against the first's result). With a shared remote tracking server, run
promotions from one host (or put the lock on shared storage).
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from mlflow.exceptions import MlflowException

from graphrec.settings import Settings
from registry.evaluation import evaluate_version, frozen_eval_set, rows_of_domain
from registry.servability import load_problems, servability_problems
from serving.contract import AUDIT_TAG_PREFIX, CHALLENGER, CHAMPION, DOMAIN_TAG

AUDIT_PREFIX = AUDIT_TAG_PREFIX  # the service's model page reads the trail too


class PromotionRefused(RuntimeError):
    """The gate refused a promotion; the message says why, with the numbers compared."""


class RegistryError(ValueError):
    """An expected registry failure caused by the request (a bad argument): the message says what and why."""


class RegistryLookupError(RegistryError, LookupError):
    """A registered model, version, alias or run that does not exist; the message names it."""


def _missing(exc: MlflowException) -> bool:
    return exc.error_code == "RESOURCE_DOES_NOT_EXIST"


def registered_model(client: MlflowClient, name: str) -> RegisteredModel:
    """The registered model ``name``, or :class:`RegistryLookupError` naming it."""
    try:
        return client.get_registered_model(name)
    except MlflowException as exc:
        if _missing(exc):
            raise RegistryLookupError(f"no registered model named {name!r}") from exc
        raise


def model_version(client: MlflowClient, name: str, version: str) -> ModelVersion:
    """Version ``version`` of ``name``, or :class:`RegistryError` saying which part of the reference is wrong."""
    if not str(version).isdigit():
        raise RegistryError(f"version {version!r} is not a number")
    try:
        return client.get_model_version(name, str(version))
    except MlflowException as exc:
        if not _missing(exc):
            raise
        registered_model(client, name)  # an unknown model is named as such
        raise RegistryLookupError(f"model {name} has no version {version}") from exc


def version_by_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion:
    """The version ``name@alias`` points at, or :class:`RegistryLookupError` naming the model or the alias."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if not _missing(exc) and exc.error_code != "INVALID_PARAMETER_VALUE":
            raise
        model = registered_model(client, name)
        if alias in model.aliases:  # the alias names a version that is gone
            raise RegistryLookupError(
                f"alias @{alias} of model {name} points at version {model.aliases[alias]}, which does not exist"
            ) from exc
        raise RegistryLookupError(f"model {name} has no alias @{alias}") from exc


@dataclass
class AuditEntry:
    """One alias move: who, when, which alias, from -> to version, why, and what the gate said."""

    alias: str
    from_version: str | None
    to_version: str
    who: str
    when: str
    action: str  # promote | force | rollback
    reason: str = ""
    gate: dict[str, object] = field(default_factory=dict)


def current_user() -> str:
    """Who is acting, for the audit trail: the name of the process's user as the OS knows it, always, and the name
    claimed in GRAPHREC_USER when set and different (``alice (claims bob)``). The claim is advisory, anyone can set
    it; so can LOGNAME or USER, which ``getpass.getuser`` would read first, hence the user database lookup."""
    login = pwd.getpwuid(os.geteuid()).pw_name
    claimed = os.environ.get("GRAPHREC_USER", "").strip()
    return f"{login} (claims {claimed})" if claimed and claimed != login else login


@contextmanager
def registry_lock(settings: Settings) -> Iterator[None]:
    """Exclusive lock over alias moves of this work dir."""
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.work_dir / "registry.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def audit_trail(client: MlflowClient, name: str) -> list[AuditEntry]:
    """Every recorded alias move of ``name``, oldest first."""
    tags = registered_model(client, name).tags
    keys = sorted(k for k in tags if k.startswith(AUDIT_PREFIX))
    return [AuditEntry(**json.loads(tags[k])) for k in keys]


def _record(client: MlflowClient, name: str, entry: AuditEntry) -> None:
    sequence = len(audit_trail(client, name)) + 1
    client.set_registered_model_tag(name, f"{AUDIT_PREFIX}{sequence:05d}", json.dumps(asdict(entry), sort_keys=True))


def _move(
    client: MlflowClient, name: str, alias: str, old: str | None, new: str, action: str, reason: str, gate: dict
) -> AuditEntry:
    """Point ``alias`` at ``new`` and append the move to the audit trail (call under :func:`registry_lock`)."""
    client.set_registered_model_alias(name, alias, new)
    entry = AuditEntry(
        alias=alias,
        from_version=old,
        to_version=new,
        who=current_user(),
        when=datetime.now(UTC).isoformat(timespec="seconds"),
        action=action,
        reason=reason,
        gate=gate,
    )
    _record(client, name, entry)
    return entry


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version holding ``alias``, or None."""
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def alias_history(trail: list[AuditEntry], alias: str) -> list[str]:
    """The distinct versions ``alias`` has held, oldest first, as the audit trail leaves them: a promotion pushes its
    version (a move to the version already held changes nothing), a rollback pops back to the one before. The last
    element is the current holder, the one before it the rollback target."""
    held: list[str] = []
    for entry in trail:
        if entry.alias != alias or entry.from_version == entry.to_version:
            continue  # another alias, or a same-version move recorded before such moves became no-ops
        if entry.action == "rollback":
            if len(held) >= 2 and held[-2] == entry.to_version:
                held.pop()
            else:  # a trail written by older code: start again from what the alias holds now
                held = [entry.to_version]
        elif not held or held[-1] != entry.to_version:
            held.append(entry.to_version)
    return held


def protected_versions(client: MlflowClient, name: str) -> dict[str, str]:
    """Versions that must not be deleted, each with the reason: the holders of champion and challenger, and the
    version each would roll back to."""
    trail = audit_trail(client, name)
    protected: dict[str, str] = {}
    for alias in (CHAMPION, CHALLENGER):
        holder = alias_version(client, name, alias)
        if holder is not None:
            protected.setdefault(holder, f"holds @{alias}")
        history = alias_history(trail, alias)
        if len(history) >= 2 and history[-1] == holder:
            protected.setdefault(history[-2], f"rollback target of @{alias}")
    return protected


def _gate(settings: Settings, name: str, version: str, incumbent: str | None, tolerance: float) -> dict[str, object]:
    """The candidate and the incumbent on the same frozen evaluation set (servability is checked before); a version
    fixed to one domain (``DOMAIN_TAG``) is scored on that domain's rows, and only against an incumbent of the same."""
    client = MlflowClient()
    domain = model_version(client, name, version).tags.get(DOMAIN_TAG)
    if incumbent is not None and incumbent != version:
        held = model_version(client, name, incumbent).tags.get(DOMAIN_TAG)
        if held != domain:
            raise PromotionRefused(
                f"version {version} scores {_scope(domain)} but champion v{incumbent} scores {_scope(held)}: the gate "
                "compares versions on the same rows (register one model name per domain, or --force with a reason)"
            )
    frozen, fingerprint = frozen_eval_set(settings)
    try:
        rows = rows_of_domain(frozen, domain)
    except LookupError as error:
        raise PromotionRefused(f"version {version}: {error}") from error
    candidate = evaluate_version(settings, name, version, rows)
    gate: dict[str, object] = {
        "eval_set": fingerprint,
        "metric": "auc",
        "candidate": round(candidate, 6),
        "tolerance": tolerance,
    } | ({"domain": domain} if domain is not None else {})
    if incumbent is not None and incumbent != version:
        champion = evaluate_version(settings, name, incumbent, rows)
        gate["incumbent"] = round(champion, 6)
        if candidate < champion - tolerance:
            raise PromotionRefused(
                f"version {version} AUC {candidate:.4f} is worse than champion v{incumbent} AUC {champion:.4f} "
                f"by more than the tolerance {tolerance} on frozen evaluation set {fingerprint}"
            )
    return gate


def _scope(domain: str | None) -> str:
    return "every domain" if domain is None else f"domain {domain!r} only"


def _servable_or_refuse(settings: Settings, name: str, version: str) -> None:
    """Refuse a version that cannot be served: features not published, applied or materialized, a signature that
    does not match them, or a model that does not load and score."""
    try:
        problems = servability_problems(settings, name, version) or load_problems(settings, name, version)
    except MlflowException as exc:
        if not _missing(exc):
            raise
        raise PromotionRefused(
            f"version {version} is not servable: its model artefacts are missing ({exc.message})"
        ) from exc
    except OSError as exc:
        raise PromotionRefused(
            f"version {version} is not servable: its model artefacts cannot be read ({exc})"
        ) from exc
    if problems:
        raise PromotionRefused(f"version {version} is not servable: " + "; ".join(problems))


def promote(
    settings: Settings,
    name: str,
    version: str,
    alias: str = CHAMPION,
    force: bool = False,
    reason: str = "",
    tolerance: float = 0.005,
) -> AuditEntry | None:
    """Move ``alias`` to ``version`` if the gate passes, and record the move in the audit trail. Every promotion
    checks servability (features published and materialized, signature, the model loads and scores); the champion
    also passes the metric gate, which ``force`` (with a reason) skips. Promoting the version the alias already
    holds changes nothing and records nothing: returns None."""
    if force and not reason.strip():
        raise PromotionRefused("--force needs --reason: say why the gate is overridden")
    client = MlflowClient()
    version = str(version)
    model_version(client, name, version)  # an unknown model or version is named in the error
    with registry_lock(settings):
        incumbent = alias_version(client, name, alias)
        if incumbent == version:
            return None
        _servable_or_refuse(settings, name, version)
        if force:
            gate: dict[str, object] = {"metric_gate": "skipped", "servable": True}
        elif alias == CHAMPION:
            gate = _gate(settings, name, version, incumbent, tolerance)
        else:
            gate = {"servable": True}
        return _move(client, name, alias, incumbent, version, "force" if force else "promote", reason, gate)


def rollback(settings: Settings, name: str, alias: str = CHAMPION, reason: str = "rollback") -> AuditEntry:
    """Move ``alias`` back to the distinct version it held before its current one (:func:`alias_history`);
    repeated rollbacks walk further back. The target must still be servable."""
    client = MlflowClient()
    with registry_lock(settings):
        current = alias_version(client, name, alias)
        history = alias_history(audit_trail(client, name), alias)
        if current is None or len(history) < 2 or history[-1] != current:
            raise PromotionRefused(f"no earlier {alias} of {name} is recorded: nothing to roll back to")
        previous = history[-2]
        model_version(client, name, previous)
        _servable_or_refuse(settings, name, previous)
        return _move(client, name, alias, current, previous, "rollback", reason, {"servable": True})
