"""``python -m afs.continuous``: the same as the ``afs-continuous`` command."""

from afs.continuous.cli import main

raise SystemExit(main())
