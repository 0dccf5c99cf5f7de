"""`export --format web` and `serve`: the folder, its failure modes, and the page in a real browser.

The browser tests load the exported folder in headless Chromium from a local server and compare the
page's answer (the `?image=URL` → `#result` contract) with `mobilenets predict` on the same ONNX file.
They need Chromium (`make browser`) and ONNX Runtime Web (`make web-runtime`); `make test` installs
both, and a machine without them skips with the reason.
"""

import json
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mobilenets.cli import main
from mobilenets.deploy.web import (
    DEFAULT_WEB_RUNTIME,
    RUNTIME_FILES,
    WebRuntimeMissing,
    find_web_runtime,
    make_server,
)
from mobilenets.training.evaluate import predict

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = (
    REPO / "src" / "mobilenets" / "published" / "cifar10_mobilenet_v1_0.25.safetensors"
)  # 1 MB, trained
RUNTIME = REPO / DEFAULT_WEB_RUNTIME

pytest.importorskip("onnxruntime")


def web_runtime() -> Path:
    try:
        return find_web_runtime(RUNTIME)
    except WebRuntimeMissing as error:
        pytest.skip(f"ONNX Runtime Web not installed: {error}")


def export(tmp_path, *extra, checkpoint=CHECKPOINT, name="site") -> tuple[int, Path]:
    target = tmp_path / name
    code = main(["export", str(checkpoint), "--format", "web", "-o", str(target), *extra])
    return code, target


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    runtime = web_runtime()
    tmp_path = tmp_path_factory.mktemp("web")
    code, target = export(tmp_path, "--web-runtime", str(runtime))
    assert code == 0
    return target


def test_the_folder_holds_page_model_sidecar_and_both_runtime_builds(site, capsys):
    names = {p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file()}
    assert {"index.html", "app.js", "model.onnx", "model.onnx.json"} <= names
    assert {f"ort/{name}" for files in RUNTIME_FILES.values() for name in files} <= names
    page = (site / "index.html").read_text()
    assert 'data-model="model.onnx"' in page and "__" not in page
    app = (site / "app.js").read_text()
    assert "const SMALL_IMAGE_MAX = 64;" in app  # predict's rule, filled in from its one home
    sidecar = json.loads((site / "model.onnx.json").read_text())
    assert sidecar["input"] == [3, 32, 32] and len(sidecar["class_names"]) == 10
    assert not [p for p in site.parent.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_an_existing_folder_is_kept_unless_force_and_then_replaced_whole(tmp_path, capsys):
    runtime = str(web_runtime())
    target = tmp_path / "site"
    target.mkdir()
    (target / "mine.txt").write_text("keep me")
    code, _ = export(tmp_path, "--web-runtime", runtime)
    assert code == 2 and (target / "mine.txt").read_text() == "keep me"
    assert "pass --force" in capsys.readouterr().err
    code, _ = export(tmp_path, "--web-runtime", runtime, "--force")
    assert code == 0 and not (target / "mine.txt").exists() and (target / "index.html").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]  # neither staging nor the old folder


def test_no_runtime_is_one_line_with_the_fix_and_no_folder(tmp_path, capsys):
    code, target = export(tmp_path, "--web-runtime", str(tmp_path / "nowhere"))
    err = capsys.readouterr().err
    assert code == 2 and "make web-runtime" in err and len(err.strip().splitlines()) == 1
    assert not target.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--precision", "f16"], "float32 or int8"),
        (["--int8"], "--calibration"),
    ],
)
def test_web_export_refuses_what_it_cannot_write(tmp_path, capsys, flags, message):
    code, target = export(tmp_path, "--web-runtime", str(web_runtime()), *flags)
    assert code == 2 and message in capsys.readouterr().err and not target.exists()


def test_web_runtime_applies_to_the_web_format_only(tmp_path, capsys):
    code = main(["export", str(CHECKPOINT), "-o", str(tmp_path / "m.onnx"), "--web-runtime", "x"])
    assert code == 2 and "--format web only" in capsys.readouterr().err


def test_int8_folder_holds_the_int8_model_only(tmp_path):
    runtime = str(web_runtime())
    images = tmp_path / "calibration"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(24):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(images / f"{i}.png")
    code, target = export(
        tmp_path,
        "--web-runtime",
        runtime,
        "--int8",
        "--calibration",
        str(images),
        "--calibration-images",
        "16",
    )
    assert code == 0
    assert 'data-model="model.int8.onnx"' in (target / "index.html").read_text()
    assert (target / "model.int8.onnx.json").is_file() and not (target / "model.onnx").exists()


