"""The web export of the shipped CIFAR-10 model, measured and photographed for docs/deployment.md.

    python scripts/web_screenshot.py --data ../shared/data/cifar10/train --out docs/results/web

Exports the shipped `cifar10` weights (mobilenet_v1 width 1.0) with `mobilenets export --format web`,
float32 and int8 (calibrated on --data), serves each folder on 127.0.0.1, opens it in headless
Chromium (tests/headless.py) with `?image=` set to one of the model's own validation images (never
trained on), and writes OUT/page.png (the float32 page), OUT/web.json (each folder's size by part,
the page's answer and `mobilenets predict`'s on the same file). Needs `make web-runtime` and
Chromium (`make browser`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from headless import HeadlessChromium  # noqa: E402
from mobilenets.checkpoint import read_header  # noqa: E402
from mobilenets.cli import main as cli  # noqa: E402
from mobilenets.deploy.web import RUNTIME_FILES, make_server  # noqa: E402
from mobilenets.training.evaluate import predict  # noqa: E402

WEIGHTS = ROOT / "src" / "mobilenets" / "published" / "cifar10_mobilenet_v1_1.0.safetensors"


def folder_sizes(site: Path, model: str) -> dict[str, float]:
    ort = site / "ort"
    sizes = {
        build: sum((ort / n).stat().st_size for n in files) / 1e6 for build, files in RUNTIME_FILES.items()
    }
    page = sum((site / n).stat().st_size for n in ("index.html", "app.js")) / 1e6
    model_mb = sum((site / n).stat().st_size for n in (model, model + ".json")) / 1e6
    return {
        "model_mb": round(model_mb, 2),
        "page_mb": round(page, 3),
        "runtime_wasm_mb": round(sizes["wasm"], 1),
        "runtime_webgpu_mb": round(sizes["webgpu"], 1),
        "download_wasm_mb": round(model_mb + page + sizes["wasm"], 1),
        "download_webgpu_mb": round(model_mb + page + sizes["webgpu"], 1),
        "folder_mb": round(sum(p.stat().st_size for p in site.rglob("*") if p.is_file()) / 1e6, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, required=True, help="the CIFAR-10 training folder (class folders)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "web")
    parser.add_argument("--image", help="validation file to show (default: the first of class 'ship')")
    args = parser.parse_args()
    split = read_header(WEIGHTS)["split"]
    image = args.image or next(name for name in split["val_files"] if name.startswith("ship/"))
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"weights": WEIGHTS.name, "image": image, "folders": {}}
    work = Path(tempfile.mkdtemp(prefix="mobilenets-web-"))
    try:
        with HeadlessChromium() as browser:
            browser.viewport(720, 470)
            for precision, flags, model in (
                ("float32", [], "model.onnx"),
                (
                    "int8",
                    ["--int8", "--calibration", str(args.data), "--eval-images", "1000"],
                    "model.int8.onnx",
                ),
            ):
                site = work / precision
                if cli(["export", str(WEIGHTS), "--format", "web", "-o", str(site), *flags]) != 0:
                    return 1
                shutil.copyfile(args.data / image, site / "picture.jpg")
                server = make_server(site, port=0)
                threading.Thread(target=server.serve_forever, daemon=True).start()
                try:
                    url = f"http://127.0.0.1:{server.server_address[1]}/index.html?image=picture.jpg"
                    page = browser.result_of(url)
                    if precision == "float32":
                        browser.screenshot(args.out / "page.png")
                finally:
                    server.shutdown()
                    server.server_close()
                expected = predict(site / model, [str(site / "picture.jpg")], top_k=5)[0]["top"]
                report["folders"][precision] = {
                    **folder_sizes(site, model),
                    "page": page,
                    "predict": [{"class": c, "prob": p} for c, p in expected],
                }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (args.out / "web.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
