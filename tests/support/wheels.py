"""Build the plugin and host wheels once and install them into a fresh virtual environment."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["InstalledWheels", "build_and_install"]

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class InstalledWheels:
    """Where the wheels are and the venv that has them installed (not editable)."""

    plugin_wheel: Path
    host_wheel: Path
    venv: Path

    @property
    def python(self) -> Path:
        """The fresh venv's interpreter."""
        return self.venv / "bin" / "python"

    @property
    def example_host(self) -> str:
        """The `example-host` command of the fresh venv."""
        return str(self.venv / "bin" / "example-host")

    def wheel_names(self) -> list[str]:
        """Every file inside the plugin wheel."""
        with zipfile.ZipFile(self.plugin_wheel) as zf:
            return zf.namelist()


def _run(cmd: list[str], cwd: Path | None = None) -> None:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")


def build_and_install(workdir: Path) -> InstalledWheels:
    """Build both wheels from the repo (isolated builds) and pip-install them into a new venv."""
    dist = workdir / "dist"
    dist.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(REPO)])
    _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(REPO / "example_host")])
    plugin_wheel = next(dist.glob("mockforge_analytics_plugin-*.whl"))
    host_wheel = next(dist.glob("mockforge_example_host-*.whl"))
    env_dir = workdir / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    _run([str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", str(plugin_wheel), str(host_wheel)])
    return InstalledWheels(plugin_wheel=plugin_wheel, host_wheel=host_wheel, venv=env_dir)
