"""Published weights: registry, download cache (file:// and a local HTTP server on 127.0.0.1),
hash checks, create_model(weights=...), the convert/predict command functions. No network."""

import argparse
import functools
import http.server
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mobilenets import create_model
from mobilenets.checkpoint import load_checkpoint, save_checkpoint
from mobilenets.cli.pretrained import (
    configure_convert_parser,
    configure_predict_weights,
    run_convert,
    run_predict_weights,
)
from mobilenets.pretrained import (
    HashMismatch,
    WeightsUnavailable,
    fetch,
    find_weights,
    imagenet_class_names,
    list_weights,
    predict_imagenet,
    registered,
)
from mobilenets.pretrained.download import file_digests, url_cache_name
from mobilenets.pretrained.statedict import read_state_dict

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """Every test downloads into its own empty cache."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("MOBILENETS_CACHE", str(folder))
    return folder


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A generated checkpoint to download: a small MobileNetV3-Small in our own format."""
    folder = tmp_path_factory.mktemp("served")
    model = create_model("mobilenet_v3_small", width_mult=0.5, num_classes=10).eval()
    path = save_checkpoint(
        folder / "small.safetensors",
        model,
        class_names=[f"c{i}" for i in range(10)],
        preprocessing={"size": 64, "mean": [0.5] * 3, "std": [0.5] * 3},
    )
    return path, model


class Handler(http.server.SimpleHTTPRequestHandler):
    requests = 0

    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):
        type(self).requests += 1
        if self.path.startswith("/truncated/"):  # promise the whole file, send half, hang up
            data = (Path(self.directory) / self.path.split("/")[-1]).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def server(served):
    folder = served[0].parent
    Handler.requests = 0
    handler = functools.partial(Handler, directory=folder)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def same_outputs(a, b) -> bool:
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.allclose(a.eval()(x), b.eval()(x), atol=1e-6)


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------
def test_registry_lists_every_published_file():
    v1 = list_weights("mobilenet_v1", "keras-imagenet")
    assert {(e.width_mult, e.resolution, e.include_top) for e in v1} == {
        (a, r, t) for a in (0.25, 0.5, 0.75, 1.0) for r in (128, 160, 192, 224) for t in (True, False)
    }
    assert len(list_weights("mobilenet_v2", "keras-imagenet")) == 6 * 5 * 2
    v3 = [e for e in registered() if e.source == "keras" and e.model.startswith("mobilenet_v3")]
    assert len(v3) == 12 and all(e.md5 and len(e.md5) == 32 for e in v3)
    for entry in list_weights(key="torchvision-imagenet-v1") + list_weights(key="torchvision-imagenet-v2"):
        assert len(entry.sha256) == 8 and entry.sha256 in entry.url
    identities = [
        (e.key, e.model, e.width_mult, e.resolution, e.minimalistic, e.include_top) for e in registered()
    ]
    assert len(identities) == len(set(identities))
    assert len({e.cache_name for e in registered()}) == len(registered())


def test_find_weights_picks_the_file_for_the_options():
    entry = find_weights("mobilenet_v1", "keras-imagenet", 0.5, 160)
    assert entry.url.endswith("/mobilenet/mobilenet_5_0_160_tf.h5")
    assert find_weights("mobilenet_v1", "keras-imagenet", 0.5, 160, include_top=False).url.endswith(
        "_no_top.h5"
    )
    assert find_weights("mobilenet_v3_small", "keras-imagenet", 1.0, minimalistic=True).url.endswith(
        "weights_mobilenet_v3_small_minimalistic_224_1.0_float.h5"
    )
    assert find_weights("mobilenet_v3_large", "torchvision-imagenet-v2").url.endswith("5c1a4163.pth")
    with pytest.raises(ValueError, match=r"width_mult 0.25, 0.5, 0.75, 1 × resolution 128, 160, 192, 224"):
        find_weights("mobilenet_v1", "keras-imagenet", 0.3)
    with pytest.raises(ValueError, match="unknown weights 'imagenet'"):
        find_weights("mobilenet_v1", "imagenet")
    with pytest.raises(ValueError, match="no torchvision-imagenet-v1 weights for mobilenet_v1"):
        find_weights("mobilenet_v1", "torchvision-imagenet-v1")


