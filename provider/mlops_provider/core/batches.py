"""
Batch discovery in a landing location, and a persistent "seen" ledger.

Pure module: no Airflow import.  Used by :mod:`mlops_provider.triggers.batch` (in the triggerer,
through ``asyncio.to_thread``) and by :class:`~mlops_provider.sensors.drift.DriftSensor` (in the worker).

Completion convention
---------------------
A *landing location* is a glob such as ``/data/landing/*.parquet`` or ``/data/landing/batch=*``
(local), or ``s3://bucket/landing/*.parquet`` with an fsspec filesystem.  Each match is a candidate
batch, and it is picked up only when it is **complete**:

* a **directory** match is complete when its completion marker (``_SUCCESS`` by default, the Hadoop /
  Spark convention) exists inside it.  Writers write all part files first, the marker last.
* a **file** match is complete as soon as it is visible under its final name: writers must write to a
  temporary name and rename it into place (``os.replace`` is atomic on one POSIX file system; object
  stores publish an object atomically on upload completion).  Names that start with ``.`` or ``_`` and
  names ending in ``.tmp``, ``.part``, ``.inprogress``, ``.crdownload`` or ``.copying`` are never batches,
  so ``.batch-7.parquet.tmp`` -> ``batch-7.parquet`` is the safe way to land a file.
* ``min_age_seconds`` (default 0) additionally skips matches modified less than that long ago, for
  writers that can do neither (an upload tool that writes in place).

A location can also name **one file**: each new content of that file (new size or mtime) is one
batch, which is how a watcher on a configuration file works.  Discovery itself never fails on a missing
location (it finds nothing); :func:`check_location` is the check a watcher runs first, so a location
whose folder is missing, or that is neither a file nor a folder, fails visibly instead of waiting for ever.

Batch identity
--------------
``batch_id`` is a short SHA-256 of the URI with the size and modification time of the file (or, for a
directory, of its marker's content and mtime plus the sizes of its data files).  A file re-landed
with new content under the same name is a new batch; the same bytes seen again are not.

The ledger
----------
:class:`BatchLedger` is a small SQLite file (default: ``.mlops_batch_ledger.sqlite3`` in the landing
folder, which the discovery ignores).  ``claim(consumer, batch_id)`` is one ``INSERT OR IGNORE``: it
returns ``True`` exactly once per ``(consumer, batch_id)``, atomically, even with several processes
(triggerer, workers) sharing the file, and the claim survives process restarts.  SQLite is used rather
than an Airflow Variable because user code in the Airflow 3 triggerer has no direct metadata-DB
session (Variables go through the supervisor API, synchronously, and a Variable is a single value
updated read-modify-write, so two writers lose each other's updates); a local file needs no Airflow
round trip and is safe from a worker thread (``asyncio.to_thread``) because each call opens its own
connection.  Put it on a local disk (not NFS).  For an object-store landing location pass an explicit
``ledger_path`` on the triggerer/worker's local disk (the two must share it when both consume).
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

DEFAULT_MARKER = "_SUCCESS"
LEDGER_FILENAME = ".mlops_batch_ledger.sqlite3"
PARTIAL_SUFFIXES = (".tmp", ".part", ".inprogress", ".crdownload", ".copying")
MAX_FILES_IN_EVENT = 50


@dataclass(frozen=True)
class Batch:
    """A complete batch found in the landing location."""

    uri: str
    batch_id: str
    is_dir: bool
    size_bytes: int
    mtime: float
    files: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary for trigger events and XCom (file list capped at 50)."""
        data = asdict(self)
        data["files"] = list(self.files[:MAX_FILES_IN_EVENT])
        data["n_files"] = len(self.files)
        return data


def is_hidden_or_partial(name: str) -> bool:
    """Names that are never batches: hidden (``.x``, ``_x``) or still being written (``x.tmp``)."""
    base = name.rstrip("/").rsplit("/", 1)[-1]
    return base.startswith((".", "_")) or base.lower().endswith(PARTIAL_SUFFIXES)


