"""`compclap prepare manifest` from a checkout: `python data_prep/build_manifest.py ARGS` runs it.

The tool lives in compclap.prepare.manifest (installed with the package); this file keeps the
checkout command working.
"""

from __future__ import annotations

import sys

from compclap.prepare.manifest import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
