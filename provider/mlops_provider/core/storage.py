"""Files on a local folder or an object store, for the pure modules (no Airflow import).

A *storage* is a callable from a URI (``/data/x``, ``file:///data/x``, ``s3://bucket/x``) to a path object
with ``/``, ``name``, ``exists``, ``is_dir``, ``glob``, ``rglob``, ``mkdir`` and ``open``:
``pathlib.Path`` locally (:func:`local_storage`, the default), Airflow's ``ObjectStoragePath`` with the
root's connection on a store (the operators pass ``PipelineSpec.storage``).  URIs handed back to callers
are built as strings (:func:`join`): ``str()`` of an ``ObjectStoragePath`` carries the connection id.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

#: URI -> path object (``pathlib.Path`` or ``ObjectStoragePath``).
Storage = Callable[[str], Any]


def local_storage(uri: str | os.PathLike[str]) -> Path:
    """The local path of ``uri`` (``file://`` stripped)."""
    text = os.fspath(uri)
    return Path(text[len("file://"):] if text.startswith("file://") else text)


def join(base: str | os.PathLike[str], name: str) -> str:
    """``base/name`` as a URI string (``/`` on a store; ``os.path.join`` locally)."""
    text = os.fspath(base)
    return f"{text.rstrip('/')}/{name}" if "://" in text else os.path.join(text, name)


def mtime(path: Any) -> float:
    """Last modification (epoch seconds) of a local file or an object on a store."""
    if isinstance(path, Path):
        return path.stat().st_mtime
    from mlops_provider.core.batches import _fs_mtime

    return _fs_mtime(path.fs.info(path.path))


def uri_under(base: str | os.PathLike[str], root: Any, found: Any) -> str:
    """The URI of ``found`` (a path object under the path object ``root`` of URI ``base``)."""
    if isinstance(found, Path):
        return str(found)
    relative = str(found.path)[len(str(root.path).rstrip("/")):].lstrip("/")
    return join(base, relative)


def read_parquet(path: Any) -> pd.DataFrame:
    import pandas as pd

    if isinstance(path, Path):
        return pd.read_parquet(path)
    with path.open("rb") as fh:
        return pd.read_parquet(fh)


def write_parquet(frame: pd.DataFrame, path: Any) -> None:
    if isinstance(path, Path):
        frame.to_parquet(path, index=False)
        return
    with path.open("wb") as fh:
        frame.to_parquet(fh, index=False)
