"""Start the example host as a real process on a free port (helpers shared by end-to-end tests)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

__all__ = ["HostProcess", "default_executable", "free_port", "run_host", "write_config"]

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 15.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(tmp_path: Path, data: dict[str, Any], name: str = "host.yaml") -> Path:
    """Write a host config as YAML into tmp_path and return its path."""
    path = Path(tmp_path) / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def default_executable() -> str:
    """The `example-host` script installed next to the running interpreter."""
    bindir = Path(sys.executable).parent
    for name in ("example-host", "example-host.exe"):
        if (bindir / name).exists():
            return str(bindir / name)
    return "example-host"


@dataclass
class HostProcess:
    """A running `example-host serve` process."""

    proc: subprocess.Popen[bytes]
    port: int
    url: str
    stderr_path: Path
    stdout_path: Path
    returncode: int | None = field(default=None)

    def stderr(self) -> str:
        """What the process wrote to stderr so far."""
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def stdout(self) -> str:
        """What the process wrote to stdout so far."""
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, sig: int = signal.SIGINT, timeout: float = STOP_TIMEOUT_S) -> int:
        """Send `sig`, wait for the exit and return the exit code (idempotent; kills after timeout)."""
        if self.returncode is not None:
            return self.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.returncode = self.proc.returncode
        return self.returncode


def _wait_ready(host: HostProcess, timeout: float) -> None:
    """Poll the host until it answers; raise with its stderr if it exits or never answers."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        code = host.proc.poll()
        if code is not None:
            raise RuntimeError(f"example-host exited with {code} before answering:\n{host.stderr()}")
        try:
            httpx.get(host.url + "/__mockforge/plugins.json", timeout=1.0)
            return
        except httpx.HTTPError as exc:
            last_error = repr(exc)
        time.sleep(0.05)
    host.stop(signal.SIGKILL)
    raise RuntimeError(
        f"example-host did not answer within {timeout} s ({last_error}); stderr:\n{host.stderr()}"
    )


@contextlib.contextmanager
def run_host(
    config_path: Path,
    *,
    port: int | None = None,
    args: Sequence[str] = (),
    executable: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = START_TIMEOUT_S,
) -> Iterator[HostProcess]:
    """Run `example-host serve --config FILE --port P [args]` until the block ends (then SIGINT).

    `env` entries are added to the current environment. stdout/stderr go to files next to the
    config (readable through `.stdout()`/`.stderr()`).
    """
    port = port or free_port()
    exe = executable or default_executable()
    full_env = {**os.environ, **(env or {})}
    config_path = Path(config_path)
    stem = f"{config_path.stem}-{port}"
    out_path = config_path.parent / f"{stem}.stdout.log"
    err_path = config_path.parent / f"{stem}.stderr.log"
    cmd = [exe, "serve", "--config", str(config_path), "--port", str(port), *args]
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=full_env, cwd=cwd)
    host = HostProcess(
        proc=proc, port=port, url=f"http://127.0.0.1:{port}", stderr_path=err_path, stdout_path=out_path
    )
    try:
        _wait_ready(host, timeout)
        yield host
    finally:
        host.stop()
