#!/usr/bin/env python3
"""The continuous-learning loop as a daemon (see docs/CONTINUOUS_LEARNING.md).

python scripts/continuous_loop.py                      # run until stopped
python scripts/continuous_loop.py --config config.json
python scripts/continuous_loop.py --status             # print status, create nothing
python scripts/continuous_loop.py --trigger            # force a retrain now
"""

from afs.continuous.loop_cli import continuous_loop_main

if __name__ == "__main__":
    raise SystemExit(continuous_loop_main())
