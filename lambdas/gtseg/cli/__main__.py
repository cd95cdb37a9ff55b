"""``python -m gtseg.cli ...``, the same as the ``gtseg`` command."""

import sys

from gtseg.cli import main

sys.exit(main())