def _short_hash(*parts: Any) -> str:
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).hexdigest()
    return digest[:20]


def _has_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


def landing_root(location: str) -> str:
    """The non-glob directory part of a location (``/data/landing/*.csv`` -> ``/data/landing``)."""
    parts = location.rstrip("/").split("/")
    keep: list[str] = []
    for part in parts:
        if _has_glob(part):
            break
        keep.append(part)
    root = "/".join(keep)
    if not _has_glob(location) and keep == parts:
        # a plain folder: its children are the candidates
        return root
    return root or "."


def _candidate_pattern(location: str, isdir: Any = os.path.isdir) -> str:
    """A glob is itself; a plain folder means "every child of the folder"; any other path is one file."""
    if _has_glob(location):
        return location
    return location.rstrip("/") + "/*" if isdir(location) else location.rstrip("/")


class LocationError(ValueError):
    """A landing location that cannot hold batches: its folder is missing, or it is not a file or folder."""


def check_location(location: str) -> str:
    """
    Check a local landing location before watching it; return what is watched (``folder``, ``file``, ``glob``).

    * a glob (``/data/landing/*.parquet``): its folder (``/data/landing``) must exist and be a folder;
    * a folder: each child is a batch; a regular file: each new content of the file is a batch;
    * a path that does not exist yet is watched as a file to come when its name has an extension
      (``proposed/model.yaml``) and its folder exists;
    * anything else raises :class:`LocationError`: a missing folder (``/data/landnig``, or any path
      ending in ``/``), a socket, a FIFO, a device.  A typo never waits silently.
    """
    path = os.path.expanduser(location.removeprefix("file://"))
    if _has_glob(path):
        root = landing_root(path)
        if not os.path.isdir(root):
            what = "is not a folder" if os.path.exists(root) else "does not exist"
            raise LocationError(f"landing location {location!r}: its folder {root!r} {what}")
        return "glob"
    if os.path.isdir(path):
        return "folder"
    if os.path.isfile(path):
        return "file"
    if os.path.exists(path):
        raise LocationError(f"landing location {location!r} is neither a file nor a folder")
    parent = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path.rstrip("/"))
    if path.endswith("/") or not os.path.splitext(name)[1]:
        raise LocationError(
            f"landing location {location!r} does not exist: create the folder before the watcher starts "
            "(a single file that is still to come is watched only when its name has an extension, e.g. .yaml)"
        )
    if not os.path.isdir(parent):
        raise LocationError(
            f"landing location {location!r} does not exist, and neither does its folder {parent!r}"
        )
    return "file"


# ---------------------------------------------------------------- local file system


def _local_batches(location: str, marker: str | None, min_age_seconds: float, now: float) -> list[Batch]:
    pattern = _candidate_pattern(os.path.expanduser(location))
    found: list[Batch] = []
    for path in sorted(glob.glob(pattern)):
        if is_hidden_or_partial(path):
            continue
        try:
            st = os.stat(path)
            if os.path.isdir(path):
                batch = _local_dir_batch(path, marker, st)
            else:
                batch = Batch(
                    uri=os.path.abspath(path),
                    batch_id=_short_hash(os.path.abspath(path), st.st_size, st.st_mtime_ns),
                    is_dir=False,
                    size_bytes=st.st_size,
                    mtime=st.st_mtime,
                    files=(os.path.abspath(path),),
                )
        except (FileNotFoundError, NotADirectoryError):
            continue  # vanished between the listing and the stat (moved away, or renamed over)
        if batch is None or now - batch.mtime < min_age_seconds:
            continue
        found.append(batch)
    return found


