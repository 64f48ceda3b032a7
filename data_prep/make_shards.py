"""`compclap prepare shards` from a checkout: `python data_prep/make_shards.py ARGS` runs it.

The tool lives in compclap.prepare.shards (installed with the package); this file keeps the
checkout command working.
"""

from __future__ import annotations

import sys

from compclap.prepare.shards import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
