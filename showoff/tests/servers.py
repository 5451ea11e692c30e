"""The web process started for real, as `make run` and the containers start it, for tests that
speak HTTP to it (every URL the API hands out is fetched; several worker processes share one
Redis).

`web_server("make-run")` runs the Procfile's `web` command (runserver, the development settings,
DEBUG left at its default, which is on); `web_server("container")` runs the production
compose file's gunicorn command under the production settings. Either serves the test's own
database (the test must commit: `django_db(transaction=True)`), the run's cache prefix and the
media folder the test gives.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url() -> str:
    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def procfile_command(process: str) -> list[str]:
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == process:
            return shlex.split(command)
    raise LookupError(f"no {process!r} process in the Procfile")


def compose_command(path: str, service: str) -> list[str]:
    """The `command:` of a service in a compose file (the api's gunicorn line)."""
    text = (ROOT / path).read_text()
    block = re.search(rf"^  {service}:\n((?:    .*\n|\n)+)", text, re.M)
    assert block, f"no service {service} in {path}"
    command = re.search(r"^    command: (.+)$", block.group(1), re.M)
    assert command, f"no command for {service} in {path}"
    return shlex.split(command.group(1))


def _command(kind: str, port: int, workers: int | None) -> list[str]:
    if kind == "make-run":
        argv = procfile_command("web")
        argv = [a.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for a in argv]
        if argv[0] == "python":
            argv[0] = sys.executable
        return argv
    if kind == "container":
        argv = compose_command("docker-compose.prod.yml", "api")
        argv[argv.index("--bind") + 1] = f"127.0.0.1:{port}"
        if workers is not None:
            argv[argv.index("--workers") + 1] = str(workers)
        argv[0] = str(Path(sys.executable).parent / argv[0])
        return argv
    raise ValueError(kind)


def app_env(kind: str, *, media_dir: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a process of the app as `kind` runs it (the web process, or a
    `manage.py` command beside it): this test run's database, cache prefix and topic prefix."""
    child_env = {k: v for k, v in os.environ.items()
                 if k not in ("DJANGO_SETTINGS_MODULE", "DEBUG")}
    child_env.update({
        "DATABASE_URL": database_url(),
        "CACHE_KEY_PREFIX": settings.CACHES["default"]["KEY_PREFIX"],
        "MEDIA_STORAGE": "local",
        "MEDIA_STORAGE_LOCATION": str(media_dir),
        "MEDIA_UPLOAD_CHUNK_DIR": str(media_dir / "chunks"),
        "KAFKA_TOPIC_PREFIX": settings.KAFKA_TOPIC_PREFIX,
        "LOG_LEVEL": "WARNING",
        **_KIND_ENV[kind],
        **(env or {}),
    })
    return child_env


_KIND_ENV = {
    "make-run": {},
    "container": {
        "DJANGO_SETTINGS_MODULE": "showoff.settings.production",
        "SECRET_KEY": "test-only-" + "x" * 40,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        # The container sits behind a TLS proxy; this test speaks plain HTTP to it.
        "SECURE_SSL_REDIRECT": "false",
        "ACCOUNTS_PASSWORD_RESET_URL": "https://app.example.com/reset?token={token}",
        "ACCOUNTS_EMAIL_VERIFICATION_URL": "https://app.example.com/verify?token={token}",
    },
}


@contextmanager
def web_server(kind: str, *, media_dir: Path, workers: int | None = None,
               env: dict[str, str] | None = None) -> Iterator[str]:
    """Start the web process; yields its base URL (`http://127.0.0.1:<port>`)."""
    port = free_port()
    argv = _command(kind, port, workers)
    prometheus = tempfile.mkdtemp(prefix="showoff-prom-")  # as `make run` sets it
    child_env = app_env(kind, media_dir=media_dir,
                        env={"PROMETHEUS_MULTIPROC_DIR": prometheus, **(env or {})})
    log = tempfile.NamedTemporaryFile(prefix=f"showoff-{kind}-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(argv, cwd=ROOT, env=child_env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{kind} exited with {proc.returncode}:\n"
                                   f"{Path(log.name).read_text()[-3000:]}")
            try:
                if requests.get(f"{base}/healthz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or still loading
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind} did not answer /healthz within 60 s:\n"
                                   f"{Path(log.name).read_text()[-3000:]}")
            time.sleep(0.2)
        yield base
    finally:
        # The whole process group: gunicorn's workers with their master.
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        os.unlink(log.name)
        shutil.rmtree(prometheus, ignore_errors=True)
