"""The compiled capture path: built as setup.py says, detectably stale, and switchable to .py."""

from __future__ import annotations

import ast
import hashlib
import importlib.machinery
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mockforge_analytics_plugin import speedups

ROOT = Path(__file__).resolve().parent.parent


def _setup_list() -> list[str]:
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "COMPILED":
            return [Path(ast.literal_eval(e)).stem for e in node.value.elts]  # type: ignore[attr-defined]
    raise AssertionError("setup.py has no COMPILED list")


def test_setup_compiles_exactly_the_modules_speedups_knows() -> None:
    assert _setup_list() == list(speedups.COMPILED_MODULES)


@pytest.mark.skipif(
    os.environ.get("MOCKFORGE_ANALYTICS_COMPILE") == "0" or speedups.pure_python_requested(),
    reason="a pure-Python build or run was asked for",
)
def test_this_install_runs_the_compiled_capture_path() -> None:
    """CI builds with mypyc: the suite (and the benchmarks) exercise the compiled modules."""
    import mockforge_analytics_plugin.capture_build as capture_build
    import mockforge_analytics_plugin.middleware as middleware
    import mockforge_analytics_plugin.recorder as recorder
    import mockforge_analytics_plugin.recorder_fold as recorder_fold

    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    for module in (middleware, capture_build, recorder, recorder_fold):
        assert str(module.__file__).endswith(suffixes), module.__file__
    assert speedups.compiled_modules() == list(speedups.COMPILED_MODULES)
    assert speedups.stale_modules() == []


def _fake_build(folder: Path, sources: dict[str, bytes]) -> None:
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    digests = {}
    for name, text in sources.items():
        (folder / f"{name}.py").write_bytes(text)
        (folder / f"{name}{suffix}").write_bytes(b"")
        digests[name] = hashlib.sha256(text).hexdigest()
    (folder / speedups.SOURCES_FILE).write_text(json.dumps(digests), encoding="utf-8")


def test_an_edited_source_makes_its_extension_stale(tmp_path: Path) -> None:
    _fake_build(tmp_path, {"middleware": b"x = 1\n", "recorder": b"y = 2\n"})
    assert speedups.stale_modules(tmp_path) == []
    (tmp_path / "recorder.py").write_bytes(b"y = 3\n")
    assert speedups.stale_modules(tmp_path) == ["recorder"]
    (tmp_path / speedups.SOURCES_FILE).unlink()  # no record of what was built: cannot vouch
    assert speedups.stale_modules(tmp_path) == ["middleware", "recorder"]


def test_no_extensions_is_never_stale(tmp_path: Path) -> None:
    (tmp_path / "middleware.py").write_text("x = 1\n", encoding="utf-8")
    assert speedups.stale_modules(tmp_path) == []


@pytest.mark.parametrize(("value", "wanted"), [("1", True), ("yes", True), ("0", False), ("", False)])
def test_pure_python_switch_values(value: str, wanted: bool) -> None:
    assert speedups.pure_python_requested({speedups.PURE_ENV: value}) is wanted


def test_capture_tests_pass_on_the_pure_python_modules_too() -> None:
    """The fallback (no compiler, or MOCKFORGE_ANALYTICS_PURE_PYTHON=1) runs the same capture tests."""
    env = dict(os.environ, **{speedups.PURE_ENV: "1"})
    probe = subprocess.run(
        [sys.executable, "-c", "import mockforge_analytics_plugin.middleware as m, "
         "mockforge_analytics_plugin.recorder_fold as f; print(m.__file__); print(f.__file__)"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    assert all(line.endswith(".py") for line in probe.stdout.split()), probe.stdout
    tests = ["tests/test_capture_middleware.py", "tests/test_capture_recorder.py",
             "tests/test_capture_recorder_cells.py"]  # fmt: skip
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
