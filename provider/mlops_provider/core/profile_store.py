"""Binary container for drift reference profiles, and a per-worker cache of them.

A profile is stored as one file:

``MAGIC`` (8 bytes) | header length (uint32, little endian) | header (JSON) | payload

* The **header** says what the file is (``format``, ``container`` version), the codec, the payload's
  length and its **sha256**.  :func:`read_profile_tree` hashes the payload and refuses the file
  (:class:`~mlops_provider.core.drift.ProfileError`, naming the file) when the digest or the length
  differs: a truncated download or a flipped byte never reaches a drift verdict.
* The **payload** is a list of blobs, each compressed with zstd (pyarrow's codec; lz4 when zstd is
  missing).  Blob 0 is the profile's JSON tree (:meth:`ReferenceProfile.to_dict` with every numpy
  array replaced by ``{"$array": i}``); blob ``i + 1`` is array ``i``.  Any section or column a
  profile's ``to_dict`` writes through ``_encode_array`` is carried, so new sections need no change
  here.
* Arrays are stored **column by column**: a sorted numeric array (the reference values) is stored as
  the deltas of its order-preserving integer image (exact, bit for bit), and every array is
  byte-shuffled (all first bytes, then all second bytes...) before compression, so the high bytes of
  neighbouring values, nearly equal, compress to almost nothing.  At 1M normal values this takes
  ~4.6 bytes per float64 instead of 8 (raw) or ~10.7 (the base64 JSON of the older format).

Old JSON profiles (a file starting with ``{``) are still read by
:meth:`~mlops_provider.core.drift.ReferenceProfile.load`; callers convert them by saving again.

:class:`ProfileCache` keeps loaded-once profiles on the worker's disk, keyed by model name, version
and the payload's sha256, written by atomic rename so concurrent tasks never see half a file.

No Airflow import; numpy and pyarrow are imported inside functions.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import re
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

#: First bytes of a binary profile file.
MAGIC = b"MLOPSDP\x00"
#: Version of the container layout (the profile's own layout has ``PROFILE_VERSION``).
CONTAINER_VERSION = 1
#: Extension of binary profile files (``drift/profile.bin`` on a model version's run).
BINARY_SUFFIX = ".bin"
_LEN = struct.Struct("<I")
#: Environment variable naming the cache folder (default: ``$AIRFLOW_HOME/mlops/profile-cache``,
#: else ``<tmp>/mlops-profile-cache``).
CACHE_ENV = "MLOPS_PROFILE_CACHE_DIR"

#: While set (a list), ``drift._encode_array`` hands arrays here instead of base64-encoding them.
_COLLECT: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar("mlops_profile_arrays", default=None)


def _codec() -> Any:
    import pyarrow as pa

    for name, level in (("zstd", 3), ("lz4", None)):
        if pa.Codec.is_available(name):
            return pa.Codec(name) if level is None else pa.Codec(name, compression_level=level)
    raise RuntimeError("pyarrow was built without zstd and lz4; binary drift profiles need one of them")


def _error(message: str) -> Exception:
    from mlops_provider.core.drift import ProfileError

    return ProfileError(message)


# -------------------------------------------------------------------------------------------- arrays


def collect_array(arr: np.ndarray) -> dict[str, Any] | None:
    """Called by ``drift._encode_array``: ``{"$array": i}`` while a binary save is collecting, else ``None``."""
    arrays = _COLLECT.get()
    if arrays is None:
        return None
    arrays.append(arr)
    return {"$array": len(arrays) - 1}


def _ordered_uint(arr: np.ndarray) -> np.ndarray | None:
    """The order-preserving unsigned integer image of a numeric array (a new array; ``None``: not supported)."""
    import numpy as np

    kind, size = arr.dtype.kind, arr.dtype.itemsize
    if kind not in "fiu" or size not in (4, 8):
        return None
    utype = np.dtype(f"<u{size}")
    bits = arr.view(utype)
    sign = utype.type(1 << (8 * size - 1))
    if kind == "u":
        return bits.copy()
    if kind == "i":
        return bits ^ sign
    # floats: positives get the sign bit set, negatives are bit-flipped (so -x < -y when x > y)
    mask = bits >> utype.type(8 * size - 1)  # 1 for negatives
    np.negative(mask, out=mask)  # all ones for negatives (modular)
    mask |= sign
    mask ^= bits
    return mask


def _from_ordered_uint(u: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Inverse of :func:`_ordered_uint`, in place on ``u``."""

    size = dtype.itemsize
    sign = u.dtype.type(1 << (8 * size - 1))
    if dtype.kind == "i":
        u ^= sign
    elif dtype.kind == "f":
        mask = u >> u.dtype.type(8 * size - 1)  # 1 for (images of) non-negative values
        mask -= u.dtype.type(1)  # 0 for them, all ones for negatives (modular)
        mask |= sign
        u ^= mask
    return u.view(dtype)


