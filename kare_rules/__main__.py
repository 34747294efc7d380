"""python -m kare_rules: the `kare` command, for when its script is not on PATH."""

import sys

from kare_rules.console import main

sys.exit(main())
