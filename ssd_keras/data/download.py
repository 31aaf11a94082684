"""Pascal VOC download: resumable, checksum-verified, atomic, with a safe tar extraction.

::

    python -m ssd_keras download voc2007 voc2012 --dir data/
    # -> data/VOCdevkit/VOC2007 (trainval + test), data/VOCdevkit/VOC2012 (trainval)

* Each archive is fetched into ``<name>.part``; an existing part is continued
  with an HTTP ``Range`` request (a server that ignores it restarts the file).
* The finished part's MD5 (or SHA-256) must match before ``os.replace`` gives
  it its final name, so a final-named archive is always a verified one and is
  not fetched again.  A mismatch deletes the part and raises :class:`ChecksumError`.
* Extraction refuses members with absolute paths, ``..`` components, links
  pointing outside the target folder and device files (:class:`UnsafeArchiveError`
  names the member) before writing anything, and then extracts with tarfile's
  ``filter="data"`` as a second guard.  A marker file skips repeated extraction.
* ``--mirror URL`` replaces the official location; archive names are unchanged
  (``<mirror>/<archive name>``).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import sys
import re
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import PurePosixPath, PureWindowsPath
from typing import Iterable

OFFICIAL_BASE_URL = "http://host.robots.ox.ac.uk/pascal/VOC/"


@dataclasses.dataclass(frozen=True)
class Archive:
    """One official archive.

    Attributes:
        filename: archive name, the same on the official site and on mirrors.
        subdir: folder under :data:`OFFICIAL_BASE_URL` (mirrors are flat).
        md5: expected MD5 hex digest.
        size: expected bytes, used for progress when the server sends no length.
    """

    filename: str
    subdir: str
    md5: str
    size: int | None = None


ARCHIVES = {a.filename: a for a in (
    Archive("VOCtrainval_06-Nov-2007.tar", "voc2007", "c52e279531787c972589f7e41ab4ae64",
            460_032_000),
    Archive("VOCtest_06-Nov-2007.tar", "voc2007", "b6e924de25625d8de591ea690078ad9f",
            451_020_800),
    Archive("VOCtrainval_11-May-2012.tar", "voc2012", "6cd6e144f989b92b3379bac3b3de84fd",
            1_999_639_040),
)}

# dataset name -> archives; all extract into <dir>/VOCdevkit/VOC<year>
DATASETS = {
    "voc2007": ("VOCtrainval_06-Nov-2007.tar", "VOCtest_06-Nov-2007.tar"),
    "voc2012": ("VOCtrainval_11-May-2012.tar",),
}

CHUNK_SIZE = 1 << 20
PROGRESS_INTERVAL_S = 2.0


class ChecksumError(ValueError):
    """A downloaded file's checksum differs from the expected one."""


class UnsafeArchiveError(ValueError):
    """An archive member would be written (or link) outside the target folder."""


def archive_url(archive: Archive, mirror: str | None = None) -> str:
    """Official URL of ``archive``, or ``<mirror>/<filename>``."""
    if mirror:
        return mirror.rstrip("/") + "/" + archive.filename
    return f"{OFFICIAL_BASE_URL}{archive.subdir}/{archive.filename}"


