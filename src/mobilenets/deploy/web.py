"""The web export: a static folder that runs an exported ONNX model in the browser, and a server for it.

`mobilenets export MODEL --format web -o DIR` writes

    DIR/index.html, app.js          the page (plain HTML and JavaScript, no build step)
    DIR/model.onnx (+ .json)        the model and its sidecar, exactly as `--format onnx` writes them
                                    (model.int8.onnx with --int8); the page reads preprocessing,
                                    class names and input size from the sidecar, never a second copy
    DIR/ort/                        ONNX Runtime Web: the WebAssembly build, and the WebGPU build for
                                    browsers that have WebGPU (each page load fetches one of the two)

so the folder runs from any static host with no network. The runtime's files are copied from an
`onnxruntime-web` npm package (`make web-runtime` installs the tested version into .web-runtime/);
nothing is downloaded here. The page's test contract: `index.html?image=URL` classifies that image
on load and writes {"top": [{"class", "prob"}...], "backend", "ms"} as JSON into `#result`.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
from functools import partial
from pathlib import Path
from typing import Any

from ..data.images import SMALL_IMAGE_MAX

# The onnxruntime-web release the page was written and tested against (`make web-runtime`).
WEB_RUNTIME_VERSION = "1.31.1"
WEB_RUNTIME_ENV = "MOBILENETS_WEB_RUNTIME"
DEFAULT_WEB_RUNTIME = Path(".web-runtime")  # where `make web-runtime` installs it, from the repository root
# Each build: the loader script and the WebAssembly module it fetches (ort.env.wasm.wasmPaths = "ort/").
RUNTIME_FILES = {
    "wasm": ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"),
    "webgpu": (
        "ort.webgpu.min.js",
        "ort-wasm-simd-threaded.asyncify.mjs",
        "ort-wasm-simd-threaded.asyncify.wasm",
    ),
}
PAGE_FILES = ("index.html", "app.js")
PAGE_SOURCE = Path(__file__).with_name("web_page")
# Filled in when the page is written: the model file, and predict's small-image rule (one place).
PLACEHOLDERS = {"model": "__MODEL_FILE__", "small_image_max": "__SMALL_IMAGE_MAX__"}
MIME_TYPES = {
    ".wasm": "application/wasm",
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".json": "application/json",
    ".onnx": "application/octet-stream",
}


class WebRuntimeMissing(FileNotFoundError):
    """No onnxruntime-web files where the exporter looked; the message says how to get them."""


def find_web_runtime(folder: str | os.PathLike | None = None) -> Path:
    """The `dist` folder of an onnxruntime-web package: `folder` (--web-runtime), else
    $MOBILENETS_WEB_RUNTIME, else ./.web-runtime. Each may name the dist folder itself, the package
    folder, or a folder that npm installed it into."""
    given = folder if folder is not None else os.environ.get(WEB_RUNTIME_ENV)
    root = Path(given) if given else DEFAULT_WEB_RUNTIME
    origin = "--web-runtime" if folder is not None else WEB_RUNTIME_ENV if given else "the default"
    for candidate in (root, root / "dist", root / "node_modules" / "onnxruntime-web" / "dist"):
        if all((candidate / name).is_file() for files in RUNTIME_FILES.values() for name in files):
            return candidate
    get = (
        f"run `make web-runtime` in the repository (npm install onnxruntime-web@{WEB_RUNTIME_VERSION} into "
        f"{DEFAULT_WEB_RUNTIME}/), or pass --web-runtime DIR naming an installed onnxruntime-web"
    )
    if not root.exists():
        raise WebRuntimeMissing(f"no onnxruntime-web at {root} ({origin}): {get}")
    missing = next(
        name
        for files in RUNTIME_FILES.values()
        for name in files
        if not any(
            (c / name).is_file()
            for c in (root, root / "dist", root / "node_modules" / "onnxruntime-web" / "dist")
        )
    )
    raise WebRuntimeMissing(
        f"{root} ({origin}) holds no complete onnxruntime-web ({missing} is missing): {get}"
    )


def runtime_version(dist: Path) -> str | None:
    """The version of the onnxruntime-web package whose dist folder this is, when it says."""
    package = dist.parent / "package.json"
    try:
        return json.loads(package.read_text())["version"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_web_target(target: Path, force: bool) -> None:
    """A web export writes a folder: an existing non-empty one is replaced only with --force."""
    if target.exists() and not target.is_dir():
        raise ValueError(f"{target} is a file, not a folder: --format web writes a folder; choose another -o")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise ValueError(
            f"{target} exists and is not empty: pass --force to replace it, or choose another -o"
        )


def assemble(staging: Path, model_file: Path, dist: Path) -> dict[str, int]:
    """Complete the folder `staging`, which already holds `model_file` and its sidecar: the page
    (told which model file to load) and the runtime's files. Returns the bytes of each part."""
    for name in PAGE_FILES:
        text = (PAGE_SOURCE / name).read_text(encoding="utf-8")
        text = text.replace(PLACEHOLDERS["model"], model_file.name)
        text = text.replace(PLACEHOLDERS["small_image_max"], str(SMALL_IMAGE_MAX))
        (staging / name).write_text(text, encoding="utf-8")
    ort = staging / "ort"
    ort.mkdir()
    sizes = {}
    for build, files in RUNTIME_FILES.items():
        for name in files:
            shutil.copyfile(dist / name, ort / name)
        sizes[f"runtime_{build}"] = sum((ort / name).stat().st_size for name in files)
    sizes["model"] = (
        model_file.stat().st_size + model_file.with_name(model_file.name + ".json").stat().st_size
    )
    sizes["page"] = sum((staging / name).stat().st_size for name in PAGE_FILES)
    return sizes


class _Server(http.server.ThreadingHTTPServer):
    verbose = False  # whether to log each request


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **MIME_TYPES}
    server: _Server  # make_server's

    def end_headers(self) -> None:
        # Cross-origin isolation lets ONNX Runtime Web use several threads (SharedArrayBuffer).
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        if self.server.verbose:
            super().log_message(format, *args)


def make_server(
    folder: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000, verbose: bool = False
) -> http.server.ThreadingHTTPServer:
    """An HTTP server for an exported web folder (call serve_forever); port 0 picks a free one."""
    root = Path(folder)
    if not (root / "index.html").is_file():
        raise FileNotFoundError(
            f"{root} holds no index.html: serve the folder that `mobilenets export ... "
            f"--format web -o DIR` wrote"
        )
    server = _Server((host, port), partial(_Handler, directory=str(root)))
    server.verbose = verbose
    return server
