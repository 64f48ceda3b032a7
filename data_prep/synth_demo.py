"""`compclap prepare synth-demo` from a checkout: `python data_prep/synth_demo.py ARGS` runs it.

The tool lives in compclap.prepare.synth_demo (installed with the package); this file keeps the
checkout command working.
"""

from __future__ import annotations

from compclap.prepare.synth_demo import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    main()
