"""`python -m minillama <command> ...`: the same as the `minillama` command (see `minillama.cli`)."""

import sys

from minillama.cli import main

sys.exit(main())
