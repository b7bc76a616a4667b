"""Build hook: with FRAMECAST_COMPILE=1 the edge's hot path is compiled with mypyc.

The modules are listed in src/framecast/edge/hotpath.py. The default build
(FRAMECAST_COMPILE unset or 0) is pure Python. Compiling needs a C compiler,
the Python headers, and mypy plus the edge's dependencies in the build
environment (mypyc type-checks what it compiles), so it builds without
isolation: `pip install --no-build-isolation`, as the edge image and
`make compile` do.
"""

import os
import runpy

from setuptools import setup


def ext_modules() -> list:
    flag = os.environ.get("FRAMECAST_COMPILE", "0")
    if flag not in ("0", "1"):
        raise SystemExit(f"FRAMECAST_COMPILE must be 0 or 1, not {flag!r}")
    if flag == "0":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        raise SystemExit("FRAMECAST_COMPILE=1: mypyc is not importable here; install mypy and the edge's "
                         "dependencies, then build with pip's --no-build-isolation") from None
    sources = runpy.run_path(os.path.join("src", "framecast", "edge", "hotpath.py"))["HOT_SOURCES"]
    # mypy follows imports into modules it does not compile (some need packages only the inference or
    # client extras bring): their errors are not this build's concern
    return mypycify(["--follow-imports=silent", *sources], opt_level="3")


setup(ext_modules=ext_modules())