def _streams(data: np.ndarray, desc: dict[str, Any]) -> list[np.ndarray]:
    """The byte streams of an array, each compressed on its own.

    8-byte values are split into their low 32-bit words (random for float deltas; stored as they are)
    and high words.  High words of deltas are small: when fewer than 1 % reach 65535 they are stored
    as two byte planes (all low bytes, then all high bytes), with the positions and values of those
    that do (``"hi": "u2"``).
    """
    import numpy as np

    if data.dtype.itemsize != 8 or not len(data):
        return [data.view(np.uint8)]
    words = data.view(np.uint32).reshape(-1, 2)  # little endian: low word first
    low, high = np.ascontiguousarray(words[:, 0]), np.ascontiguousarray(words[:, 1])
    big = np.flatnonzero(high >= 65535)
    if len(big) * 100 >= len(high):
        desc["hi"] = "u4"
        return [low.view(np.uint8), high.view(np.uint8)]
    desc["hi"] = "u2"
    small = np.minimum(high, 65535).astype("<u2")
    planes = np.ascontiguousarray(small.view(np.uint8).reshape(-1, 2).T)
    return [low.view(np.uint8), planes.reshape(-1), big.astype("<i8").view(np.uint8), high[big].view(np.uint8)]


def _pack_array(arr: np.ndarray, codec: Any) -> tuple[dict[str, Any], list[bytes]]:
    import numpy as np

    arr = np.ascontiguousarray(arr)
    if arr.dtype.kind == "O":
        raise TypeError("object arrays cannot be stored in a binary profile")
    dtype = arr.dtype.newbyteorder("<") if arr.dtype.itemsize > 1 else arr.dtype
    arr = arr.astype(dtype, copy=False)
    desc: dict[str, Any] = {"dtype": dtype.str, "shape": list(arr.shape), "enc": "plain", "streams": []}
    data = arr.reshape(-1)
    if len(data) > 1 and bool((data[1:] >= data[:-1]).all()):
        image = _ordered_uint(data)
        if image is not None:
            data = np.diff(image, prepend=image.dtype.type(0))  # wraps around: exact in modular arithmetic
            desc["enc"] = "delta"
    blobs = []
    for stream in _streams(data, desc):
        raw = stream.view(np.uint8)
        packed = codec.compress(raw, asbytes=True)
        compressed = len(packed) < 0.95 * raw.nbytes  # random low words: stored as they are
        blobs.append(packed if compressed else raw.tobytes())
        desc["streams"].append({"raw": int(raw.nbytes), "z": compressed})
    return desc, blobs


def _unpack_array(desc: dict[str, Any], blobs: list[Any], codec: Any) -> np.ndarray:
    import numpy as np

    dtype = np.dtype(desc["dtype"])
    shape = tuple(int(s) for s in desc["shape"])
    parts = []
    for meta, blob in zip(desc["streams"], blobs, strict=True):
        if meta["z"]:
            blob = codec.decompress(blob, decompressed_size=int(meta["raw"]), asbytes=False)
        parts.append(np.frombuffer(blob, dtype=np.uint8))
    if len(parts) >= 2:
        if desc.get("hi", "u4") == "u4":
            data = parts[1].view("<u4").astype("<u8")
        else:  # two byte planes
            planes = parts[1].reshape(2, -1)
            data = planes[1].astype("<u8")
            data <<= np.uint64(8)
            data |= planes[0]
        if len(parts) == 4:  # high words of 255 and more, stored apart
            data[parts[2].view("<i8")] = parts[3].view("<u4")
        data <<= np.uint64(32)
        data |= parts[0].view("<u4")
    else:
        data = parts[0].copy() if parts else np.zeros(0, np.uint8)
    if desc["enc"] == "delta":
        utype = np.dtype(f"<u{dtype.itemsize}")
        image = data.view(utype)
        np.cumsum(image, out=image)
        out = _from_ordered_uint(image, dtype)
    else:
        out = data.view(dtype)
    return out.astype(dtype.newbyteorder("="), copy=False).reshape(shape)


