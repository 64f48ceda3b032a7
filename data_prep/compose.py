"""`compclap prepare compose` from a checkout: `python data_prep/compose.py ARGS` runs it.

The tool lives in compclap.prepare.compose (installed with the package); this file keeps the
checkout command working.
"""

from __future__ import annotations

from compclap.prepare.compose import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    main()
