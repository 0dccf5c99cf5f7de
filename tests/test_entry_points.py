"""The command line sets OMP_WAIT_POLICY=PASSIVE before torch is imported (PyTorch's OpenMP threads
otherwise busy-wait, and on a busy machine training runs ~20× slower), keeps a value the user set,
and `import mobilenets` alone does not import torch."""

import os
import subprocess
import sys

import pytest

# Records the policy at the moment torch is first imported, then runs the entry point given.
WATCH = """
import os, sys
seen = []
class WatchTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not seen:
            seen.append(os.environ.get("OMP_WAIT_POLICY", "unset"))
sys.meta_path.insert(0, WatchTorch())
try:
    {entry}
finally:
    print("policy when torch was imported:", seen[0] if seen else "torch never imported", file=sys.stderr)
"""
ENTRIES = {
    "python -m mobilenets": "import runpy; sys.argv = ['mobilenets', 'list']; "
    "runpy.run_module('mobilenets', run_name='__main__', alter_sys=True)",
    "console script": "from mobilenets.cli import main; sys.exit(main(['list']))",
}


def run(code: str, policy: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)


# Each entry point once (a subprocess that imports torch takes seconds): one sets the policy, the
# other keeps the user's.
@pytest.mark.parametrize(
    "entry, user_policy, expected",
    [("python -m mobilenets", None, "PASSIVE"), ("console script", "ACTIVE", "ACTIVE")],
)
def test_the_command_line_sets_the_wait_policy_before_torch_loads(entry, user_policy, expected):
    result = run(WATCH.format(entry=ENTRIES[entry]), user_policy)
    assert result.returncode == 0, result.stderr
    assert "mobilenet_v3_small" in result.stdout
    assert f"policy when torch was imported: {expected}" in result.stderr


def test_importing_the_package_does_not_import_torch():
    result = run(
        "import sys, mobilenets; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))", None
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_every_public_name_has_a_docstring_and_the_package_is_typed():
    """What `from mobilenets import *` gives is documented (help() says what it is), and the
    package carries the PEP 561 marker, so type checkers read its annotations."""
    from pathlib import Path

    import mobilenets

    undocumented = [
        name for name in mobilenets.__all__ if not (getattr(mobilenets, name).__doc__ or "").strip()
    ]
    assert undocumented == []
    assert (Path(mobilenets.__file__).parent / "py.typed").is_file()
