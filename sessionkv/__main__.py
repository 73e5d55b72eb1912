"""``python -m sessionkv``: the same command line as the ``sessionkv`` script."""

import sys

from .cli import main

sys.exit(main())