# --------------------------------------------------------------------------------------------
# Download and cache
# --------------------------------------------------------------------------------------------
def cached_files(cache):
    return sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*") if p.is_file())


def test_file_url_download_cache_hit_and_printed_hash(served, cache, capsys):
    path, model = served
    url = path.as_uri()
    loaded = create_model("mobilenet_v3_small", weights=url)
    assert (cache / url_cache_name(url)).is_file() and same_outputs(loaded, model)
    digest = file_digests(path)[0]
    assert digest in capsys.readouterr().err  # no published hash: the computed one is shown
    assert loaded.config.extra["weights"]["sha256"] == digest
    assert fetch(url, sha256=digest)[0] == cache / url_cache_name(url)  # cache hit, verified


def test_http_download_once_then_from_cache(served, server, cache):
    url = f"{server}/small.safetensors"
    first, digest = fetch(url, sha256=file_digests(served[0])[0], progress=False)
    second, _ = fetch(url, progress=False)
    assert first == second and Handler.requests == 1
    assert cached_files(cache) == [url_cache_name(url)]


def test_hash_mismatch_keeps_nothing(served, server, cache):
    with pytest.raises(HashMismatch, match="SHA-256 .* published one is 0123abcd"):
        fetch(f"{server}/small.safetensors", sha256="0123abcd", progress=False)
    with pytest.raises(HashMismatch, match="MD5"):
        fetch(f"{server}/small.safetensors", md5="0" * 32, progress=False)
    assert not cache.exists() or cached_files(cache) == []


def test_corrupt_cached_file_is_reported_with_its_path(served, cache):
    target = cache / url_cache_name(served[0].as_uri())
    target.parent.mkdir(parents=True)
    target.write_bytes(b"damaged")
    with pytest.raises(HashMismatch, match=f"cached {target}.*delete it"):
        fetch(served[0].as_uri(), sha256=file_digests(served[0])[0])


def test_interrupted_download_leaves_no_file(server, cache):
    with pytest.raises(WeightsUnavailable, match=r"(stopped after|failed after) \d+ .*place it at"):
        fetch(f"{server}/truncated/small.safetensors", progress=False)
    assert cached_files(cache) == []  # neither the file nor a partial one


def test_offline_says_which_file_to_place_where(server, cache):
    with pytest.raises(
        WeightsUnavailable, match=f"place it at {cache / url_cache_name(f'{server}/missing.h5')}"
    ):
        fetch(f"{server}/missing.h5", progress=False)  # 404
    with pytest.raises(WeightsUnavailable, match="cannot download"):
        fetch("http://127.0.0.1:9/mobilenet_1_0_224_tf.h5", progress=False)  # nothing listens there


# --------------------------------------------------------------------------------------------
# create_model(weights=...) with a published key, offline: the file is placed in the cache
# --------------------------------------------------------------------------------------------
def test_published_key_from_the_cache(keras_v1_file, cache):
    cache.mkdir()
    (cache / "mobilenet_2_5_128_tf.h5").write_bytes(keras_v1_file.read_bytes())
    model = create_model("mobilenet_v1", width_mult=0.25, resolution=128, weights="keras-imagenet")
    assert (
        model.config.padding == "keras" and model.config.bn_eps == 1e-3 and model.training
    )  # as every create_model
    assert model.config.extra["weights"]["weights"] == "keras-imagenet"
    assert not model.config.extra["weights"]["hash_checked"]  # Keras publishes no hash for V1
    head = create_model(
        "mobilenet_v1", width_mult=0.25, resolution=128, weights="keras-imagenet", num_classes=7
    )
    assert head.config.num_classes == 7 and torch.equal(
        head.features[3].dw.conv.weight, model.features[3].dw.conv.weight
    )
    with pytest.raises(
        ValueError, match="padding='torch' does not fit .* padding='keras'; leave padding unset"
    ):
        create_model(
            "mobilenet_v1", width_mult=0.25, resolution=128, weights="keras-imagenet", padding="torch"
        )


