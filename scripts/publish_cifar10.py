"""Publish a CIFAR-10 run as the package's `cifar10` weights for its model and width.

    python scripts/publish_cifar10.py RUN_DIR [--command "mobilenets train ..." --commit SHA] [--default]

Reads RUN_DIR/last.safetensors (the end of the schedule: no choice made on the validation split),
drops the optimizer state, records what produced it (command, git commit, epochs, validation
top-1; a run trained from weights keeps its lineage) in the header, and writes
- src/mobilenets/published/cifar10_MODEL_WIDTH.safetensors (what `weights="cifar10"` loads for
  that model and width),
- docs/results/cifar10_MODEL_WIDTH/metrics.csv and curves.png (the run's own files),
and lists it by key, file and SHA-256 in src/mobilenets/published/index.json (the registry reads
everything else from the file's header), in place of the `cifar10` file of the same model and
width. The first entry of a key is its default (`--default` puts this one first).

--command/--commit are for runs whose checkpoint predates the trainer recording its own provenance;
a checkpoint that has one keeps it, and a disagreeing value is an error.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

from mobilenets.checkpoint import load_checkpoint, release_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--command", help="the `mobilenets train` command of the run")
    parser.add_argument("--commit", help="the git commit of the code that trained it")
    parser.add_argument("--default", action="store_true", help="make it the key's default entry")
    args = parser.parse_args()

    source = args.run / "last.safetensors"
    checkpoint = load_checkpoint(source)
    history = checkpoint.metadata["history"]
    epochs = checkpoint.metadata["train_config"]["epochs"]
    if len(history) != epochs:
        print(
            f"{source} has {len(history)} of {epochs} epochs: finish the run first (--resume)",
            file=sys.stderr,
        )
        return 2
    recorded = checkpoint.metadata.get("provenance") or {}
    given = {"command": args.command, "git_commit": args.commit}
    for key, value in given.items():
        if value and recorded.get(key) and recorded[key] != value:
            print(f"{source} records {key} {recorded[key]!r}, not {value!r}", file=sys.stderr)
            return 2
    provenance = {**recorded, **{k: v for k, v in given.items() if v and not recorded.get(k)}}
    if not provenance.get("command") or not provenance.get("git_commit"):
        print(f"{source} records no command or commit: pass --command and --commit", file=sys.stderr)
        return 2
    final = history[-1]
    summary = {
        "epochs": epochs,
        "val_top1": final["val_top1"],
        "val_top5": final["val_top5"],
        "best_val_top1": checkpoint.metadata["best_val_top1"],
        "released_from": "last.safetensors",
        "dataset": "CIFAR-10",
    }
    config = checkpoint.model.config
    name = f"cifar10_{config.name}_{config.width_mult}"
    destination = ROOT / "src" / "mobilenets" / "published" / f"{name}.safetensors"
    release_checkpoint(source, destination, {"provenance": provenance, "release": summary})
    destination.chmod(0o644)
    docs = ROOT / "docs" / "results" / name
    docs.mkdir(parents=True, exist_ok=True)
    for filename in ("metrics.csv", "curves.png"):
        shutil.copyfile(args.run / filename, docs / filename)
    digest = hashlib.sha256(destination.read_bytes()).hexdigest()
    index_path = destination.parent / "index.json"
    index = json.loads(index_path.read_text()) if index_path.is_file() else []
    # The file name is the model and width: a file of the same name is the one this replaces.
    fields = ("key", "file", "sha256")
    kept = [{k: entry[k] for k in fields} for entry in index if entry["file"] != destination.name]
    new = {"key": "cifar10", "file": destination.name, "sha256": digest}
    replaced = next((i for i, entry in enumerate(index) if entry["file"] == destination.name), len(kept))
    index = [new, *kept] if args.default else [*kept[:replaced], new, *kept[replaced:]]
    index_path.write_text(json.dumps(index, indent=2) + "\n")
    print(
        f"wrote {destination} ({destination.stat().st_size / 1e6:.2f} MB), validation top-1 "
        f"{100 * final['val_top1']:.2f}% after {epochs} epochs\nSHA-256 {digest}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
