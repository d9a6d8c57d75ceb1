"""Expected failures of ``graphrec`` are one line, ``error: …`` or ``refused: …``, on stderr with exit code 1 and no
traceback; ``--debug`` shows the traceback, and a bug keeps its traceback (issue 10, item 10)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import Result
from mlflow import MlflowClient
from typer.testing import CliRunner

from cli.main import app
from graphrec.settings import Settings
from registry.tracking import configure_mlflow
from serving.contract import FEATURE_SERVICE_TAG, ITEM_VIEW_TAG, USER_VIEW_TAG

runner = CliRunner()
MODEL = "graphrec-kcan"


@pytest.fixture(scope="module")
def registry_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work dir whose MLflow registry holds MODEL with one version: published tags, but no artefacts on disk."""
    work = tmp_path_factory.mktemp("registry") / "work"
    configure_mlflow(Settings(work_dir=work))
    client = MlflowClient()
    client.create_registered_model(MODEL)
    tags = {FEATURE_SERVICE_TAG: "fs", USER_VIEW_TAG: "users", ITEM_VIEW_TAG: "items"}
    client.create_model_version(MODEL, source=str(work / "gone" / "model"), tags=tags)
    return work


def failed(args: list[str], line: str, work: Path) -> Result:
    """Run ``graphrec --work-dir WORK ARGS`` and check it failed cleanly: exit 1, ``line`` on stderr, no traceback."""
    result = runner.invoke(app, ["--work-dir", str(work), *args])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # an exception left unhandled would be kept here
    assert line in result.stderr.splitlines(), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return result


def test_promote_unknown_model(tmp_path: Path) -> None:
    failed(["models", "promote", "nosuch", "1"], "error: no registered model named 'nosuch'", tmp_path / "w")


def test_promote_unknown_version(registry_work: Path) -> None:
    failed(["models", "promote", MODEL, "99"], f"error: model {MODEL} has no version 99", registry_work)


def test_promote_version_not_a_number(registry_work: Path) -> None:
    failed(["models", "promote", MODEL, "abc"], "error: version 'abc' is not a number", registry_work)


def test_promote_version_without_artefacts_is_refused(registry_work: Path) -> None:
    line = "refused: version 1 is not servable: its model artefacts are missing (No such artifact: 'MLmodel')"
    failed(["models", "promote", MODEL, "1"], line, registry_work)
    failed(["models", "promote", MODEL, "1", "--force", "--reason", "test"], line, registry_work)


def test_force_without_reason_is_refused(registry_work: Path) -> None:
    line = "refused: --force needs --reason: say why the gate is overridden"
    failed(["models", "promote", MODEL, "1", "--force"], line, registry_work)


def test_rollback_with_nothing_recorded_is_refused(registry_work: Path) -> None:
    line = f"refused: no earlier champion of {MODEL} is recorded: nothing to roll back to"
    failed(["models", "rollback", MODEL], line, registry_work)


def test_show_unknown_alias(registry_work: Path) -> None:
    failed(["models", "show", f"{MODEL}@nosuch"], f"error: model {MODEL} has no alias @nosuch", registry_work)


def test_show_unknown_model(registry_work: Path) -> None:
    failed(["models", "show", "nosuch@champion"], "error: no registered model named 'nosuch'", registry_work)


def test_show_unknown_version(registry_work: Path) -> None:
    failed(["models", "show", f"{MODEL}/7"], f"error: model {MODEL} has no version 7", registry_work)


def test_list_unknown_model(registry_work: Path) -> None:
    failed(["models", "list", "nosuch"], "error: no registered model named 'nosuch'", registry_work)


def test_register_unknown_run(registry_work: Path) -> None:
    line = "error: no run with id 'deadbeef': `graphrec train` prints the id of its run"
    failed(["models", "register", "deadbeef"], line, registry_work)


def test_prune_negative_keep(registry_work: Path) -> None:
    failed(["models", "prune", "--keep", "-1"], "error: --keep must be 0 or more, not -1", registry_work)


def test_prune_unknown_model(registry_work: Path) -> None:
    line = "error: no registered model named 'nosuch'"
    failed(["models", "prune", "--keep", "0", "--name", "nosuch"], line, registry_work)


def test_features_get_before_apply(tmp_path: Path) -> None:
    line = (
        "error: Feature view user_transh does not exist in project graphrec: "
        "run `graphrec features apply`, then `graphrec features materialize`"
    )
    failed(["features", "get", "--user", "1"], line, tmp_path / "w")


def test_train_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "none.yaml"
    failed(
        ["train", "--model", "bpr_mf", "--config", str(missing)], f"error: no such file or folder: {missing}", tmp_path
    )