def _substitute(tree: Any, arrays: list[Any]) -> Any:
    """Replace ``{"$array": i}`` nodes of a JSON tree by ``arrays[i]``."""
    if isinstance(tree, dict):
        if len(tree) == 1 and "$array" in tree:
            return arrays[int(tree["$array"])]
        return {k: _substitute(v, arrays) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_substitute(v, arrays) for v in tree]
    return tree


# -------------------------------------------------------------------------------------------- files


@contextlib.contextmanager
def collecting_arrays() -> Iterator[list[Any]]:
    """While active, ``drift._encode_array`` collects arrays (see :func:`collect_array`)."""
    arrays: list[Any] = []
    token = _COLLECT.set(arrays)
    try:
        yield arrays
    finally:
        _COLLECT.reset(token)


def write_profile_tree(tree: dict[str, Any], arrays: list[Any], path: str | Path, profile_format: str) -> str:
    """Write a profile tree (arrays collected apart) as a binary file, atomically; returns the payload's sha256."""
    codec = _codec()
    descs, blobs = [], []
    for arr in arrays:
        desc, parts = _pack_array(arr, codec)
        descs.append(desc)
        blobs.extend(parts)
    body = json.dumps({"tree": tree, "arrays": descs}, separators=(",", ":")).encode("utf-8")
    blobs.insert(0, codec.compress(body, asbytes=True))
    sizes = [len(b) for b in blobs]
    digest = hashlib.sha256()
    for blob in blobs:
        digest.update(blob)
    header = json.dumps(
        {
            "format": profile_format,
            "container": CONTAINER_VERSION,
            "codec": codec.name,
            "tree_bytes": len(body),
            "blob_bytes": sizes,
            "payload_bytes": sum(sizes),
            "sha256": digest.hexdigest(),
        },
        separators=(",", ":"),
    ).encode("utf-8")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(MAGIC)
            fh.write(_LEN.pack(len(header)))
            fh.write(header)
            for blob in blobs:
                fh.write(blob)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return digest.hexdigest()


def is_binary_profile(path: str | Path) -> bool:
    with Path(path).open("rb") as fh:
        return fh.read(len(MAGIC)) == MAGIC


def read_header(data: bytes | memoryview, name: str) -> tuple[dict[str, Any], int]:
    """(header, offset of the payload) of a binary profile's bytes."""
    if bytes(data[: len(MAGIC)]) != MAGIC:
        raise _error(f"Drift profile {name} is not a binary drift profile (wrong magic bytes)")
    start = len(MAGIC) + _LEN.size
    try:
        (length,) = _LEN.unpack(bytes(data[len(MAGIC) : start]))
        header = json.loads(bytes(data[start : start + length]))
    except (struct.error, ValueError) as err:
        raise _error(f"Drift profile {name} is corrupt: unreadable header ({err})") from None
    if not isinstance(header, dict):
        raise _error(f"Drift profile {name} is corrupt: unreadable header")
    return header, start + length


def file_digest(path: str | Path) -> str | None:
    """The payload sha256 recorded in a binary profile's header (``None`` for another file)."""
    try:
        with Path(path).open("rb") as fh:
            head = fh.read(64 * 1024)
        return str(read_header(head, str(path))[0].get("sha256"))
    except Exception:  # noqa: BLE001 - not a binary profile, or unreadable: no digest
        return None


