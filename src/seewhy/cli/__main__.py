"""``python -m seewhy.cli``: the ``seewhy`` command."""

import sys

from . import main

sys.exit(main())
