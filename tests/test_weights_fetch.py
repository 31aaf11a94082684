"""Weights manifest: sha256-checked fetch with caching, refusal of bad or unverified files,
registration, CLI -- against a local HTTP server (127.0.0.1) serving a tiny model's weights."""
import argparse
import hashlib
import json

import h5py
import keras
import numpy as np
import pytest

from ssd_keras import presets, weights
from ssd_keras.weights import cli
from ssd_keras.data.download import ChecksumError
from ssd_keras import build_model
from tests.tiny_models import tiny_config

PRESET = "tiny_weights_test"


def _tiny_config():
    return tiny_config(num_classes=2, name=PRESET, weight_decay=0.0)


presets.register(PRESET, _tiny_config)


@pytest.fixture
def server(http_server):
    """The shared local server (conftest); ``paths()`` lists the requested paths."""
    http_server.url = http_server.base_url
    http_server.paths = lambda: [path for path, _ in http_server.requests]
    return http_server


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model, its weights in three formats and its predictions on fixed images."""
    folder = tmp_path_factory.mktemp("tiny")
    model = build_model(PRESET)
    rng = np.random.default_rng(0)
    # non-default weights, so a load that silently did nothing cannot pass
    model.set_weights([rng.normal(0, 0.3, w.shape).astype("float32") for w in model.get_weights()])
    images = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    expected = {k: np.asarray(v) for k, v in model(images, training=False).items()}
    files = {"weights.h5": folder / "tiny.weights.h5", "keras": folder / "tiny.keras",
             "legacy_h5": folder / "tiny_legacy.h5"}
    model.save_weights(files["weights.h5"])
    model.save(files["keras"])
    with h5py.File(files["legacy_h5"], "w") as h5:  # Keras-2 layout: one group per layer
        names = [layer.name for layer in model.layers if layer.weights]
        h5.attrs["layer_names"] = [n.encode() for n in names]
        for layer in model.layers:
            if layer.weights:
                group = h5.create_group(layer.name)
                wnames = [f"{layer.name}/{w.name}:0" for w in layer.weights]
                group.attrs["weight_names"] = [n.encode() for n in wnames]
                for wname, value in zip(wnames, layer.get_weights()):
                    group[wname] = value
    return {"images": images, "expected": expected,
            "data": {fmt: path.read_bytes() for fmt, path in files.items()}, "files": files}


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _entry(name, fmt, url, sha256, **extra):
    return {"name": name, "url": url, "sha256": sha256, "preset": PRESET, "format": fmt,
            "metric": None, "source": "test", "verified": sha256 is not None, "note": "",
            **extra}


def _assert_same_predictions(model, trained):
    got = model(trained["images"], training=False)
    for key, value in trained["expected"].items():
        np.testing.assert_allclose(np.asarray(got[key]), value, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fmt", ["weights.h5", "legacy_h5", "keras"])
def test_fetch_verifies_loads_and_caches(server, trained, tmp_path, fmt):
    data = trained["data"][fmt]
    server.files["w/tiny"] = data
    manifest = {"entries": [_entry("tiny", fmt, f"{server.url}/w/tiny", _sha256(data))]}
    cache = tmp_path / "cache"
    model = weights.fetch("tiny", cache_dir=cache, manifest=manifest, quiet=True)
    _assert_same_predictions(model, trained)
    cached = cache / ("tiny" + weights.WEIGHT_FORMATS[fmt])
    assert cached.read_bytes() == data and server.paths() == ["/w/tiny"]
    # second fetch: the cached file has the right hash, so no request is made
    path = weights.fetch("tiny", cache_dir=cache, manifest=manifest, load=False, quiet=True)
    assert path == str(cached) and server.paths() == ["/w/tiny"]


def test_wrong_hash_refused_and_not_cached(server, trained, tmp_path):
    data = trained["data"]["weights.h5"]
    corrupted = bytearray(data)
    corrupted[len(data) // 2] ^= 0xFF
    server.files["w/tiny"] = bytes(corrupted)
    good = _sha256(data)
    manifest = {"entries": [_entry("tiny", "weights.h5", f"{server.url}/w/tiny", good)]}
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError) as error:
        weights.fetch("tiny", cache_dir=cache, manifest=manifest, quiet=True)
    message = str(error.value)
    assert "tiny.weights.h5" in message and good in message and _sha256(corrupted) in message
    assert list(cache.iterdir()) == []
    # a cached file that went bad is deleted and downloaded again
    server.files["w/tiny"] = data
    (cache / "tiny.weights.h5").write_bytes(bytes(corrupted))
    weights.fetch("tiny", cache_dir=cache, manifest=manifest, load=False, quiet=True)
    assert (cache / "tiny.weights.h5").read_bytes() == data
    assert sorted(p.name for p in cache.iterdir()) == ["tiny.weights.h5"]


def test_unverified_entry_needs_permission(server, trained, tmp_path, capsys):
    data = trained["data"]["legacy_h5"]
    server.files["w/legacy"] = data
    server.files["w/page"] = b"<!DOCTYPE html><html>Google Drive - virus scan warning</html>"
    manifest = [_entry("legacy", "legacy_h5", f"{server.url}/w/legacy", None),
                _entry("page", "legacy_h5", f"{server.url}/w/page", None)]
    cache = tmp_path / "cache"
    with pytest.raises(weights.UnverifiedWeightsError, match="allow_unverified"):
        weights.fetch("legacy", cache_dir=cache, manifest=manifest)
    assert server.paths() == []
    model = weights.fetch("legacy", cache_dir=cache, manifest=manifest, allow_unverified=True,
                          quiet=True)
    _assert_same_predictions(model, trained)
    assert f"sha256 {_sha256(data)}" in capsys.readouterr().out
    # an HTML page instead of the file: refused and removed
    with pytest.raises(ValueError, match="not an HDF5 file"):
        weights.fetch("page", cache_dir=cache, manifest=manifest, allow_unverified=True,
                      load=False, quiet=True)
    assert sorted(p.name for p in cache.iterdir()) == ["legacy.h5"]


def test_url_override_mirror_and_local_file(server, trained, tmp_path):
    data = trained["data"]["weights.h5"]
    manifest = [_entry("tiny", "weights.h5", "https://unreachable.invalid/x", _sha256(data))]
    server.files["mirror/tiny.weights.h5"] = data
    path = weights.fetch("tiny", cache_dir=tmp_path / "a", manifest=manifest,
                         mirror=f"{server.url}/mirror/", load=False, quiet=True)
    assert server.paths() == ["/mirror/tiny.weights.h5"]
    # a local file (e.g. downloaded by hand) is checked and copied into the cache
    path = weights.fetch("tiny", cache_dir=tmp_path / "b", manifest=manifest, load=False,
                         url=str(trained["files"]["weights.h5"]), quiet=True)
    assert open(path, "rb").read() == data
    with pytest.raises(ChecksumError, match="not copied"):
        weights.fetch("tiny", cache_dir=tmp_path / "c", manifest=manifest, load=False,
                      url=str(trained["files"]["keras"]), quiet=True)
    assert not (tmp_path / "c").exists()


def test_relative_url_resolves_next_to_the_manifest_file(trained, tmp_path, monkeypatch):
    """A weights file shipped beside the manifest is found from any working directory."""
    shipped = tmp_path / "repo" / "weights"
    shipped.mkdir(parents=True)
    (shipped / "tiny.keras").write_bytes(trained["data"]["keras"])
    manifest = shipped / "manifest.json"
    data = trained["data"]["keras"]
    manifest.write_text(json.dumps({"entries": [_entry("tiny", "keras", "tiny.keras", _sha256(data))]}))
    monkeypatch.chdir(tmp_path)                      # not the manifest's folder
    model = weights.fetch("tiny", cache_dir=tmp_path / "cache", manifest=str(manifest), quiet=True)
    _assert_same_predictions(model, trained)


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SSD_KERAS_WEIGHTS_DIR", str(tmp_path))
    assert weights.default_cache_dir() == str(tmp_path)
    monkeypatch.delenv("SSD_KERAS_WEIGHTS_DIR")
    assert weights.default_cache_dir().endswith(".keras/ssd_keras/weights")


def test_register_weights_then_fetch(trained, tmp_path):
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"description": "kept", "entries": [
        _entry("zz_other", "keras", None, None)]}))
    path = trained["files"]["weights.h5"]
    metric = {"COCO AP@[.5:.95]": 0.653}
    entry = weights.register_weights(path, "digits_tiny", PRESET, metric=metric,
                                     source="run 7", manifest_path=manifest)
    document = json.loads(manifest.read_text())
    assert document["description"] == "kept"
    assert [e["name"] for e in document["entries"]] == ["digits_tiny", "zz_other"]
    assert document["entries"][0] == entry
    assert entry["sha256"] == _sha256(path.read_bytes()) and entry["verified"] is True
    assert entry["size"] == path.stat().st_size and entry["format"] == "weights.h5"
    assert entry["metric"] == metric and entry["preset"] == PRESET and entry["url"] is None
    assert not list(tmp_path.glob(".manifest-*"))
    # re-registering replaces the entry instead of adding a second one
    weights.register_weights(path, "digits_tiny", PRESET, manifest_path=manifest)
    assert len(weights.read_manifest(manifest)) == 2
    # no URL: fetch takes a local file given as url, then serves it from the cache
    cache = tmp_path / "cache"
    model = weights.fetch("digits_tiny", cache_dir=cache, manifest=manifest, url=str(path),
                          quiet=True)
    _assert_same_predictions(model, trained)
    weights.fetch("digits_tiny", cache_dir=cache, manifest=manifest, load=False, quiet=True)
    with pytest.raises(KeyError, match="unknown preset"):
        weights.register_weights(path, "x", "no_such_preset", manifest_path=manifest)


def _parser():
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    return parser


def test_cli_register_list_fetch(server, trained, tmp_path, capsys):
    manifest = tmp_path / "manifest.json"
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"VOC2007 test mAP (11-point)": 0.5}))
    path = trained["files"]["weights.h5"]
    server.files["tiny.weights.h5"] = path.read_bytes()
    parser = _parser()

    def run(*argv):
        args = parser.parse_args(["weights", *argv])
        return args.func(args)

    assert run("register", str(path), "--name", "tiny", "--preset", PRESET,
               "--metric-json", str(metrics), "--url", f"{server.url}/tiny.weights.h5",
               "--source", "test run", "--manifest", str(manifest)) == 0
    entry = weights.read_manifest(manifest)["tiny"]
    assert entry["metric"] == {"VOC2007 test mAP (11-point)": 0.5}
    assert entry["url"] == f"{server.url}/tiny.weights.h5" and entry["source"] == "test run"
    capsys.readouterr()
    cache = tmp_path / "cache"
    assert run("list", "--manifest", str(manifest), "--cache-dir", str(cache)) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "verified" in out and "cached" not in out
    assert run("fetch", "tiny", "--manifest", str(manifest), "--cache-dir", str(cache)) == 0
    assert capsys.readouterr().out.strip().endswith(str(cache / "tiny.weights.h5"))
    assert run("list", "--manifest", str(manifest), "--cache-dir", str(cache)) == 0
    assert "cached" in capsys.readouterr().out
    # errors are reported, not raised
    assert run("fetch", "nope", "--manifest", str(manifest)) == 1
    assert "no weights named 'nope'" in capsys.readouterr().err
    assert run("list", "--manifest", str(tmp_path / "missing.json")) == 1
    assert "manifest not found" in capsys.readouterr().err


def test_repository_manifest_is_well_formed():
    entries = weights.read_manifest()
    assert entries, "weights/manifest.json lists no entries"
    for name, entry in entries.items():
        assert set(entry) >= {"name", "url", "sha256", "preset", "format", "metric", "source",
                              "verified", "note"}, name
        assert entry["format"] in weights.WEIGHT_FORMATS, name
        assert entry["preset"] in presets.names() or entry.get("preset_module"), name
        if entry["sha256"] is None:
            assert entry["verified"] is False and "hash unknown" in entry["note"], name
        else:
            assert len(entry["sha256"]) == 64, name
    with pytest.raises(weights.UnverifiedWeightsError):
        weights.fetch("ssd300_voc0712_ssd_keras_102k", load=False)