# --------------------------------------------------------------------------------------------
# serve
# --------------------------------------------------------------------------------------------
def test_serve_refuses_a_folder_without_a_page(tmp_path, capsys):
    assert main(["serve", str(tmp_path)]) == 2
    assert "no index.html" in capsys.readouterr().err
    assert main(["serve", str(tmp_path), "--port", "70000"]) == 2


def test_serve_runs_until_ctrl_c_and_then_exits_cleanly(site):
    import re
    import signal
    import subprocess
    import sys

    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler)"
            "; from mobilenets.cli import main; sys.exit(main(sys.argv[1:]))",
            "serve",
            str(site),
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        url = re.search(r"http://\S+/", line).group(0)
        with urllib.request.urlopen(url + "index.html") as response:
            assert b'data-model="model.onnx"' in response.read()
        process.send_signal(signal.SIGINT)
        assert process.wait(20) == 0
    finally:
        process.kill()


@pytest.fixture
def served(site):
    server = make_server(site, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_server_sends_wasm_types_and_cross_origin_isolation(served):
    with urllib.request.urlopen(f"{served}/ort/ort-wasm-simd-threaded.wasm") as response:
        assert response.headers["Content-Type"] == "application/wasm"
        assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
        assert response.headers["Cross-Origin-Embedder-Policy"] == "require-corp"


# --------------------------------------------------------------------------------------------
# The page in a real browser
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    from headless import HeadlessChromium, chromium_path

    pytest.importorskip("websocket", reason="websocket-client drives the browser")
    if chromium_path() is None:
        pytest.skip("no Chromium on PATH: `make browser` installs it (Debian package, needs root)")
    with HeadlessChromium() as chromium:
        yield chromium


def pictures_for(site) -> dict[str, dict]:
    """Three PNGs at the model's 32×32 input in the served folder, and predict's answer for each."""
    rng = np.random.default_rng(1)
    pictures = {  # at the model's 32×32 input: the same pixels reach both, so the same answer is owed
        "noise.png": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
        "smooth.png": np.stack(
            [*np.meshgrid(np.linspace(0, 255, 32), np.linspace(255, 0, 32)), np.full((32, 32), 90.0)], -1
        ).astype(np.uint8),
        "blocks.png": np.kron(rng.integers(0, 256, (4, 4, 3)), np.ones((8, 8, 1))).astype(np.uint8),
    }
    for name, pixels in pictures.items():
        Image.fromarray(pixels).save(site / name)
    return dict(
        zip(
            pictures,
            predict(site / "model.onnx", [str(site / name) for name in pictures], top_k=10),
            strict=True,
        )
    )


def assert_answers_as_predict_does(browser, served, site, backend):
    for name, want in pictures_for(site).items():
        got = browser.result_of(f"{served}/index.html?image={name}")
        assert "error" not in got, got
        assert got["backend"] == backend and got["ms"] > 0
        assert len(got["top"]) == 5
        want_probs = dict(want["top"])
        assert got["top"][0]["class"] == want["top"][0][0]
        for entry in got["top"]:
            assert abs(entry["prob"] - want_probs[entry["class"]]) < 1e-3, (name, entry)


def test_the_page_answers_as_predict_does(site, served, browser):
    assert_answers_as_predict_does(browser, served, site, "wasm")


def test_the_webgpu_path_answers_as_predict_does(site, served):
    """The WebGPU build of the runtime, on SwiftShader's software adapter (no GPU needed)."""
    from headless import HeadlessChromium, chromium_path

    if chromium_path() is None:
        pytest.skip("no Chromium on PATH: `make browser` installs it (Debian package, needs root)")
    with HeadlessChromium(webgpu=True) as chromium:
        chromium.call("Page.navigate", url=f"{served}/index.html")
        chromium.evaluate(
            "window.adapter = 'pending'; navigator.gpu ? navigator.gpu.requestAdapter().then("
            "a => window.adapter = a ? 'yes' : 'no', () => window.adapter = 'no') : "
            "window.adapter = 'no'"
        )
        deadline = time.monotonic() + 30
        while chromium.evaluate("window.adapter") == "pending" and time.monotonic() < deadline:
            time.sleep(0.2)
        if chromium.evaluate("window.adapter") != "yes":
            pytest.skip("this Chromium offers no WebGPU adapter, even SwiftShader's")
        assert_answers_as_predict_does(chromium, served, site, "webgpu")


def test_the_page_reports_a_missing_image_as_an_error(site, served, browser):
    got = browser.result_of(f"{served}/index.html?image=missing.png")
    assert "error" in got
