"""`python -m framecast`: the viewer CLI (watch, probe)."""

from __future__ import annotations

import sys

from framecast.cli import main

if __name__ == "__main__":
    sys.exit(main())
