"""A throwaway ``redis-server`` on a free loopback port, without persistence, for tests and benchmarks."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis

HOST = "127.0.0.1"
START_TIMEOUT_S = 10.0


def redis_server_binary() -> str | None:
    """Path of the ``redis-server`` executable, or None when it is not installed."""
    return shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def _wait_for_ping(process: subprocess.Popen, port: int) -> None:
    client = redis.Redis(host=HOST, port=port)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            reason = process.stderr.read().decode() if process.stderr else ""
            raise RuntimeError(f"redis-server exited with code {process.returncode}: {reason}")
        try:
            if client.ping():
                client.close()
                return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on {HOST}:{port} did not answer within {START_TIMEOUT_S} s") from None
            time.sleep(0.05)


@contextmanager
def running_redis() -> Iterator[str]:
    """Start redis-server (``--save '' --appendonly no``) in a temporary folder; yield ``host:port``; stop it."""
    binary = redis_server_binary()
    if binary is None:
        raise FileNotFoundError("redis-server is not installed (e.g. `apt-get install redis-server`)")
    with tempfile.TemporaryDirectory(prefix="graphrec-redis-") as folder:
        port = _free_port()
        command = [binary, "--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", folder]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _wait_for_ping(process, port)
            yield f"{HOST}:{port}"
        finally:
            process.terminate()
            try:
                process.wait(timeout=START_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
