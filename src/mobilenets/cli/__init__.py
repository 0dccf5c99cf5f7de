"""The `mobilenets` command line. Nothing in the library imports this package.

PyTorch's OpenMP threads busy-wait by default: on a machine whose cores are busy that slows training
and inference about 20×. The policy must be set before torch is imported, so here, before the
first import of anything that imports torch; a value the user set is kept.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .app import main  # noqa: E402  (after the environment is set)

__all__ = ["main"]