def test_train_malformed_config(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("epochs: [1\n")
    line = f"error: {config}: invalid YAML at line 2, column 1: expected ',' or ']', but got '<stream end>'"
    failed(["train", "--model", "bpr_mf", "--config", str(config)], line, tmp_path)


def test_train_config_with_bad_fields(tmp_path: Path) -> None:
    config = tmp_path / "fields.yaml"
    config.write_text("epochs: many\nnosuch: 1\n")
    line = (
        f"error: {config}: invalid BPRMFConfig: epochs: Input should be a valid integer, unable to parse string as an "
        "integer; nosuch: Extra inputs are not permitted"
    )
    failed(["train", "--model", "bpr_mf", "--config", str(config)], line, tmp_path)


def test_train_unknown_model_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--work-dir", str(tmp_path), "train", "--model", "nosuch"])
    assert result.exit_code == 2, result.output  # click's usage error: "Invalid value for '--model'"
    assert "unknown model(s) nosuch" in " ".join(result.stderr.replace("│", " ").split())
    assert "Traceback" not in result.stdout + result.stderr


def test_missing_data_folder(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--data-dir", str(tmp_path / "empty"), "--work-dir", str(tmp_path), "data", "stats"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.stderr.startswith("error: ") and "GRAPHREC_DATA_DIR" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_predict_without_a_service(tmp_path: Path) -> None:
    result = runner.invoke(app, ["predict", "--user", "1", "--items", "1,2", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert result.stderr.startswith("error: cannot reach http://127.0.0.1:9")
    assert "Traceback" not in result.stdout + result.stderr


def test_a_bug_keeps_its_traceback(registry_work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("registry.versions.list_versions", broken)
    result = runner.invoke(app, ["--work-dir", str(registry_work), "models", "list"])
    assert isinstance(result.exception, RuntimeError) and "error:" not in result.stderr


def graphrec(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed command in a process of its own, as a user runs it (rich tracebacks and all)."""
    command = [sys.executable, "-c", "from cli.main import app; app(prog_name='graphrec')", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    args = ["--work-dir", str(tmp_path), "models", "promote", MODEL, "abc"]
    plain = graphrec(*args)
    assert plain.returncode == 1
    assert plain.stderr.strip().splitlines()[-1] == "error: version 'abc' is not a number"  # after MLflow's INFO lines
    assert "Traceback" not in plain.stdout + plain.stderr
    debug = graphrec("--debug", *args)
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and "RegistryError" in debug.stderr and "is not a number" in debug.stderr


def test_an_error_answer_of_the_service_is_one_line() -> None:
    from cli.context import expected_message
    from serving.client import ServingError

    assert expected_message(ServingError(503, "temporarily unavailable: NotReady")) == (
        "error",
        "the service answered HTTP 503: temporarily unavailable: NotReady",
    )


@pytest.mark.parametrize(
    ("args", "option"),
    [(["train", "--model", "nosuch"], "--model"), (["evaluate", "--models", "bpr_mf,nosuch"], "--models")],
)
def test_unknown_model_is_a_usage_error_naming_the_choices(tmp_path: Path, args: list[str], option: str) -> None:
    result = runner.invoke(app, ["--work-dir", str(tmp_path), *args])
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.replace("│", " ").split())
    assert f"Invalid value for '{option}': unknown model(s) nosuch; choose from " in message, message
    assert "bpr_mf" in message.split("choose from ")[1] and "kcan" in message.split("choose from ")[1]
    assert "Traceback" not in result.stdout + result.stderr


def test_features_get_before_materialize(tmp_path: Path) -> None:
    work = tmp_path / "w"
    applied = runner.invoke(app, ["--work-dir", str(work), "features", "apply"])
    assert applied.exit_code == 0, applied.output
    line = (
        "error: feature view(s) item_transh, item_graph_stats are not materialized: nothing to read online yet; "
        "run `graphrec features materialize`"
    )
    failed(["features", "get", "--item", "1"], line, work)


def test_audit_who_is_the_os_user_with_the_claimed_name_beside_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import pwd

    from registry.promotion import current_user

    login = pwd.getpwuid(os.geteuid()).pw_name
    for variable in ("LOGNAME", "USER", "LNAME", "USERNAME"):  # what getpass.getuser() would believe
        monkeypatch.setenv(variable, "mallory")
    monkeypatch.setenv("GRAPHREC_USER", "mallory")
    assert current_user() == f"{login} (claims mallory)"
    monkeypatch.setenv("GRAPHREC_USER", login)
    assert current_user() == login
    monkeypatch.delenv("GRAPHREC_USER")
    assert current_user() == login
