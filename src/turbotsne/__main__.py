"""``python -m turbotsne``: the ``turbotsne`` command (see :mod:`turbotsne.cli`)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
