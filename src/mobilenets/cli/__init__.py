"""The `mobilenets` command line. Nothing in the library imports this package.

PyTorch's OpenMP threads busy-wait by default: on a machine whose cores are busy that slows training
and inference about 20×. The policy must be set before torch is imported, so here, before the
first import of anything that imports torch; a value the user set is kept.
"""

import os
import signal
import sys
import threading
from types import FrameType

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _interrupted_while_starting(signum: int, frame: FrameType | None) -> None:
    # Ctrl-C during the seconds torch takes to import: nothing has started, so nothing to save.
    sys.stderr.write("mobilenets: interrupted while starting\n")
    os._exit(130)


_starting = threading.current_thread() is threading.main_thread()
if _starting:
    _previous_handler = signal.signal(signal.SIGINT, _interrupted_while_starting)

from .app import main  # noqa: E402  (after the environment is set)

if _starting:
    signal.signal(signal.SIGINT, _previous_handler)

__all__ = ["main"]
