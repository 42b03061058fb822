"""``python -m afs.continuous.cli``."""

from afs.continuous.cli import main

raise SystemExit(main())
