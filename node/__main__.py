"""``python -m exchnode.node``: the reference daemon's command line."""

import sys

if "--worker" in sys.argv[1:]:  # before the imports: a worker told to stop while starting
    from .early_signals import install

    install()

from .cli import main

raise SystemExit(main())
