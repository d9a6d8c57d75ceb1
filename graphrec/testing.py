"""Local services for tests, benchmarks and the demo: free loopback ports, waiting until a service answers, a
throwaway ``redis-server``, a throwaway PostgreSQL cluster, a real ``mlflow server`` and a served HTTP process.

Everything here starts processes on 127.0.0.1 only and stops them when the ``with`` block ends. It imports nothing
else of graphrec, so any layer (and tests, bench, the CLI's demo) can use it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import redis

LOOPBACK = "127.0.0.1"
REDIS_START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 15.0


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def wait_until(
    ready: Callable[[], bool],
    timeout_s: float,
    what: str,
    process: subprocess.Popen | None = None,
    interval_s: float = 0.1,
) -> float:
    """Poll ``ready()`` until it returns True and return the seconds that took; raise TimeoutError after
    ``timeout_s`` or RuntimeError as soon as ``process`` exits. Exceptions raised by ``ready`` count as "not yet"."""
    start = time.monotonic()
    deadline = start + timeout_s
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with code {process.returncode} before it was ready")
        try:
            if ready():
                return time.monotonic() - start
        except Exception:  # noqa: BLE001  a service that is starting fails in many ways; all mean "not yet"
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} was not ready within {timeout_s:g} s")
        time.sleep(interval_s)


def http_ok(url: str, timeout_s: float = 2.0) -> Callable[[], bool]:
    """A readiness check for :func:`wait_until`: ``GET url`` answers 200."""
    return lambda: httpx.get(url, timeout=timeout_s).status_code == 200


def stop_process(process: subprocess.Popen, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Terminate a child process, killing it when it does not exit within ``timeout_s``."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def redis_server_binary() -> str | None:
    """Path of the ``redis-server`` executable, or None when it is not installed."""
    return shutil.which("redis-server")


def _redis_pings(port: int) -> Callable[[], bool]:
    def ping() -> bool:
        client = redis.Redis(host=LOOPBACK, port=port)
        try:
            return bool(client.ping())
        finally:
            client.close()

    return ping


@contextmanager
def running_redis() -> Iterator[str]:
    """Start redis-server (``--save '' --appendonly no``) in a temporary folder; yield ``host:port``; stop it."""
    binary = redis_server_binary()
    if binary is None:
        raise FileNotFoundError("redis-server is not installed (e.g. `apt-get install redis-server`)")
    with tempfile.TemporaryDirectory(prefix="graphrec-redis-") as folder:
        port = free_port()
        command = [binary, "--bind", LOOPBACK, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", folder]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(_redis_pings(port), REDIS_START_TIMEOUT_S, f"redis-server on {LOOPBACK}:{port}", process, 0.05)
            yield f"{LOOPBACK}:{port}"
        finally:
            stop_process(process)


class RedisProcess:
    """A redis-server on a fixed loopback port that can be stopped and restarted with its data (RDB on shutdown)."""

    def __init__(self, folder: Path):
        self.folder, self.port = folder, free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """``host:port`` with short socket timeouts, so a dead server fails requests fast instead of hanging them."""
        return f"{LOOPBACK}:{self.port},socket_timeout=1.0,socket_connect_timeout=1.0"

    def start(self) -> None:
        """Start the server (loading its RDB file when one was saved) and wait until it answers PING."""
        binary = redis_server_binary()
        if binary is None:
            raise FileNotFoundError("redis-server is not installed (apt-get install redis-server)")
        self.folder.mkdir(parents=True, exist_ok=True)
        command = [
            binary,
            "--bind",
            LOOPBACK,
            "--port",
            str(self.port),
            "--dir",
            str(self.folder),
            "--dbfilename",
            "dump.rdb",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(
            _redis_pings(self.port), REDIS_START_TIMEOUT_S, f"redis-server on port {self.port}", self.process, 0.05
        )

    def stop(self) -> None:
        """Save the data and stop the server."""
        if self.process is None:
            return
        with contextlib.suppress(redis.ConnectionError):  # shutdown closes the connection under the client
            redis.Redis(host=LOOPBACK, port=self.port).shutdown(save=True)
        self.process.wait(timeout=10)
        self.process = None


POSTGRES_START_TIMEOUT_S = 60.0
POSTGRES_DATABASE = "mlflow"
POSTGRES_ROLE = "graphrec"
POSTGRES_SYSTEM_USERS = ("postgres", "nobody")  # who runs the server when we are root (postgres refuses root)


def postgres_bin_dir() -> Path | None:
    """The ``bin`` folder of the newest PostgreSQL under /usr/lib/postgresql (Debian's layout) holding ``initdb``,
    ``pg_ctl`` and ``createdb``, else the folder of an ``initdb`` on PATH; None when PostgreSQL is not installed."""
    needed = ("initdb", "pg_ctl", "createdb")
    found = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if all((p / n).is_file() for n in needed)]
    if found:
        return max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    initdb = shutil.which("initdb")
    if initdb is not None and all((Path(initdb).resolve().parent / n).is_file() for n in needed):
        return Path(initdb).resolve().parent
    return None


def _server_account() -> pwd.struct_passwd | None:
    """The account the server runs as: None (ourselves) unless we are root, else the first of
    POSTGRES_SYSTEM_USERS that exists (Debian's package creates ``postgres``)."""
    if os.geteuid() != 0:
        return None
    for name in POSTGRES_SYSTEM_USERS:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError(f"running as root and none of the accounts {POSTGRES_SYSTEM_USERS} exists to run PostgreSQL")


def _as_account(command: list[str], account: pwd.struct_passwd | None) -> list[str]:
    """``command`` run as ``account`` (through runuser, or su where runuser is missing), or as is for None."""
    if account is None:
        return command
    runuser = shutil.which("runuser")
    if runuser is not None:
        return [runuser, "-u", account.pw_name, "--", *command]
    return ["su", "-s", "/bin/sh", account.pw_name, "-c", shlex.join(command)]


@contextmanager
def running_postgres(timeout_s: float = POSTGRES_START_TIMEOUT_S) -> Iterator[str]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (trust authentication, no fsync, no Unix socket) with an empty
    database ``mlflow`` owned by role ``graphrec``; yields its SQLAlchemy URL (SQLAlchemy 2.1 reads ``postgresql://``
    with psycopg 3) and stops and deletes the cluster afterwards. As root the server runs as ``postgres`` (or
    ``nobody``): PostgreSQL refuses to run as root."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL is not installed (e.g. `apt-get install postgresql`)")
    account = _server_account()
    folder = Path(tempfile.mkdtemp(prefix="graphrec-postgres-"))
    try:
        if account is not None:  # the cluster's files belong to the account that runs the server
            os.chown(folder, account.pw_uid, account.pw_gid)
        data, log_file, port = folder / "data", folder / "server.log", free_port()

        def run(command: list[str]) -> None:
            done = subprocess.run(_as_account(command, account), capture_output=True, text=True, timeout=timeout_s)
            if done.returncode != 0:
                log_tail = log_file.read_text()[-2000:] if log_file.exists() else ""
                raise RuntimeError(f"{command[0]} failed ({done.returncode}): {done.stderr[-2000:]}{log_tail}")

        run([str(bin_dir / "initdb"), "-D", str(data), "-U", POSTGRES_ROLE, "--auth=trust", "-E", "UTF8", "--no-sync"])
        options = f"-h {LOOPBACK} -p {port} -k '' -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        start = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log_file), "-o", options, "-w"]
        run([*start, "-t", str(int(timeout_s)), "start"])
        try:
            run([str(bin_dir / "createdb"), "-h", LOOPBACK, "-p", str(port), "-U", POSTGRES_ROLE, POSTGRES_DATABASE])
            yield f"postgresql://{POSTGRES_ROLE}@{LOOPBACK}:{port}/{POSTGRES_DATABASE}"
        finally:
            run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def mlflow_server(folder: Path, timeout_s: float = 90.0, backend_store_uri: str | None = None) -> Iterator[str]:
    """Run a real ``mlflow server`` (proxied artefacts under ``folder``; tracking and registry in
    ``backend_store_uri``, by default a SQLite file under ``folder``) until the block exits; yields its tracking URI."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--backend-store-uri",
        backend_store_uri or f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination",
        str(folder / "artifacts"),
        "--workers",
        "1",
    ]
    uri = f"http://{LOOPBACK}:{port}"
    with open(folder / "server.log", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            try:
                wait_until(http_ok(f"{uri}/health", 1.0), timeout_s, f"mlflow server on {uri}", process, 0.5)
            except (RuntimeError, TimeoutError) as error:
                raise RuntimeError(f"{error}; its log ends: {(folder / 'server.log').read_text()[-2000:]}") from None
            yield uri
        finally:
            stop_process(process)


@contextmanager
def http_service(
    command: Sequence[str], port: int, ready_path: str = "/readyz", timeout_s: float = 120.0, **popen: object
) -> Iterator[tuple[subprocess.Popen, str]]:
    """Start an HTTP server process listening on ``port``, wait until ``GET ready_path`` answers 200, yield
    ``(process, base_url)`` and stop it afterwards. ``popen`` goes to :class:`subprocess.Popen` (env, cwd...)."""
    url = f"http://{LOOPBACK}:{port}"
    process = subprocess.Popen(list(command), **popen)  # type: ignore[call-overload]
    try:
        wait_until(http_ok(f"{url}{ready_path}"), timeout_s, f"the service on {url}", process, 0.2)
        yield process, url
    finally:
        stop_process(process, 30.0)
