"""``python -m node``: the reference daemon's command line."""

from node.cli import main

raise SystemExit(main())
