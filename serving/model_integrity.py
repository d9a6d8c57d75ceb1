"""Load a registered model version only after its artefacts match the SHA-256 digests recorded at registration.

Registration (``registry.packaging.register_model_version``) hashes every file of the logged model and stores the
manifest as the version tag ``graphrec.sha256`` (JSON: relative path -> hex digest). :func:`load_verified_model`
downloads the version's files, refuses the version when any file was changed, added or removed, and only then reads
the scorer folder as plain data (``serving.scorer_files``); no file of the model store is executed or unpickled on the
way (docs/SECURITY.md).

Downloads go to a temporary folder named after this process; folders left by processes that died mid-load are
removed by the next load.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import mlflow.artifacts
from mlflow import MlflowClient

from serving.pyfunc_model import SCORER_ARTIFACT, ScorerModel

DIGEST_TAG = "graphrec.sha256"
DOWNLOAD_PREFIX = "graphrec-model-"
CHUNK_BYTES = 1 << 20
SCORER_FOLDER = Path("artifacts") / SCORER_ARTIFACT  # where MLflow puts the scorer artefact inside a model folder
# MLflow writes this file into the logged model when it registers a version (name and version, YAML; rewritten when the
# same model is registered again), after the digests are taken; graphrec never reads it, so it is left out of both.
REGISTRATION_RECORD = "registered_model_meta"


class UnverifiedModel(RuntimeError):
    """A version whose artefacts do not match (or never had) the digests recorded at its registration."""


def file_digest(path: Path) -> str:
    """SHA-256 of one file, hex."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def folder_digests(folder: Path) -> dict[str, str]:
    """Relative POSIX path -> SHA-256 of every file under ``folder`` but MLflow's registration record; a symbolic link
    is refused (it could point anywhere)."""
    digests = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_symlink():
            raise UnverifiedModel(f"{relative} is a symbolic link")
        if path.is_file() and relative != REGISTRATION_RECORD:
            digests[relative] = file_digest(path)
    return digests


def digest_tag_value(digests: dict[str, str]) -> str:
    """The ``graphrec.sha256`` tag value of a manifest (sorted, compact JSON)."""
    return json.dumps(dict(sorted(digests.items())), separators=(",", ":"))


def manifest_problems(expected: dict[str, str], found: dict[str, str]) -> list[str]:
    """Each file that differs from the registered manifest: changed, added or missing."""
    problems = [f"{path} changed" for path in sorted(expected) if path in found and found[path] != expected[path]]
    problems += [f"{path} was added" for path in sorted(set(found) - set(expected))]
    problems += [f"{path} is missing" for path in sorted(set(expected) - set(found))]
    return problems


def expected_digests(tags: dict[str, str], label: str) -> dict[str, str]:
    """The manifest recorded in a version's tags; :class:`UnverifiedModel` when it is absent or malformed."""
    if DIGEST_TAG not in tags:
        raise UnverifiedModel(
            f"{label} has no {DIGEST_TAG} tag: it was registered without artefact digests and is not loaded "
            "(register its run again with `graphrec models register`)"
        )
    try:
        manifest = json.loads(tags[DIGEST_TAG])
    except json.JSONDecodeError as error:
        raise UnverifiedModel(f"{label}: tag {DIGEST_TAG} is not a JSON manifest") from error
    if not isinstance(manifest, dict) or not manifest or not all(isinstance(v, str) for v in manifest.values()):
        raise UnverifiedModel(f"{label}: tag {DIGEST_TAG} is not a manifest of file digests")
    return manifest


def verify_folder(folder: Path, tags: dict[str, str], label: str) -> None:
    """Refuse (:class:`UnverifiedModel`) unless ``folder`` holds exactly the files the version's manifest names."""
    problems = manifest_problems(expected_digests(tags, label), folder_digests(folder))
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise UnverifiedModel(f"{label}: artefacts differ from those registered ({shown}); refusing to load it")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_abandoned_downloads(root: Path) -> None:
    """Delete download folders under ``root`` whose owning process is gone (a load killed half-way)."""
    for folder in root.glob(f"{DOWNLOAD_PREFIX}*-*"):
        pid = folder.name[len(DOWNLOAD_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def load_verified_model(client: MlflowClient, tracking_uri: str, name: str, version: str) -> ScorerModel:
    """Download version ``version`` of ``name``, check every file against its ``graphrec.sha256`` tag, and build its
    :class:`ScorerModel` from the scorer folder (plain data only)."""
    label = f"models:/{name}/{version}"
    tags = dict(client.get_model_version(name, version).tags)
    expected_digests(tags, label)  # refuse an unverifiable version before downloading anything
    root = Path(tempfile.gettempdir())
    remove_abandoned_downloads(root)
    with tempfile.TemporaryDirectory(prefix=f"{DOWNLOAD_PREFIX}{os.getpid()}-", dir=root) as folder:
        location = client.get_model_version_download_uri(name, version)  # models:/ would use the global URI
        local = Path(mlflow.artifacts.download_artifacts(location, dst_path=folder, tracking_uri=tracking_uri))
        verify_folder(local, tags, label)
        return ScorerModel.from_folder(local / SCORER_FOLDER)