def test_published_file_with_the_wrong_content_is_refused(keras_v1_file, cache):
    cache.mkdir()
    (cache / "weights_mobilenet_v3_small_224_1.0_float.h5").write_bytes(keras_v1_file.read_bytes())
    with pytest.raises(HashMismatch, match="MD5 .* published one is 8768d4c2e7dee89b9d02b2d03d65d862"):
        create_model("mobilenet_v3_small", weights="keras-imagenet")


def test_weights_path_of_another_model_is_refused(keras_v1_file):
    with pytest.raises(ValueError, match="no layer 'Conv1'"):
        create_model("mobilenet_v2", weights=str(keras_v1_file))
    with pytest.raises(FileNotFoundError, match="no file 'nowhere.h5'"):
        create_model("mobilenet_v2", weights="nowhere.h5")


def test_pickles_are_never_unpickled(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"state_dict": {"w": torch.zeros(1)}, "evil": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="weights_only=True refuses"):
        read_state_dict(tmp_path / "evil.pth", "timm")
    assert not marker.exists()
    torch.save({"state_dict": {"module.w": torch.zeros(1)}, "epoch": 3}, tmp_path / "ok.pth")
    assert list(read_state_dict(tmp_path / "ok.pth", "timm")[0]) == ["w"]


# --------------------------------------------------------------------------------------------
# Class names, prediction and the command functions
# --------------------------------------------------------------------------------------------
def test_imagenet_class_names():
    names = imagenet_class_names()
    assert (
        len(names) == 1000
        and names[0] == "tench"
        and names[1] == "goldfish"
        and names[999] == "toilet tissue"
    )
    assert names[282] == "tiger cat" and names[207] == "golden retriever"


def test_convert_and_predict_commands(keras_v1_file, tmp_path):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    configure_convert_parser(sub)
    args = parser.parse_args(
        ["convert", "--from", "keras", str(keras_v1_file), "-o", str(tmp_path / "v1.safetensors")]
    )
    assert "mobilenet_v1 (width_mult=0.25" in args.run(args) and args.run is run_convert
    checkpoint = load_checkpoint(tmp_path / "v1.safetensors")
    assert checkpoint.class_names == imagenet_class_names()
    assert checkpoint.preprocessing["mean"] == [0.5, 0.5, 0.5] and checkpoint.preprocessing["size"] == 128
    assert checkpoint.model.config.padding == "keras"

    image = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(image)
    [result] = predict_imagenet(checkpoint.model, [image], top_k=5)
    probabilities = [p for _, p in result["top"]]
    assert len(result["top"]) == 5 and probabilities == sorted(probabilities, reverse=True)
    assert all(name in imagenet_class_names() for name, _ in result["top"])

    predict = argparse.ArgumentParser()
    predict.add_argument("--top-k", type=int, default=5)
    configure_predict_weights(predict)
    args = predict.parse_args(["--weights", str(tmp_path / "v1.safetensors"), "--top-k", "3"])
    lines = run_predict_weights(args, [str(image)]).splitlines()
    assert lines[0] == str(image) and len(lines) == 4 and lines[1].strip().endswith(result["top"][0][0])


def test_convert_command_errors(keras_v1_file, tmp_path):
    parser = argparse.ArgumentParser()
    configure_convert_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["convert", "--from", "keras", str(tmp_path / "none.h5"), "-o", str(tmp_path / "o")]
    )
    with pytest.raises(FileNotFoundError, match="none.h5"):
        run_convert(args)
    args = parser.parse_args(
        [
            "convert",
            "--from",
            "keras",
            "--model",
            "mobilenet_v2",
            str(keras_v1_file),
            "-o",
            str(tmp_path / "o"),
        ]
    )
    with pytest.raises(ValueError, match="no layer 'Conv1' for features.0.conv of mobilenet_v2"):
        run_convert(args)
