"""Private PostgreSQL and Kafka instances for tests that stop, restart or pause them: their own
ports and data folders (scripts/services with SHOWOFF_* variables), so the shared services of
the test run are never touched."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

from django.db import connection

from .relay_helpers import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Service:
    name = ""

    def __init__(self, base: Path, **env: str):
        self.base = base
        self.env = {**os.environ, "SHOWOFF_LOCAL_DIR": str(base), **env}

    def services(self, action: str) -> str:
        result = subprocess.run([sys.executable, "scripts/services", action, self.name],
                                cwd=ROOT, env=self.env, capture_output=True, text=True,
                                timeout=180)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def up(self) -> None:
        self.services("up")

    def down(self) -> None:
        self.services("down")


class PrivateBroker(_Service):
    name = "kafka"

    def __init__(self, base: Path):
        local = os.environ.get("SHOWOFF_LOCAL_DIR", str(ROOT / ".local"))
        self.port = free_port()
        super().__init__(base, SHOWOFF_KAFKA_PORT=str(self.port),
                         SHOWOFF_KAFKA_CONTROLLER_PORT=str(free_port()),
                         SHOWOFF_KAFKA_LIBS=os.path.join(local, "kafka", "libs"),
                         SHOWOFF_KAFKA_HEAP="-Xms128m -Xmx384m")

    @property
    def pid(self) -> int:
        return int((self.base / "run" / "kafka.pid").read_text().split()[0])

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)


class PrivatePostgres(_Service):
    """A cluster of its own with the test database's schema (copied with pg_dump)."""

    name = "postgres"

    def __init__(self, base: Path):
        self.port = free_port()
        self.db = "showoff_private"
        super().__init__(base, SHOWOFF_PG_PORT=str(self.port), SHOWOFF_PG_DB=self.db,
                         SHOWOFF_PG_USER=connection.settings_dict["USER"])
        self.url = (f"postgres://{connection.settings_dict['USER']}@127.0.0.1:{self.port}/"
                    f"{self.db}")

    def create(self) -> None:
        self.up()
        db = connection.settings_dict
        schema = subprocess.run(
            ["pg_dump", "-h", db["HOST"] or "127.0.0.1", "-p", str(db["PORT"] or 5432), "-U",
             db["USER"], "--schema-only", "--no-owner", db["NAME"]],
            capture_output=True, text=True, check=True, env={**os.environ,
                                                              "PGPASSWORD": db["PASSWORD"] or ""},
        ).stdout
        subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U",
                        db["USER"], "-d", self.db, "-v", "ON_ERROR_STOP=1", "-q"],
                       input=schema, capture_output=True, text=True, check=True)

    @property
    def data_root(self) -> Path | None:
        match = re.search(r"data (\S+)", self.services("status"))
        return Path(match.group(1)).parent if match else None

    def destroy(self) -> None:
        root = self.data_root
        self.down()
        if root is not None and root.exists():
            shutil.rmtree(root, ignore_errors=True)
