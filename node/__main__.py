"""``python -m exchnode.node``: the reference daemon's command line."""

from .cli import main

raise SystemExit(main())
