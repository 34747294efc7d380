"""python -m kare_rules.cli"""

import sys

from kare_rules.cli import main

sys.exit(main())