def file_digest(path: str, algorithm: str = "md5", chunk_size: int = CHUNK_SIZE) -> str:
    """Hex digest of a file; ``algorithm`` is a :mod:`hashlib` name (``"md5"``, ``"sha256"``)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def file_md5(path: str, chunk_size: int = CHUNK_SIZE) -> str:
    return file_digest(path, "md5", chunk_size)


def _digest_mismatch(path: str, expected: dict) -> tuple | None:
    """The first ``(algorithm, expected, actual)`` that ``path`` fails, or None if all match."""
    for algorithm, want in expected.items():
        actual = file_digest(path, algorithm)
        if actual != want:
            return algorithm, want, actual
    return None


class _Progress:
    """Throttled ``name: x / y MB (p%)`` lines on stdout."""

    def __init__(self, name: str, total: int | None, quiet: bool,
                 interval: float = PROGRESS_INTERVAL_S):
        self.name, self.total, self.quiet, self.interval = name, total, quiet, interval
        self.last = 0.0

    def update(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if self.quiet or (not final and now - self.last < self.interval):
            return
        self.last = now
        text = f"{self.name}: {done / 1e6:.1f} MB"
        if self.total:
            text += f" / {self.total / 1e6:.1f} MB ({100.0 * done / self.total:.1f}%)"
        print(text, flush=True)


def _content_range_start(header: str | None) -> int | None:
    match = re.match(r"bytes\s+(\d+)-\d+/(\d+|\*)", header or "")
    return int(match.group(1)) if match else None


def _fetch(url: str, part: str, *, expected_size: int | None, quiet: bool,
           timeout: float) -> None:
    """Write ``url`` into ``part``, continuing an existing part when the server allows."""
    name = os.path.basename(part)
    offset = os.path.getsize(part) if os.path.exists(part) else 0
    headers = {"User-Agent": "ssd_keras-download"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(  # noqa: S310 - scheme checked by the caller
            urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            return  # part already complete (or bogus): the checksum decides
        raise OSError(f"{url}: HTTP {error.code} {error.reason}") from None
    with response:
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if response.status == 206:
            if _content_range_start(response.headers.get("Content-Range")) != offset:
                if not offset:
                    raise OSError(f"{url}: server sent a partial answer to a full request")
                # a different part than asked for: start over without Range
                response.close()
                os.remove(part)
                _fetch(url, part, expected_size=expected_size, quiet=quiet, timeout=timeout)
                return
            mode = "ab"
            if not quiet:
                print(f"{name}: resuming at {offset / 1e6:.1f} MB", flush=True)
        else:
            if offset and not quiet:
                print(f"{name}: server ignored the Range request; restarting", flush=True)
            offset, mode = 0, "wb"
        total = offset + length if length is not None else expected_size
        progress = _Progress(os.path.basename(url), total, quiet)
        done = offset
        with open(part, mode) as out:
            for block in iter(lambda: response.read(CHUNK_SIZE), b""):
                out.write(block)
                done += len(block)
                progress.update(done)
        progress.update(done, final=True)
    if length is not None and done != offset + length:
        raise OSError(f"{url}: connection closed after {done} of {offset + length} bytes; "
                      f"run again to resume {part}")


def download_file(url: str, dest: str, md5: str | None = None, *,
                  sha256: str | None = None, expected_size: int | None = None,
                  quiet: bool = False, timeout: float = 60.0) -> str:
    """Download ``url`` to ``dest`` via ``dest + ".part"``: resumable, verified, atomic.

    Args:
        url: ``http://`` or ``https://`` URL.
        dest: final path; when it exists and matches the given digests nothing is fetched.
        md5: expected MD5 hex digest; ``None`` skips that check.
        sha256: expected SHA-256 hex digest; ``None`` skips that check (with
            neither digest the file is not verified).
        expected_size: bytes, for progress when the server sends no length.
        quiet: no progress output.

    Returns:
        ``dest``.

    Raises:
        ChecksumError: the downloaded bytes' MD5 or SHA-256 differs (the part
            file is deleted); the message names the file, the algorithm, the
            expected and the actual digest.
        OSError: HTTP or connection failure (a part file is kept for resuming).
    """
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"{url}: only http and https downloads are supported")
    dest = os.fspath(dest)
    name = os.path.basename(dest)
    expected = {algorithm: value.lower()
                for algorithm, value in (("md5", md5), ("sha256", sha256)) if value is not None}
    if os.path.exists(dest):
        if _digest_mismatch(dest, expected) is None:
            if not quiet:
                print(f"{name}: already downloaded and verified", flush=True)
            return dest
        if not quiet:
            print(f"{name}: existing file fails its checksum; downloading again", flush=True)
        os.remove(dest)
    os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
    part = dest + ".part"
    _fetch(url, part, expected_size=expected_size, quiet=quiet, timeout=timeout)
    mismatch = _digest_mismatch(part, expected)
    if mismatch is not None:
        algorithm, want, actual = mismatch
        os.remove(part)
        raise ChecksumError(f"{name}: checksum mismatch: expected {algorithm} {want}, got "
                            f"{actual}; deleted {part}")
    os.replace(part, dest)
    return dest


# --------------------------------------------------------------------------- extraction

def _within(folder: str, path: str) -> bool:
    return os.path.commonpath([folder, path]) == folder


def _unsafe_reason(member: tarfile.TarInfo, target: str) -> str | None:
    """Why extracting ``member`` into the real path ``target`` is unsafe, or None."""
    name = member.name
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
        return "absolute path"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "'..' path component"
    path = os.path.join(target, name)
    if not _within(target, os.path.realpath(path)):
        return "path resolves outside the target folder"
    if member.issym() or member.islnk():
        link = member.linkname
        if link.startswith(("/", "\\")) or PureWindowsPath(link).drive:
            return f"link to absolute path {link!r}"
        # symlinks resolve from the member's folder, hard links from the archive root
        base = os.path.dirname(path) if member.issym() else target
        if not _within(target, os.path.realpath(os.path.join(base, link))):
            return f"link to {link!r} points outside the target folder"
    elif not (member.isfile() or member.isdir()):
        return "device or special file"
    return None


def safe_extract(archive_path: str, target_dir: str) -> None:
    """Extract a tar archive into ``target_dir``, refusing it whole if any member is unsafe.

    Raises:
        UnsafeArchiveError: naming the archive, the member and the reason;
            nothing is written in that case.
    """
    target = os.path.realpath(target_dir)
    os.makedirs(target, exist_ok=True)
    with tarfile.open(archive_path) as tar:
        members = tar.getmembers()
        for member in members:
            reason = _unsafe_reason(member, target)
            if reason:
                raise UnsafeArchiveError(
                    f"{archive_path}: refusing to extract member {member.name!r}: {reason}")
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: second, independent guard
            tar.extractall(target, members=members, filter="data")
        else:  # pragma: no cover - older Pythons; the checks above still apply
            tar.extractall(target, members=members)


def extraction_marker(archive_path: str, target_dir: str) -> str:
    return os.path.join(target_dir, f".{os.path.basename(archive_path)}.extracted")


def extract_once(archive_path: str, target_dir: str, quiet: bool = False) -> bool:
    """:func:`safe_extract` unless its marker file says it was done; True if it extracted."""
    marker = extraction_marker(archive_path, target_dir)
    name = os.path.basename(archive_path)
    if os.path.exists(marker):
        if not quiet:
            print(f"{name}: already extracted", flush=True)
        return False
    if not quiet:
        print(f"{name}: extracting into {target_dir}", flush=True)
    safe_extract(archive_path, target_dir)
    with open(marker, "w") as handle:
        handle.write(f"{name}\n")
    return True


# --------------------------------------------------------------------------- datasets

def download_voc(names: Iterable[str] = ("voc2007", "voc2012"), directory: str = "data", *,
                 mirror: str | None = None, checksums: dict | None = None,
                 extract: bool = True, quiet: bool = False, timeout: float = 60.0) -> str:
    """Download (and extract) VOC datasets into ``directory``.

    Args:
        names: keys of :data:`DATASETS` (``"voc2007"``: trainval + test,
            ``"voc2012"``: trainval).
        directory: where archives go and are extracted (``<directory>/VOCdevkit``).
        mirror: base URL replacing the official location (``<mirror>/<archive name>``).
        checksums: ``{archive filename: md5}`` overriding :data:`ARCHIVES`'.
        extract: extract after verifying.

    Returns:
        ``<directory>/VOCdevkit``.
    """
    names = list(names)
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        raise ValueError(f"unknown dataset(s) {unknown}; choose from {sorted(DATASETS)}")
    checksums = checksums or {}
    directory = os.fspath(directory)
    for name in names:
        for filename in DATASETS[name]:
            archive = ARCHIVES[filename]
            path = download_file(archive_url(archive, mirror), os.path.join(directory, filename),
                                 checksums.get(filename, archive.md5),
                                 expected_size=archive.size, quiet=quiet, timeout=timeout)
            if extract:
                extract_once(path, directory, quiet=quiet)
    return os.path.join(directory, "VOCdevkit")


def run_download(args: argparse.Namespace) -> int:
    """``download`` command."""
    try:
        devkit = download_voc(args.names, args.dir, mirror=args.mirror,
                              extract=not args.no_extract)
    except (OSError, ValueError) as error:
        print(f"download failed: {error}", file=sys.stderr, flush=True)
        return 1
    print(f"done: {devkit}", flush=True)
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``download`` command."""
    parser = subparsers.add_parser(
        "download", help="download and extract Pascal VOC (resumable, checksum-verified)",
        description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="+", choices=sorted(DATASETS), metavar="NAME",
                        help=f"dataset(s): {', '.join(sorted(DATASETS))}")
    parser.add_argument("--dir", default="data", help="target folder (default: data)")
    parser.add_argument("--mirror", metavar="URL",
                        help="base URL serving the official archive names")
    parser.add_argument("--no-extract", action="store_true", help="only download and verify")
    parser.set_defaults(func=run_download)
    return parser

