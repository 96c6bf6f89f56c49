"""``python -m exchnode.cli``: the same as the installed ``exchnode`` script."""

from exchnode.cli import main

raise SystemExit(main())
