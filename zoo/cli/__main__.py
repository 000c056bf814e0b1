"""``python -m zoo.cli``: the ``zoo`` command (torchrun and SLURM launch it this way)."""

import sys

from zoo.cli import main

sys.exit(main())