def _local_dir_batch(path: str, marker: str | None, st: os.stat_result) -> Batch | None:
    path = os.path.abspath(path)
    marker_part: tuple[Any, ...] = ()
    mtime = st.st_mtime
    if marker:
        marker_path = os.path.join(path, marker)
        if not os.path.isfile(marker_path):
            return None  # still being written
        mst = os.stat(marker_path)
        with open(marker_path, "rb") as fh:
            marker_part = (hashlib.sha256(fh.read(1 << 16)).hexdigest(), mst.st_mtime_ns)
        mtime = mst.st_mtime
    files: list[str] = []
    size = 0
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not is_hidden_or_partial(d))
        for name in sorted(names):
            if is_hidden_or_partial(name):
                continue
            full = os.path.join(root, name)
            try:
                size += os.stat(full).st_size
            except FileNotFoundError:
                continue
            files.append(full)
    if not files:
        return None
    return Batch(
        uri=path,
        batch_id=_short_hash(path, size, len(files), *marker_part),
        is_dir=True,
        size_bytes=size,
        mtime=mtime,
        files=tuple(files),
    )


# ---------------------------------------------------------------- fsspec (object stores)


def _fs_batches(fs: Any, location: str, marker: str | None, min_age_seconds: float, now: float) -> list[Batch]:
    protocol = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol
    prefix = f"{protocol}://" if "://" in location else ""
    stripped = location.split("://", 1)[-1]
    pattern = _candidate_pattern(stripped, isdir=fs.isdir)
    try:
        infos = fs.glob(pattern, detail=True)
    except FileNotFoundError:
        return []
    found: list[Batch] = []
    for path, info in sorted(infos.items()):
        if is_hidden_or_partial(path):
            continue
        if info.get("type") == "directory":
            batch = _fs_dir_batch(fs, path, prefix, marker)
        else:
            size = int(info.get("size") or 0)
            mtime = _fs_mtime(info)
            etag = info.get("ETag") or info.get("etag") or info.get("md5Hash") or ""
            batch = Batch(
                uri=prefix + path,
                batch_id=_short_hash(prefix + path, size, mtime, etag),
                is_dir=False,
                size_bytes=size,
                mtime=mtime,
                files=(prefix + path,),
            )
        if batch is None or (min_age_seconds and now - batch.mtime < min_age_seconds):
            continue
        found.append(batch)
    return found


def _fs_mtime(info: dict[str, Any]) -> float:
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, (int, float)):
            return float(value)
        if hasattr(value, "timestamp"):
            return float(value.timestamp())
        try:
            from datetime import datetime

            return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
        except ValueError:
            continue
    return 0.0


def _fs_dir_batch(fs: Any, path: str, prefix: str, marker: str | None) -> Batch | None:
    marker_part: tuple[Any, ...] = ()
    mtime = 0.0
    if marker:
        marker_path = f"{path.rstrip('/')}/{marker}"
        if not fs.exists(marker_path):
            return None
        minfo = fs.info(marker_path)
        mtime = _fs_mtime(minfo)
        content = fs.cat_file(marker_path) if int(minfo.get("size") or 0) < (1 << 16) else b""
        marker_part = (hashlib.sha256(content).hexdigest(), mtime)
    files: list[str] = []
    size = 0
    for fpath, info in sorted(fs.find(path, detail=True).items()):
        rel = fpath[len(path) :].lstrip("/")
        if any(is_hidden_or_partial(p) for p in rel.split("/")):
            continue
        files.append(prefix + fpath)
        size += int(info.get("size") or 0)
    if not files:
        return None
    return Batch(
        uri=prefix + path,
        batch_id=_short_hash(prefix + path, size, len(files), *marker_part),
        is_dir=True,
        size_bytes=size,
        mtime=mtime,
        files=tuple(files),
    )


def discover_batches(
    location: str,
    *,
    marker: str | None = DEFAULT_MARKER,
    min_age_seconds: float = 0.0,
    fs: Any | None = None,
    now: float | None = None,
) -> list[Batch]:
    """
    List the complete batches at ``location``, oldest first (by mtime, then URI).

    :param location: folder, or glob, of batches (local path; with ``fs``, an fsspec path/URL).
    :param marker: completion marker a directory batch must contain; ``None`` accepts any
        non-empty directory (only safe when directories are renamed into place atomically).
    :param min_age_seconds: skip matches modified less than this long ago.
    :param fs: an fsspec filesystem for object stores; ``None`` for the local file system.
    """
    now = time.time() if now is None else now
    if fs is None:
        batches = _local_batches(location, marker, min_age_seconds, now)
    else:
        batches = _fs_batches(fs, location, marker, min_age_seconds, now)
    return sorted(batches, key=lambda b: (b.mtime, b.uri))


