"""Downloading published weights into the cache, with the publishers' hashes checked.

Files are downloaded once into the cache folder (MOBILENETS_CACHE, default ~/.cache/mobilenets or
$XDG_CACHE_HOME/mobilenets) with a progress bar, written to a temporary file and renamed only
once complete and verified, so an interrupted download never leaves a file that looks valid.

Hashes: a file is checked against every hash its publisher states. Keras lists MD5s for its
MobileNetV3 files; torchvision and timm's GitHub releases put the first 8 hex digits of the
SHA-256 in the file name (what torch.hub checks). Where no hash is published (Keras MobileNet and
MobileNetV2, timm's Hugging Face files) the SHA-256 is printed at download and recorded in the
model's config, and the registry's sha256 is None: see docs/interop.md.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHUNK = 1 << 20


class WeightsUnavailable(FileNotFoundError):
    """The file is not in the cache and could not be downloaded; the message says where to put it."""


class HashMismatch(ValueError):
    """The file is not the one published: its hash differs from the publisher's."""


def cache_dir() -> Path:
    """Where downloads go: $MOBILENETS_CACHE, else $XDG_CACHE_HOME/mobilenets or ~/.cache/mobilenets."""
    if os.environ.get("MOBILENETS_CACHE"):
        return Path(os.environ["MOBILENETS_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mobilenets"


def url_filename(url: str) -> str:
    name = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name
    if not name:
        raise ValueError(f"cannot tell a file name from the URL {url!r}")
    return name


def url_cache_name(url: str) -> str:
    """The cache path of a URL outside the registry: its file name under a folder named by a hash of
    the whole URL, so two URLs ending in the same file name never share (or return) one file."""
    return f"url-{hashlib.sha256(url.encode()).hexdigest()[:16]}/{url_filename(url)}"


def is_url(text: str) -> bool:
    return urllib.parse.urlparse(text).scheme in ("http", "https", "file")


@dataclass
class _Digests:
    sha256: Any = field(default_factory=hashlib.sha256)
    md5: Any = field(default_factory=hashlib.md5)

    def update(self, chunk: bytes) -> None:
        self.sha256.update(chunk)
        self.md5.update(chunk)


def file_digests(path: Path) -> tuple[str, str]:
    """(sha256, md5) hex digests of a file."""
    digests = _Digests()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digests.update(chunk)
    return digests.sha256.hexdigest(), digests.md5.hexdigest()


def check_hashes(
    sha256: str, md5: str, expected_sha256: str | None, expected_md5: str | None, what: str, fix: str
) -> None:
    if expected_sha256 and not sha256.startswith(expected_sha256.lower()):
        raise HashMismatch(
            f"{what} has SHA-256 {sha256}, but the published one is {expected_sha256}"
            f"{'...' if len(expected_sha256) < 64 else ''}; {fix}"
        )
    if expected_md5 and md5 != expected_md5.lower():
        raise HashMismatch(f"{what} has MD5 {md5}, but the published one is {expected_md5}; {fix}")


def fetch(
    url: str,
    filename: str | None = None,
    sha256: str | None = None,
    md5: str | None = None,
    progress: bool = True,
) -> tuple[Path, str]:
    """The cached file for `url` (downloaded on first use) and its SHA-256, checked against the
    published hashes given. Raises WeightsUnavailable (offline, interrupted) or HashMismatch."""
    destination = cache_dir() / (filename or url_cache_name(url))
    if destination.is_file():
        digest, md5_digest = file_digests(destination)
        check_hashes(
            digest,
            md5_digest,
            sha256,
            md5,
            f"the cached {destination}",
            f"delete it to download {url} again, or replace it with that file",
        )
        return destination, digest
    digest = _download(url, destination, sha256, md5, progress)
    if not sha256 and not md5:
        print(
            f"downloaded {url}: SHA-256 {digest} (no published hash to check it against; "
            f"it is recorded in the model's config)",
            file=sys.stderr,
        )
    return destination, digest


def _download(url: str, destination: Path, sha256: str | None, md5: str | None, progress: bool) -> str:
    from tqdm import tqdm

    place = (
        f"download it yourself and place it at {destination} "
        f"(the folder is $MOBILENETS_CACHE, now {destination.parent})"
    )
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".part", dir=destination.parent)
    try:
        digests = _Digests()
        received = 0
        with os.fdopen(fd, "wb") as out:
            try:
                response = urllib.request.urlopen(
                    urllib.request.Request(url, headers={"User-Agent": "mobilenets"}), timeout=60
                )
            except (urllib.error.URLError, OSError, ValueError) as error:
                reason = getattr(error, "reason", error)
                raise WeightsUnavailable(f"cannot download {url} ({reason}); {place}") from None
            with response:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                # disable=None: tqdm draws only on a terminal
                with tqdm(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    desc=destination.name,
                    disable=None if progress else True,
                    file=sys.stderr,
                ) as bar:
                    try:
                        while chunk := response.read(CHUNK):
                            out.write(chunk)
                            digests.update(chunk)
                            received += len(chunk)
                            bar.update(len(chunk))
                    except (OSError, ValueError, EOFError) as error:  # connection reset, IncompleteRead, ...
                        raise WeightsUnavailable(
                            f"download of {url} failed after {received} bytes ({error!r}); {place}"
                        ) from None
            if total is not None and received != total:
                raise WeightsUnavailable(
                    f"download of {url} stopped after {received} of {total} bytes; {place}"
                )
            out.flush()
            os.fsync(out.fileno())
        digest = digests.sha256.hexdigest()
        check_hashes(
            digest,
            digests.md5.hexdigest(),
            sha256,
            md5,
            f"the file downloaded from {url}",
            f"it was not kept; if the publisher changed it, {place} and pass its path instead",
        )
        os.replace(temporary, destination)
        return digest
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
