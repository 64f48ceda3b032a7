"""`python -m compclap ...` is the `compclap` command."""

import sys

from compclap.entry import main

sys.exit(main())
