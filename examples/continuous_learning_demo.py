#!/usr/bin/env python3
"""The complete continuous-learning cycle, on simulated traffic with a small real model.

Logging → quality filter → trigger → retraining → challenger → A/B comparison → promotion,
on SQLite in a temporary directory (or --dir DIR to keep it). Same as `afs-continuous demo`.
"""

from afs.continuous.demo import main

if __name__ == "__main__":
    raise SystemExit(main())
