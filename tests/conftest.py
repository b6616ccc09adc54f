"""Shared test setup: keep torch on few threads so the suite behaves on 2-core CI machines."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

# Session fixtures of the tracking-server and DVC-remote tests: one tiny project serves both.
from served_project import served_project, tracking_server  # noqa: E402, F401
