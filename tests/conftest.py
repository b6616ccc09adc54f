"""Shared test setup: keep torch on few threads so the suite behaves on 2-core CI machines."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
