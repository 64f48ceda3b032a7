"""`compclap prepare negatives` from a checkout: `python data_prep/hard_negatives.py ARGS` runs it.

The tool lives in compclap.prepare.negatives (installed with the package); this file keeps the
checkout command working.
"""

from __future__ import annotations

import sys

from compclap.prepare.negatives import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