def matches(location: str, uri: str) -> bool:
    """Whether ``uri`` is a candidate of ``location`` (used to validate event payloads)."""
    return fnmatch.fnmatch(uri.split("://", 1)[-1], _candidate_pattern(location.split("://", 1)[-1]))


# ---------------------------------------------------------------- ledger


def default_ledger_path(location: str) -> str:
    """``<landing folder>/.mlops_batch_ledger.sqlite3`` for a local location."""
    if "://" in location and not location.startswith("file://"):
        raise ValueError(
            f"location {location!r} is not local: pass ledger_path (a local file shared by the "
            "triggerer and the workers that consume the batches)"
        )
    root = os.path.abspath(os.path.expanduser(landing_root(location.removeprefix("file://"))))
    if not _has_glob(location) and not os.path.isdir(root):
        root = os.path.dirname(root)  # a watched file: the ledger sits beside it
    return os.path.join(root, LEDGER_FILENAME)


class BatchLedger:
    """
    Persistent record of the batches each consumer has already taken (SQLite, one row per claim).

    Every method opens its own short-lived connection, so an instance can be used from any thread
    and from several processes at once; ``claim`` is atomic.

    :param path: the SQLite file; its folder is created on first write.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS seen_batch ("
            " consumer TEXT NOT NULL, batch_id TEXT NOT NULL, uri TEXT NOT NULL,"
            " claimed_at REAL NOT NULL, info TEXT, PRIMARY KEY (consumer, batch_id))"
        )
        return conn

    def claim(self, consumer: str, batch: Batch, info: dict[str, Any] | None = None) -> bool:
        """Record ``batch`` as taken by ``consumer``; ``True`` only the first time (atomic)."""
        conn = self._connect()
        try:
            cur = conn.execute(
                "INSERT OR IGNORE INTO seen_batch (consumer, batch_id, uri, claimed_at, info) "
                "VALUES (?, ?, ?, ?, ?)",
                (consumer, batch.batch_id, batch.uri, time.time(), json.dumps(info or {})),
            )
            return cur.rowcount == 1
        finally:
            conn.close()

    def seen_ids(self, consumer: str) -> set[str]:
        if not os.path.exists(self.path):
            return set()
        conn = self._connect()
        try:
            rows = conn.execute("SELECT batch_id FROM seen_batch WHERE consumer = ?", (consumer,))
            return {row[0] for row in rows}
        finally:
            conn.close()

    def is_seen(self, consumer: str, batch_id: str) -> bool:
        return batch_id in self.seen_ids(consumer)

    def unseen(self, consumer: str, batches: Iterable[Batch]) -> list[Batch]:
        seen = self.seen_ids(consumer)
        return [b for b in batches if b.batch_id not in seen]

    def history(self, consumer: str) -> list[dict[str, Any]]:
        if not os.path.exists(self.path):
            return []
        conn = self._connect()
        try:
            rows = conn.execute(
                "SELECT batch_id, uri, claimed_at, info FROM seen_batch WHERE consumer = ? ORDER BY claimed_at",
                (consumer,),
            )
            return [
                {"batch_id": r[0], "uri": r[1], "claimed_at": r[2], "info": json.loads(r[3] or "{}")}
                for r in rows
            ]
        finally:
            conn.close()


def find_new_batches(
    location: str,
    ledger: BatchLedger,
    consumer: str,
    *,
    marker: str | None = DEFAULT_MARKER,
    min_age_seconds: float = 0.0,
    fs: Any | None = None,
) -> list[Batch]:
    """Complete batches at ``location`` that ``consumer`` has not claimed yet, oldest first."""
    return ledger.unseen(consumer, discover_batches(location, marker=marker, min_age_seconds=min_age_seconds, fs=fs))
