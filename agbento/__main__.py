"""`python -m agbento ARGS`: the `agbento` command."""

import sys

from agbento.cli import main

sys.exit(main())
