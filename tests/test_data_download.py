"""VOC download end to end against a local HTTP server (127.0.0.1) serving tiny archives."""
import argparse
import hashlib
import io
import os
import re
import tarfile

import pytest

from ssd_keras.data import download
from ssd_keras.data.download import (ChecksumError, UnsafeArchiveError, download_file,
                                     download_voc, safe_extract)

TRAINVAL07 = "VOCtrainval_06-Nov-2007.tar"
TEST07 = "VOCtest_06-Nov-2007.tar"


@pytest.fixture
def server(http_server):
    """The shared local server (conftest), with archives served under ``/mirror``."""
    http_server.url = f"{http_server.base_url}/mirror"
    return http_server


def _tar(members):
    """Uncompressed tar bytes from ``{name: bytes}``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _md5(data):
    return hashlib.md5(data).hexdigest()


def _voc_archives(server):
    archives = {
        TRAINVAL07: _tar({"VOCdevkit/VOC2007/ImageSets/Main/trainval.txt": b"000001\n",
                          "VOCdevkit/VOC2007/JPEGImages/000001.jpg": os.urandom(5000)}),
        TEST07: _tar({"VOCdevkit/VOC2007/ImageSets/Main/test.txt": b"000002\n"}),
    }
    server.files.update({f"mirror/{name}": data for name, data in archives.items()})
    return archives, {name: _md5(data) for name, data in archives.items()}


def test_official_urls_and_checksums():
    assert download.archive_url(download.ARCHIVES[TRAINVAL07]) == (
        "http://host.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtrainval_06-Nov-2007.tar")
    assert download.archive_url(download.ARCHIVES[TEST07], "http://m.example/x/") == (
        "http://m.example/x/VOCtest_06-Nov-2007.tar")
    assert download.ARCHIVES["VOCtrainval_11-May-2012.tar"].md5 == (
        "6cd6e144f989b92b3379bac3b3de84fd")
    assert download.DATASETS["voc2007"] == (TRAINVAL07, TEST07)


def test_download_verify_extract_and_skip(server, tmp_path, capsys):
    archives, checksums = _voc_archives(server)
    devkit = download_voc(["voc2007"], str(tmp_path), mirror=server.url, checksums=checksums)
    assert devkit == str(tmp_path / "VOCdevkit")
    assert (tmp_path / "VOCdevkit/VOC2007/ImageSets/Main/trainval.txt").read_bytes() == (
        b"000001\n")
    assert (tmp_path / "VOCdevkit/VOC2007/ImageSets/Main/test.txt").is_file()
    assert (tmp_path / TRAINVAL07).read_bytes() == archives[TRAINVAL07]
    assert not list(tmp_path.glob("*.part"))
    out = capsys.readouterr().out
    assert re.search(r"VOCtrainval_06-Nov-2007.tar: [\d.]+ MB / [\d.]+ MB \(100.0%\)", out)
    # second run: nothing fetched, nothing extracted again
    server.requests.clear()
    (tmp_path / "VOCdevkit/VOC2007/ImageSets/Main/test.txt").unlink()
    download_voc(["voc2007"], str(tmp_path), mirror=server.url, checksums=checksums)
    assert server.requests == []
    assert not (tmp_path / "VOCdevkit/VOC2007/ImageSets/Main/test.txt").exists()
    out = capsys.readouterr().out
    assert "already downloaded and verified" in out and "already extracted" in out


@pytest.mark.parametrize("honour_range", [True, False])
def test_resume_from_part_file(server, tmp_path, honour_range):
    data = os.urandom(300_000)
    server.files["mirror/a.tar"] = data
    server.honour_range = honour_range
    dest = tmp_path / "a.tar"
    (tmp_path / "a.tar.part").write_bytes(data[:123_456])
    download_file(f"{server.url}/a.tar", str(dest), _md5(data), quiet=True)
    assert server.requests == [("/mirror/a.tar", "bytes=123456-")]
    assert dest.read_bytes() == data
    assert not (tmp_path / "a.tar.part").exists()


def test_complete_part_file_is_verified_not_refetched(server, tmp_path):
    data = os.urandom(1000)
    server.files["mirror/a.tar"] = data
    (tmp_path / "a.tar.part").write_bytes(data)
    download_file(f"{server.url}/a.tar", str(tmp_path / "a.tar"), _md5(data), quiet=True)
    assert (tmp_path / "a.tar").read_bytes() == data


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    archives, checksums = _voc_archives(server)
    wrong = "0" * 32
    with pytest.raises(ChecksumError) as error:
        download_voc(["voc2007"], str(tmp_path), mirror=server.url,
                     checksums={**checksums, TRAINVAL07: wrong}, quiet=True)
    message = str(error.value)
    assert TRAINVAL07 in message and wrong in message and checksums[TRAINVAL07] in message
    assert sorted(os.listdir(tmp_path)) == []


def test_traversal_archive_refused_end_to_end(server, tmp_path):
    evil = _tar({"VOCdevkit/VOC2007/ok.txt": b"fine", "VOCdevkit/../../escaped.txt": b"x"})
    server.files[f"mirror/{TRAINVAL07}"] = evil
    target = tmp_path / "data"
    with pytest.raises(UnsafeArchiveError, match=r"'VOCdevkit/\.\./\.\./escaped\.txt'"):
        download_voc(["voc2007"], str(target), mirror=server.url,
                     checksums={TRAINVAL07: _md5(evil)}, quiet=True)
    assert sorted(os.listdir(tmp_path)) == ["data"]
    assert sorted(os.listdir(target)) == [TRAINVAL07]  # verified archive kept, nothing extracted
    parser = argparse.ArgumentParser()
    download.register(parser.add_subparsers())
    args = parser.parse_args(["download", "voc2007", "--dir", str(target), "--mirror", server.url])
    assert args.func(args) == 1


def _tar_with(info, data=b""):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.addfile(info, io.BytesIO(data) if data else None)
    return buffer.getvalue()


@pytest.mark.parametrize("kind, name, link, reason", [
    (tarfile.REGTYPE, "/tmp/abs.txt", "", "absolute path"),
    (tarfile.SYMTYPE, "VOCdevkit/link", "../../outside", "points outside"),
    (tarfile.SYMTYPE, "VOCdevkit/link", "/etc/passwd", "link to absolute path"),
    (tarfile.LNKTYPE, "VOCdevkit/hard", "../outside", "points outside"),
    (tarfile.CHRTYPE, "VOCdevkit/dev", "", "device or special file"),
])
def test_safe_extract_refuses(tmp_path, kind, name, link, reason):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    data = b"abc" if kind == tarfile.REGTYPE else b""
    info.size = len(data)
    archive = tmp_path / "evil.tar"
    archive.write_bytes(_tar_with(info, data))
    target = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match=reason) as error:
        safe_extract(str(archive), str(target))
    assert repr(name) in str(error.value) and "evil.tar" in str(error.value)
    assert os.listdir(target) == []


def test_safe_extract_allows_inner_links(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("d/file.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
        link = tarfile.TarInfo("d/link.txt")
        link.type, link.linkname = tarfile.SYMTYPE, "file.txt"
        tar.addfile(link)
    archive = tmp_path / "ok.tar"
    archive.write_bytes(buffer.getvalue())
    safe_extract(str(archive), str(tmp_path / "out"))
    assert (tmp_path / "out/d/link.txt").read_bytes() == b"hi"


def test_rejects_non_http_urls(tmp_path):
    with pytest.raises(ValueError, match="only http and https"):
        download_file("file:///etc/passwd", str(tmp_path / "x"))