def read_profile_tree(path: str | Path, profile_format: str) -> tuple[dict[str, Any], str]:
    """The profile tree of a binary file (arrays as numpy arrays) and its sha256, after verifying it."""
    name = str(path)
    with Path(path).open("rb") as fh:
        data = memoryview(fh.read())
    header, offset = read_header(data, name)
    if header.get("format") != profile_format:
        raise _error(f"Drift profile {name} is not a drift reference profile (format {header.get('format')!r})")
    if header.get("container") != CONTAINER_VERSION:
        raise _error(
            f"Drift profile {name} uses container version {header.get('container')!r}; this engine reads "
            f"version {CONTAINER_VERSION}: rebuild the profile from the reference data"
        )
    payload = data[offset:]
    expected = header.get("sha256")
    if len(payload) != header.get("payload_bytes"):
        raise _error(
            f"Drift profile {name} is corrupt: checksum mismatch (payload of {len(payload)} bytes, the header "
            f"says {header.get('payload_bytes')}; truncated or modified). Refusing it: delete or rebuild the profile"
        )
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa

    # the hash runs on another thread (hashlib releases the GIL) while the arrays are decoded; nothing
    # decoded is returned before the digest is compared
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="profile-load") as pool:
        hashing = pool.submit(lambda: hashlib.sha256(payload).hexdigest())
        try:
            codec = pa.Codec(header["codec"])
            sizes = [int(s) for s in header["blob_bytes"]]
            bounds = [0]
            for s in sizes:
                bounds.append(bounds[-1] + s)
            blob = [payload[bounds[i] : bounds[i + 1]] for i in range(len(sizes))]
            body = json.loads(codec.decompress(blob[0], decompressed_size=int(header["tree_bytes"]), asbytes=True))
            jobs, at = [], 1
            for desc in body["arrays"]:
                count = len(desc["streams"])
                jobs.append((desc, blob[at : at + count]))
                at += count
            # numpy and the codec release the GIL: large arrays decode on two threads beside the hash
            big = [pool.submit(_unpack_array, d, b, codec) if d["shape"] and d["shape"][0] > 100_000 else None
                   for d, b in jobs]
            arrays = [f.result() if f is not None else _unpack_array(d, b, codec)
                      for f, (d, b) in zip(big, jobs, strict=True)]
            failure = None
        except (KeyError, ValueError, TypeError, IndexError, OSError, pa.ArrowException) as err:
            failure = err
        actual = hashing.result()
    if actual != expected:
        raise _error(
            f"Drift profile {name} is corrupt: checksum mismatch (sha256 {actual[:16]}..., the header says "
            f"{str(expected)[:16]}...). Refusing it: delete or rebuild the profile"
        )
    if failure is not None:
        raise _error(f"Drift profile {name} is malformed: {failure}")
    return _substitute(body["tree"], arrays), actual


# -------------------------------------------------------------------------------------------- cache


def default_cache_dir() -> Path:
    """``$MLOPS_PROFILE_CACHE_DIR``, else ``$AIRFLOW_HOME/mlops/profile-cache``, else a folder in the temp dir."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    home = os.environ.get("AIRFLOW_HOME")
    if home:
        return Path(home) / "mlops" / "profile-cache"
    return Path(tempfile.gettempdir()) / "mlops-profile-cache"


def _safe(part: str) -> str:
    return re.sub(r"[^0-9A-Za-z_.-]", "_", part)[:120] or "_"


class ProfileCache:
    """Binary profiles on the worker's disk, one file per (model, version, payload sha256).

    ``path(...)`` of an entry that exists is a complete file: entries are written to a temporary
    file in the same folder and renamed into place (atomic on POSIX), so a task reading while another
    writes sees the old state or the new file, never a partial one.  A second writer of the same
    entry replaces it with identical bytes.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    def path(self, model_name: str, version: str, digest: str) -> Path:
        return self.root / _safe(model_name) / _safe(str(version)) / f"{_safe(digest)}{BINARY_SUFFIX}"

    def get(self, model_name: str, version: str, digest: str | None) -> Path | None:
        if not digest:
            return None
        path = self.path(model_name, version, digest)
        return path if path.is_file() else None

    def put(self, model_name: str, version: str, digest: str, source: str | Path) -> Path:
        """Copy ``source`` into the cache (atomically) and return the entry's path."""
        import shutil

        target = self.path(model_name, version, digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return target
