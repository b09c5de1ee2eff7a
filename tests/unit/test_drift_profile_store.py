"""Binary drift profiles: exact round trip, checksums, conversion of JSON profiles, the worker cache."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_provider.core import drift as D
from mlops_provider.core import profile_store as S


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, n)
    x[:5] = [0.0, -0.0, 5e-324, -1e308, 1e308]  # signed zeros, a subnormal, the float range's ends
    words = np.array(["alpha", "beta", "gamma", "delta", "eps"], dtype=object)
    return pd.DataFrame(
        {
            "x": x,
            "x32": rng.normal(3, 2, n).astype(np.float32),
            "rounded": np.round(rng.normal(0, 1, n) * 10),  # stored as unique values + counts
            "age": rng.integers(-50, 90, n),
            "small_int": rng.integers(0, 4, n),  # categorical (few values)
            "flag": rng.random(n) < 0.3,
            "plan": rng.choice(["basic", "plus", "pro"], n),
            "note": [" ".join(words[rng.integers(0, 5, 4)]) + f" {i}" for i in range(n)],  # text column
            "empty": np.full(n, np.nan),
        }
    )


def _same_arrays(a: D.ReferenceProfile, b: D.ReferenceProfile) -> None:
    assert list(a.columns) == list(b.columns)
    for name, left in a.columns.items():
        right = b.columns[name]
        if left.values is None:
            assert right.values is None and left.keys == right.keys
            assert np.array_equal(left.counts, right.counts)
            if left.column_type == D.TEXT:  # texts are stored for text columns only
                assert left.texts == right.texts and len(right.texts) == left.n_valid
            continue
        assert left.values.dtype == right.values.dtype, name
        # bit for bit: -0.0 stays -0.0, the subnormal stays itself
        assert left.values.tobytes() == right.values.tobytes(), name
        assert (left.counts is None and right.counts is None) or np.array_equal(left.counts, right.counts)


def test_binary_profile_round_trips_bit_for_bit(tmp_path):
    ref, cur = _frame(3000, 1), _frame(2500, 2)
    profile = D.build_profile(ref, metadata={"model_name": "churn", "model_version": "3"})
    path = profile.save(tmp_path / "profile.bin")
    assert S.is_binary_profile(path) and profile.digest == S.file_digest(path)
    again = D.ReferenceProfile.load(path)
    assert again.digest == profile.digest
    _same_arrays(profile, again)
    assert again.to_dict() == profile.to_dict()
    assert D.check_drift(again, cur).to_summary() == D.check_drift(profile, cur).to_summary()
    assert D.check_drift(again, cur).to_summary() == D.check_drift(ref, cur).to_summary()


def test_binary_profile_is_at_most_half_the_json(tmp_path):
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({f"n{i}": rng.normal(0, 1, 200_000) for i in range(3)})
    ref["cat"] = rng.choice(["a", "b", "c"], len(ref))
    profile = D.build_profile(ref)
    size_json = profile.save(tmp_path / "p.json").stat().st_size
    size_bin = profile.save(tmp_path / "p.bin").stat().st_size
    assert size_bin <= 0.5 * size_json, (size_bin, size_json)


def test_a_json_profile_of_the_current_code_is_read_and_converted(tmp_path):
    ref, cur = _frame(1500, 4), _frame(1500, 5)
    legacy = D.build_profile(ref).save(tmp_path / "profile.json")  # the JSON written by this code
    assert json.loads(legacy.read_text())["format"] == D.PROFILE_FORMAT
    loaded = D.ReferenceProfile.load(legacy)
    assert loaded.digest is None  # not binary: to be converted
    converted = loaded.save(tmp_path / "profile.bin")
    again = D.ReferenceProfile.load(converted)
    assert again.digest is not None
    _same_arrays(loaded, again)
    assert D.check_drift(again, cur).to_summary() == D.check_drift(loaded, cur).to_summary()


def test_extra_sections_and_columns_are_carried_generically(tmp_path):
    """A section this module does not know (e.g. model outputs) goes through ``_encode_array`` like the rest."""
    profile = D.build_profile(_frame(500, 6))
    scores = D._column_stats(pd.Series(np.random.default_rng(7).random(800)), "score")
    with S.collecting_arrays() as arrays:
        tree = profile.to_dict()
        tree["predictions"] = {"score": scores.to_dict(), "edges": D._encode_array(np.linspace(0, 1, 11))}
    S.write_profile_tree(tree, arrays, tmp_path / "x.bin", D.PROFILE_FORMAT)
    back, _ = S.read_profile_tree(tmp_path / "x.bin", D.PROFILE_FORMAT)
    assert np.array_equal(back["predictions"]["edges"], np.linspace(0, 1, 11))
    restored = D.ColumnStats.from_dict("score", back["predictions"]["score"])
    assert restored.values.tobytes() == scores.values.tobytes()
    assert D.ReferenceProfile.from_dict(back).to_dict() == profile.to_dict()


@pytest.mark.parametrize("damage", ["flip", "truncate", "append"])
def test_a_corrupt_binary_profile_is_refused_naming_the_file(tmp_path, damage):
    path = D.build_profile(_frame(2000, 8)).save(tmp_path / "profile.bin")
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[-1000] ^= 0x01
    elif damage == "truncate":
        data = data[:-10]
    else:
        data += b"\0"
    path.write_bytes(bytes(data))
    with pytest.raises(D.ProfileError, match=r"profile\.bin is corrupt: checksum mismatch"):
        D.ReferenceProfile.load(path)


def test_save_replaces_atomically_and_leaves_no_temporary_file(tmp_path):
    profile = D.build_profile(_frame(300, 9))
    for _ in range(2):
        profile.save(tmp_path / "p.bin")
        profile.save(tmp_path / "p.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.bin", "p.json"]


def _put_many(args):
    root, source, n = args
    cache = S.ProfileCache(root)
    digest = S.file_digest(source)
    for _ in range(n):
        path = cache.put("churn", "3", digest, source)
        D.ReferenceProfile.load(path)  # every read sees a complete file
    return str(path)


def test_cache_is_keyed_by_model_version_and_digest_and_safe_with_concurrent_writers(tmp_path, monkeypatch):
    source = D.build_profile(_frame(20_000, 10)).save(tmp_path / "src" / "profile.bin")
    digest = S.file_digest(source)
    cache = S.ProfileCache(tmp_path / "cache")
    assert cache.get("churn", "3", digest) is None and cache.get("churn", "3", None) is None
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        paths = set(pool.map(_put_many, [(tmp_path / "cache", source, 15)] * 3))
    (entry,) = paths
    assert cache.get("churn", "3", digest) == Path(entry)
    assert cache.get("churn", "4", digest) is None and cache.get("churn", "3", "0" * 64) is None
    assert Path(entry).read_bytes() == source.read_bytes()
    assert [p.name for p in Path(entry).parent.iterdir()] == [Path(entry).name]  # no temporary file left
    monkeypatch.setenv(S.CACHE_ENV, str(tmp_path / "env-cache"))
    assert S.ProfileCache().root == tmp_path / "env-cache"
    monkeypatch.delenv(S.CACHE_ENV)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    assert S.ProfileCache().root == tmp_path / "airflow" / "mlops" / "profile-cache"
    assert os.path.basename(S.ProfileCache().path("a/b", "1", digest)) == f"{digest}.bin"


@pytest.mark.parametrize(("n_ref", "n_cur"), [(1000, 10_000), (10_000, 1000), (3000, 3_000_000 // 100)])
def test_wasserstein_of_nested_sample_sizes_matches_scipy(n_ref, n_cur):
    """The blockwise path (one sample size divides the other, e.g. a 1M profile and a 10M batch)."""
    from scipy.stats import wasserstein_distance

    rng = np.random.default_rng(n_ref + n_cur)
    ref, cur = rng.normal(0, 1, n_ref), rng.normal(0.1, 1.2, n_cur)
    ours = D._wasserstein_sorted(np.sort(ref), None, np.sort(cur), None)
    assert ours == pytest.approx(wasserstein_distance(ref, cur), rel=1e-12, abs=0)
    small, large = sorted((np.sort(ref), np.sort(cur)), key=len)
    assert D._wasserstein_nested(small, large, block=64) == pytest.approx(ours, rel=1e-12)  # many small blocks
