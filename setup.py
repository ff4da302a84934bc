"""Build hook: compiles the capture path (middleware, record builder, recorder) with mypyc.

Everything else is in pyproject.toml. The compiled modules are the same .py files turned into C
extensions (same behaviour, about half the CPU per request: `python benchmarks/overhead.py`);
MOCKFORGE_ANALYTICS_COMPILE=0 at build time gives a pure-Python build, and
MOCKFORGE_ANALYTICS_PURE_PYTHON=1 at run time loads the .py files of a compiled install.
"""

import hashlib
import json
import os
from pathlib import Path

from setuptools import setup

# Kept in step with mockforge_analytics_plugin/speedups.py (COMPILED_MODULES); a test checks.
COMPILED = [
    "mockforge_analytics_plugin/middleware.py",
    "mockforge_analytics_plugin/capture_build.py",
    "mockforge_analytics_plugin/recorder.py",
    "mockforge_analytics_plugin/recorder_fold.py",
]

ext_modules = []
if os.environ.get("MOCKFORGE_ANALYTICS_COMPILE", "1") == "0":
    # A pure build must not leave an earlier in-place (editable) build's extensions behind:
    # Python would import them in preference to the .py files.
    here = Path(__file__).resolve().parent
    for built in [
        *here.glob("mockforge_analytics_plugin/*.so"),
        *here.glob("mockforge_analytics_plugin__mypyc*.so"),
    ]:
        built.unlink()
else:
    from mypyc.build import mypycify

    ext_modules = mypycify(COMPILED, opt_level="3", group_name="mockforge_analytics_plugin")
    # What was compiled, by content: speedups.stale_modules() tells an edited checkout from a build.
    here = Path(__file__).resolve().parent
    sources = {Path(p).stem: hashlib.sha256((here / p).read_bytes()).hexdigest() for p in COMPILED}
    (here / "mockforge_analytics_plugin" / "_compiled_sources.json").write_text(json.dumps(sources, indent=1))

setup(ext_modules=ext_modules)
