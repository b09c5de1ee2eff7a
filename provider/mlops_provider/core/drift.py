"""Per-column data drift with Evidently 0.7's default decisions, computed from reusable reference profiles.

With its defaults this engine reproduces ``evidently.Report([DataDriftPreset()])`` (Evidently 0.7.23):
the same column types (inferred from the *current* batch), the same test per column, the same
thresholds and comparison operators, the same handling of NaN and +/-inf (dropped per column before
testing) and the same dataset rule (``share of drifted columns >= drift_share``).  The statistics are
the ones Evidently computes; the p-values and distances come from the same SciPy functions, fed with
the same counts, so scores agree to floating-point rounding.

What makes it cheap is the :class:`ReferenceProfile`: the sufficient statistics of the reference data
(sorted finite values, compressed to value/count pairs when that is smaller, or category counts)
computed once, stored as JSON next to the model, and reused for every batch.

Differences from Evidently, on purpose and documented in ``docs/operators/drift.md``:

* text columns get Evidently's own text test (``perc``/``abs_text_content_drift``: a seeded domain
  classifier, :func:`text_drift`), on the values in row order, which profiles store for text columns;
  when the reference holds no texts (an older profile, a partitioned check) the column is skipped with
  the reason.  Columns of types Evidently does not test (datetime, nullable ``Int64``/``Float64``,
  unsigned ints, ...) are listed in ``skipped_columns`` and left out of the drift share;
  :meth:`DriftResult.not_tested` names them;
* the engine never says "no drift" about a column it could not look at: a reference column missing
  from the batch, or with no value left in the batch after dropping NaN/inf (Evidently raises), counts
  as a drifted column with the reason in ``note``; a batch sharing no column with the reference, or
  with no column that could be tested, raises :class:`DriftInputError`; a score that comes out NaN
  raises :class:`DriftInputError` naming the column and method (values near +/-1e308 are rescaled by
  a power of two first, which leaves every score unchanged, so they do not overflow);
* reference/current schema differences are reported (missing, extra columns, dtype changes) instead
  of raising deep inside pandas; a dtype change between numeric and non-numeric counts as drift;
* column labels are compared as strings (``str(label)``) on every path, so integer labels (``0, 1, ...``,
  e.g. a CSV read with ``header=None``) behave the same with a reference DataFrame and a stored profile.

This module imports no Airflow and imports numpy/scipy/pandas only inside functions.
"""

from __future__ import annotations

import base64
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

#: Identifies a serialised profile; :meth:`ReferenceProfile.from_dict` refuses anything else.
PROFILE_FORMAT = "mlops-provider/drift-profile"
#: Bumped when the serialised layout changes incompatibly.
PROFILE_VERSION = 1
#: Reference rows kept exactly; above this a deterministic sample of this many rows is profiled.
DEFAULT_MAX_ROWS = 1_000_000
#: Threads used over columns by default (capped by the CPU count).
DEFAULT_WORKERS = 2
#: Evidently's switch between small-sample tests (p-values) and distances.
SMALL_REFERENCE_ROWS = 1000
#: ``INTEGER_CARDINALITY_LIMIT`` in ``evidently/core/datasets.py``.
INTEGER_CARDINALITY_LIMIT = 10

#: method -> (default threshold, drift when ``score <= t`` / ``score < t`` / ``score >= t``, kind).
METHODS: dict[str, tuple[float, str, str]] = {
    "ks": (0.05, "le", "p_value"),
    "chisquare": (0.05, "lt", "p_value"),
    "z": (0.05, "lt", "p_value"),
    "wasserstein": (0.1, "ge", "distance"),
    "jensenshannon": (0.1, "ge", "distance"),
    "psi": (0.1, "ge", "distance"),
    # text columns: ROC AUC of a domain classifier (TF-IDF + SGD) telling reference rows from current
    # rows; "perc" compares it with a percentile of random classifiers' AUCs (p = 1 - threshold)
    "perc_text_content_drift": (0.95, "gt", "roc_auc"),
    "abs_text_content_drift": (0.55, "gt", "roc_auc"),
}
#: Evidently's display names of the methods (``ValueDrift.method`` in a report snapshot).
EVIDENTLY_DISPLAY_NAMES = {
    "ks": "K-S p_value",
    "chisquare": "chi-square p_value",
    "z": "Z-test p_value",
    "wasserstein": "Wasserstein distance (normed)",
    "jensenshannon": "Jensen-Shannon distance",
    "psi": "PSI",
    "perc_text_content_drift": "Percentile text content drift",
    "abs_text_content_drift": "Absolute text content drift",
}
_NUMERIC_ONLY = {"ks", "wasserstein"}
#: Evidently's methods for text columns (and the only ones it allows there).
_TEXT_ONLY = {"perc_text_content_drift", "abs_text_content_drift"}
#: Methods Evidently registers for categorical columns only (``allowed_feature_types``): an override
#: on a numerical column raises ``StatTestInvalidFeatureTypeError`` there, and is refused here too.
_CATEGORICAL_ONLY = {"chisquare", "z"}
#: Above this magnitude numeric values are rescaled by a power of two before a test (squares overflow).
_RESCALE_ABOVE = 2.0**500

NUM, CAT, TEXT = "num", "cat", "text"
#: Reserved profile columns holding the model's outputs on its evaluation data (prediction drift, see
#: :mod:`mlops_provider.core.prediction_drift`): the class or score, and a binary classifier's probability.
#: Feature checks leave them out.
PREDICTION_COLUMN = "__prediction__"
PROBA_COLUMN = "__proba__"
OUTPUT_COLUMNS = (PREDICTION_COLUMN, PROBA_COLUMN)
#: Prefix of a multiclass classifier's per-class probability outputs (``__proba__:<class>``).
PROBA_CLASS_PREFIX = PROBA_COLUMN + ":"


def is_output_column(name: Any) -> bool:
    """Whether ``name`` is one of the reserved model-output columns of a profile (never a feature)."""
    return isinstance(name, str) and (name in OUTPUT_COLUMNS or name.startswith(PROBA_CLASS_PREFIX))
#: ``note`` of a reference column the batch lacks (counted as drifted).
MISSING_IN_CURRENT = "missing in current"
#: ``note`` of a column with no value left in the batch after dropping NaN and +/-inf (counted as drifted).
NO_VALUES_IN_CURRENT = "no values in current (all NaN/inf/missing)"


class DriftInputError(ValueError):
    """The data or arguments given to the drift engine cannot be checked (message says why)."""


class ProfileError(DriftInputError):
    """A reference profile is unreadable, of an incompatible version, or belongs to something else."""


# ---------------------------------------------------------------------------------------------- types


def _dtype_family(dtype: Any) -> str:
    """Coarse dtype family used to detect schema drift between reference and current."""
    name = str(getattr(dtype, "name", dtype))
    if name.startswith(("int", "uint", "float", "Int", "UInt", "Float")):
        return "numeric"
    if name in ("bool", "boolean"):
        return "bool"
    if name == "category":
        return "category"
    if name in ("object", "string", "str"):
        return "string"
    if name.startswith("datetime"):
        return "datetime"
    return name


def _evidently_column_type(dtype_name: str, n_unique: int, n_non_null: int, first_last_str: bool) -> str:
    """``evidently.core.datasets.infer_column_type`` expressed on precomputed facts."""
    if dtype_name.startswith("float"):
        return NUM
    if dtype_name.startswith("int"):
        return CAT if n_unique <= INTEGER_CARDINALITY_LIMIT else NUM
    if dtype_name in ("string", "str"):
        return TEXT if n_unique > n_non_null * 0.5 else CAT
    if dtype_name == "object":
        if n_non_null == 0 or not first_last_str:
            return "unknown"
        return TEXT if n_unique > n_non_null * 0.5 else CAT
    if dtype_name in ("bool", "category"):
        return CAT
    if dtype_name.startswith("datetime"):
        return "datetime"
    return "unknown"


# -------------------------------------------------------------------------------------- column stats


@dataclass
class ColumnStats:
    """Sufficient statistics of one column after dropping NaN and +/-inf.

    Numeric columns hold the sorted finite values (``values``), compressed to unique values plus
    ``counts`` when that is smaller.  Other columns hold category ``keys`` and their ``counts``.
    """

    name: str
    dtype: str
    n_rows: int
    n_valid: int
    column_type: str
    values: Any = None  # np.ndarray, sorted
    counts: Any = None  # np.ndarray[int64] | None (None: every value once)
    keys: list[Any] | None = None
    n_unique: int = -1
    _std: float | None = field(default=None, repr=False)
    #: string columns: the non-missing values in row order (a list, or the raw object array, filtered
    #: when read); what Evidently's text drift test trains on.  Stored in a profile for text columns.
    _texts: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.n_unique < 0:
            if self.keys is not None:
                self.n_unique = len(self.keys)
            elif self.counts is not None:
                self.n_unique = len(self.values)
            elif self.values is not None:
                self.n_unique = _n_unique_sorted(self.values)

    @property
    def is_numeric(self) -> bool:
        return self.values is not None

    def std(self) -> float:
        """Population standard deviation of the values (cached: the normaliser of ``wasserstein``)."""
        if self._std is None:
            self._std = _std(self)
        return self._std

    @property
    def texts(self) -> list[Any] | None:
        """The non-missing values in row order (string columns), or ``None`` when not kept."""
        if self._texts is None or isinstance(self._texts, list):
            return self._texts
        self._texts = [v for v in self._texts if not _is_missing(v)]
        return self._texts

    def category_counts(self) -> tuple[Any, Any]:
        """(unique keys, counts) for any column; numeric keys come back as a sorted array."""

        if self.keys is not None:
            return self.keys, self.counts
        if self.counts is not None:
            return self.values, self.counts
        return _unique_counts_sorted(self.values)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "dtype": self.dtype,
            "n_rows": self.n_rows,
            "n_valid": self.n_valid,
            "column_type": self.column_type,
        }
        if self.values is not None:
            out["std"] = self.std()
            out["n_unique"] = int(self.n_unique)  # spares a pass over the values when loaded
            out["values"] = _encode_array(self.values)
            out["counts"] = None if self.counts is None else _encode_array(self.counts)
        else:
            out["keys"] = [_json_scalar(k) for k in self.keys or []]
            out["counts"] = [int(c) for c in self.counts]
            if self.column_type == TEXT and self.texts is not None:
                out["texts"] = [_json_scalar(v) for v in self.texts]
        return out

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> ColumnStats:
        import numpy as np

        try:
            stats = cls(
                name=name,
                dtype=str(data["dtype"]),
                n_rows=int(data["n_rows"]),
                n_valid=int(data["n_valid"]),
                column_type=str(data["column_type"]),
            )
            if "values" in data:
                stats.values = _decode_array(data["values"])
                stats.counts = None if data.get("counts") is None else _decode_array(data["counts"])
                stats._std = None if data.get("std") is None else float(data["std"])
                if stats.values.dtype.kind == "f" and not np.isfinite(stats.values).all():
                    raise ValueError("numeric values must be finite (NaN and inf are dropped when profiling)")
                if stats._std is not None and not math.isfinite(stats._std):
                    stats._std = None  # recomputed (stably) from the values
                if stats.counts is None and isinstance(data.get("n_unique"), int) and 0 <= data["n_unique"] <= len(stats.values):
                    stats.n_unique = int(data["n_unique"])
            else:
                stats.keys = list(data["keys"])
                stats.counts = np.asarray(data["counts"], dtype=np.int64)
                if data.get("texts") is not None:
                    stats._texts = list(data["texts"])
            stats.__post_init__()
        except (KeyError, TypeError, ValueError) as err:
            raise ProfileError(f"Column {name!r} of the profile is malformed: {err}") from None
        return stats


def _n_unique_sorted(values: np.ndarray) -> int:
    import numpy as np

    if len(values) == 0:
        return 0
    return int(np.count_nonzero(values[1:] != values[:-1])) + 1


def _unique_counts_sorted(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    if len(values) == 0:
        return values, np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1])))
    counts = np.diff(np.append(starts, len(values))).astype(np.int64)
    return values[starts], counts


def _finite(arr: np.ndarray) -> np.ndarray:
    import numpy as np

    if arr.dtype.kind == "f":
        mask = np.isfinite(arr)
        if not mask.all():
            return arr[mask]
    return arr


def _column_stats(series: pd.Series, name: str, rows: np.ndarray | None = None) -> ColumnStats:
    """Statistics of one column (optionally of the rows ``rows`` only)."""
    import numpy as np

    dtype_name = series.dtype.name
    n_rows = len(series) if rows is None else len(rows)
    if dtype_name.startswith(("int", "float")) and series.dtype.kind in "if":
        arr = series.to_numpy()
        if rows is not None:
            arr = arr[rows]
        arr = np.sort(_finite(arr), kind="quicksort")
        n_valid = len(arr)
        n_unique = _n_unique_sorted(arr)
        stats = ColumnStats(name, dtype_name, n_rows, n_valid, "", n_unique=n_unique)
        if n_unique * 2 <= n_valid:
            stats.values, stats.counts = _unique_counts_sorted(arr)
        else:
            stats.values = arr
        stats.column_type = _evidently_column_type(dtype_name, n_unique, n_valid, False)
        return stats
    if rows is not None:
        series = series.iloc[rows]
    first_last_str = False
    if dtype_name == "object":
        raw = series.to_numpy()
        first = next((v for v in raw if not _is_missing(v)), None)
        last = next((v for v in raw[::-1] if not _is_missing(v)), None)
        first_last_str = isinstance(first, str) and isinstance(last, str)
    if dtype_name.startswith("datetime") or not (
        dtype_name in ("bool", "category", "string", "str") or (dtype_name == "object" and first_last_str)
    ):
        n_non_null = int(series.count())
        col_type = _evidently_column_type(dtype_name, 0, n_non_null, first_last_str)
        return ColumnStats(
            name, dtype_name, n_rows, n_non_null, col_type, keys=[], counts=np.zeros(0, np.int64)
        )
    # value_counts drops missing values; Evidently also drops +/-inf (possible in object columns)
    vc = _object_value_counts(raw) if dtype_name == "object" else None
    if vc is None:
        vc = series.value_counts(sort=False, dropna=True)
    keep = vc.to_numpy() > 0
    keys = [_py_scalar(k) for k in vc.index]
    if dtype_name == "object":
        keep &= np.array([not (isinstance(k, float) and math.isinf(k)) for k in keys], dtype=bool)
    if not keep.all():
        keys = [k for k, flag in zip(keys, keep, strict=True) if flag]
    counts = vc.to_numpy(dtype=np.int64)[keep]
    n_valid = int(counts.sum())
    col_type = _evidently_column_type(dtype_name, len(keys), n_valid, first_last_str)
    stats = ColumnStats(name, dtype_name, n_rows, n_valid, col_type, keys=keys, counts=counts)
    if dtype_name in ("object", "string", "str"):
        stats._texts = raw if dtype_name == "object" else series  # no copy; filtered into a list when read
    return stats


def _object_value_counts(raw: np.ndarray) -> pd.Series | None:
    """Value counts of an object array of few distinct objects, by counting object identities.

    Low-cardinality string columns (parquet/arrow deduplicate strings) hold a few objects many
    times: sorting the object pointers as integers is much cheaper than hashing every row.  Equal
    values held by different objects are merged afterwards.  Returns ``None`` (use pandas) when the
    column has many distinct objects.
    """
    import ctypes

    import numpy as np
    import pandas as pd

    if len(raw) < 10_000 or raw.dtype != object or not raw.flags.c_contiguous:
        return None
    # the object pointers of ``raw`` read as integers (numpy refuses ``view`` on object arrays)
    ptrs = np.ctypeslib.as_array((ctypes.c_ssize_t * len(raw)).from_address(raw.ctypes.data))
    if len(np.unique(ptrs[:4096])) > 256:
        return None
    # a hash count of the pointers: no sorted copy of the column (80 MB at 10M rows)
    by_ptr = pd.Series(ptrs, copy=False).value_counts(sort=False)
    if len(by_ptr) > 4096:
        return None
    merged: dict[Any, int] = {}
    for ptr, count in zip(by_ptr.index.tolist(), by_ptr.tolist(), strict=True):
        # the object is alive (``raw`` references it), so its address can be dereferenced
        value = ctypes.cast(ptr, ctypes.py_object).value
        if not _is_missing(value):
            merged[value] = merged.get(value, 0) + count
    return pd.Series(list(merged.values()), index=pd.Index(list(merged.keys()), dtype=object), dtype=np.int64)


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return not math.isfinite(value)
    try:
        import pandas as pd

        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _py_scalar(value: Any) -> Any:
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _json_scalar(value: Any) -> Any:
    value = _py_scalar(value)
    if isinstance(value, str | bool | int) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return str(value)


def _encode_array(arr: np.ndarray) -> dict[str, Any]:
    import numpy as np

    from mlops_provider.core.profile_store import collect_array

    collected = collect_array(arr)  # a binary save stores the array itself, column by column
    if collected is not None:
        return collected
    arr = np.ascontiguousarray(arr)
    return {
        "dtype": arr.dtype.newbyteorder("<").str,
        "b64": base64.b64encode(arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()).decode(
            "ascii"
        ),
    }


def _decode_array(data: Mapping[str, Any] | np.ndarray) -> np.ndarray:
    import numpy as np

    if isinstance(data, np.ndarray):  # read from a binary profile
        return data
    arr = np.frombuffer(base64.b64decode(data["b64"]), dtype=np.dtype(data["dtype"]))
    return arr.astype(arr.dtype.newbyteorder("="), copy=False)


# -------------------------------------------------------------------------------------------- profile


@dataclass
class ReferenceProfile:
    """Reference statistics that a drift check needs instead of the reference data.

    :param columns: per-column statistics, in the reference's column order.
    :param n_rows: rows the statistics were computed from.
    :param source_rows: rows of the reference data (larger than ``n_rows`` when it was sampled).
    :param sampled: whether a deterministic sample (``seed``) of ``n_rows`` rows was profiled.
    :param metadata: free JSON metadata, e.g. ``{"model_name": ..., "model_version": ...}``.
    """

    columns: dict[str, ColumnStats]
    n_rows: int
    source_rows: int
    sampled: bool = False
    seed: int = 0
    max_rows: int = DEFAULT_MAX_ROWS
    metadata: dict[str, Any] = field(default_factory=dict)
    version: int = PROFILE_VERSION
    #: sha256 of the binary payload this profile was read from or saved as (``None``: not binary).
    digest: str | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PROFILE_FORMAT,
            "version": self.version,
            "n_rows": self.n_rows,
            "source_rows": self.source_rows,
            "sampled": self.sampled,
            "seed": self.seed,
            "max_rows": self.max_rows,
            "metadata": self.metadata,
            "columns": {name: stats.to_dict() for name, stats in self.columns.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReferenceProfile:
        if not isinstance(data, Mapping) or data.get("format") != PROFILE_FORMAT:
            found = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise ProfileError(
                f"Not a drift reference profile (format {found!r}, expected {PROFILE_FORMAT!r})"
            )
        version = data.get("version")
        if version != PROFILE_VERSION:
            raise ProfileError(
                f"Drift profile format version {version!r} is not supported by this engine "
                f"(it reads version {PROFILE_VERSION}); rebuild the profile from the reference data"
            )
        try:
            columns = {str(n): ColumnStats.from_dict(str(n), c) for n, c in data["columns"].items()}
            return cls(
                columns=columns,
                n_rows=int(data["n_rows"]),
                source_rows=int(data["source_rows"]),
                sampled=bool(data["sampled"]),
                seed=int(data.get("seed", 0)),
                max_rows=int(data.get("max_rows", DEFAULT_MAX_ROWS)),
                metadata=dict(data.get("metadata") or {}),
                version=int(version),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ProfileError(f"Drift profile is malformed: {err!r}") from None

    def save(self, path: str | Path) -> Path:
        """Write the profile: binary (compressed, with a sha256) unless ``path`` ends in ``.json``.

        The binary form (:mod:`mlops_provider.core.profile_store`) is about half the size of the JSON
        form and loads in milliseconds; ``.json`` writes the older, human-readable form.  Both are
        written to a temporary file and renamed into place.
        """
        from mlops_provider.core import profile_store

        path = Path(path)
        if path.suffix.lower() == ".json":
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with tmp.open("w", encoding="utf-8") as fh:
                json.dump(self.to_dict(), fh, separators=(",", ":"))
            os.replace(tmp, path)
            return path
        with profile_store.collecting_arrays() as arrays:
            tree = self.to_dict()
        self.digest = profile_store.write_profile_tree(tree, arrays, path, PROFILE_FORMAT)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ReferenceProfile:
        """Read a profile written by :meth:`save`, binary or JSON (the format is read from the file).

        A binary profile whose payload does not match its sha256 raises :class:`ProfileError`
        (``checksum mismatch``) naming the file.
        """
        from mlops_provider.core import profile_store

        if profile_store.is_binary_profile(path):
            tree, digest = profile_store.read_profile_tree(path, PROFILE_FORMAT)
            profile = cls.from_dict(tree)
            profile.digest = digest
            return profile
        try:
            with Path(path).open(encoding="utf-8") as fh:
                data = json.load(fh)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ProfileError(f"Drift profile {path} is not valid JSON (nor a binary profile): {err}") from None
        return cls.from_dict(data)

    def check_model(self, model_name: str) -> None:
        """Raise :class:`ProfileError` when the profile was built for a different registered model."""
        owner = self.metadata.get("model_name")
        if owner is not None and owner != model_name:
            raise ProfileError(
                f"Drift profile belongs to model {owner!r}, not {model_name!r}; "
                "it cannot be used as this model's reference"
            )


def _sample_rows(n_rows: int, max_rows: int | None, seed: int) -> np.ndarray | None:
    import numpy as np

    cap = DEFAULT_MAX_ROWS if max_rows is None else int(max_rows)
    if cap <= 0:
        raise DriftInputError(f"max_rows must be positive, got {max_rows!r}")
    if n_rows <= cap:
        return None
    return np.sort(np.random.default_rng(seed).choice(n_rows, size=cap, replace=False))


def _select_columns(labels: Mapping[str, Any], columns: Iterable[Any] | None) -> list[str]:
    if columns is None:
        return list(labels)
    names = [str(c) for c in columns]
    missing = [c for c in names if c not in labels]
    if missing:
        raise DriftInputError(f"Columns {missing} are not in the reference data (it has {_names(labels)})")
    return names


def _check_frame(df: Any, what: str) -> dict[str, Any]:
    """Refuse what is not a DataFrame with unique column names; returns ``{str(label): label}``.

    Columns are named by ``str(label)`` everywhere (profiles are JSON, whose keys are strings), so a
    frame with integer labels is checked the same way against a DataFrame or a stored profile.
    """
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise DriftInputError(f"The {what} data must be a pandas DataFrame, got {type(df).__name__}")
    labels: dict[str, Any] = {}
    dupes = set()
    for label in df.columns:
        name = str(label)
        if name in labels:
            dupes.add(name)
        labels[name] = label
    if dupes:
        raise DriftInputError(
            f"The {what} data has duplicate column names (compared as strings): {sorted(dupes)}"
        )
    return labels


def _names(names: Iterable[Any], limit: int = 20) -> str:
    """``['a', 'b', ... (+N more)]`` for error messages."""
    names = [str(n) for n in names]
    shown = ", ".join(repr(n) for n in names[:limit])
    more = f", ... (+{len(names) - limit} more)" if len(names) > limit else ""
    return f"[{shown}{more}]"


def _no_common_columns(ref_names: list[str], cur_names: list[str]) -> DriftInputError:
    if len(cur_names) == 1 and any(sep in cur_names[0] for sep in ";,\t|"):
        hint = (
            f" The batch has a single column {cur_names[0]!r}: it was probably read as CSV with the wrong "
            "delimiter (CSV files are read with ',' and *.tsv files with tabs; check the file's separator)."
        )
    else:
        hint = " The usual cause is a CSV read with the wrong delimiter, or a batch of another table."
    return DriftInputError(
        f"The current batch shares no column with the reference, so nothing can be checked for drift. "
        f"Reference columns: {_names(ref_names)}; current columns: {_names(cur_names)}.{hint}"
    )


def build_profile(
    reference_df: pd.DataFrame,
    columns: Iterable[str] | None = None,
    max_rows: int | None = None,
    seed: int = 0,
    metadata: Mapping[str, Any] | None = None,
    workers: int | None = None,
) -> ReferenceProfile:
    """
    Compute the reference statistics a drift check needs.

    :param reference_df: reference data (normally the champion's training features).
    :param columns: columns to profile (default: all).
    :param max_rows: exact up to this many rows (default :data:`DEFAULT_MAX_ROWS`); above it a
        deterministic sample of ``max_rows`` rows (``seed``) is profiled and the profile says so.
    :param seed: seed of the sample.
    :param metadata: JSON metadata kept with the profile (model name and version, data digest...).
    :param workers: threads used over columns (default ``min(2, cpu_count)``).
    """
    labels = _check_frame(reference_df, "reference")
    if len(reference_df) == 0:
        raise DriftInputError("The reference data has no rows; a drift profile needs at least one")
    names = _select_columns(labels, columns)
    rows = _sample_rows(len(reference_df), max_rows, seed)
    stats = dict(
        zip(
            names,
            _map(lambda n: _column_stats(reference_df[labels[n]], n, rows), names, workers),
            strict=True,
        )
    )
    return ReferenceProfile(
        columns=stats,
        n_rows=len(reference_df) if rows is None else len(rows),
        source_rows=len(reference_df),
        sampled=rows is not None,
        seed=seed,
        max_rows=DEFAULT_MAX_ROWS if max_rows is None else int(max_rows),
        metadata=dict(metadata or {}),
    )


# -------------------------------------------------------------------------------------------- results


@dataclass
class ColumnDrift:
    """Outcome for one column; ``score`` is ``None`` when the column was not tested."""

    column: str
    column_type: str
    method: str | None
    score: float | None
    threshold: float | None
    drifted: bool
    reference_rows: int
    current_rows: int
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "type": self.column_type,
            "method": self.method,
            "score": self.score,
            "threshold": self.threshold,
            "drifted": self.drifted,
        }
        if self.note:
            out["note"] = self.note
        return out


@dataclass
class DriftResult:
    """Outcome of a drift check; :meth:`to_summary` is the small JSON form for XCom and events."""

    columns: dict[str, ColumnDrift]
    drift_share: float
    reference_rows: int
    current_rows: int
    missing_columns: list[str] = field(default_factory=list)
    extra_columns: list[str] = field(default_factory=list)
    schema_drift: list[dict[str, Any]] = field(default_factory=list)
    skipped_columns: dict[str, str] = field(default_factory=dict)
    sampled: bool = False
    reference_source_rows: int = 0

    @property
    def number_of_columns(self) -> int:
        return len(self.columns)

    @property
    def drifted_columns(self) -> list[str]:
        return [name for name, col in self.columns.items() if col.drifted]

    @property
    def number_of_drifted_columns(self) -> int:
        return len(self.drifted_columns)

    @property
    def share_of_drifted_columns(self) -> float:
        return self.number_of_drifted_columns / self.number_of_columns if self.columns else 0.0

    @property
    def dataset_drift(self) -> bool:
        return bool(self.columns) and self.share_of_drifted_columns >= self.drift_share

    @property
    def untested_columns(self) -> dict[str, str]:
        """Every reference column without a test score, with the reason (drifted or skipped)."""
        out = {name: col.note or "not tested" for name, col in self.columns.items() if col.score is None}
        out.update(self.skipped_columns)
        return out

    def not_tested(self, limit: int = 20) -> str:
        """``"3 of 20 columns not tested: a (missing in current), ..."``, or ``""`` when every column was.

        Counts the reference columns; batch columns the reference lacks are named after them.
        """
        untested = self.untested_columns
        parts = []
        if untested:
            total = len(self.columns) + len(self.skipped_columns)
            named = ", ".join(f"{n} ({why})" for n, why in list(untested.items())[:limit])
            more = f", ... (+{len(untested) - limit} more)" if len(untested) > limit else ""
            parts.append(f"{len(untested)} of {total} columns not tested: {named}{more}")
        if self.extra_columns:
            shown = ", ".join(self.extra_columns[:limit])
            more = f", ... (+{len(self.extra_columns) - limit} more)" if len(self.extra_columns) > limit else ""
            parts.append(f"{len(self.extra_columns)} batch column(s) not in the reference: {shown}{more}")
        return "; ".join(parts)

    def to_summary(self) -> dict[str, Any]:
        return {
            "not_tested": self.not_tested(),
            "dataset_drift": self.dataset_drift,
            "drift_share": self.drift_share,
            "number_of_columns": self.number_of_columns,
            "number_of_drifted_columns": self.number_of_drifted_columns,
            "share_of_drifted_columns": self.share_of_drifted_columns,
            "drifted_columns": self.drifted_columns,
            "columns": {name: col.to_dict() for name, col in self.columns.items()},
            "reference_rows": self.reference_rows,
            "reference_source_rows": self.reference_source_rows,
            "current_rows": self.current_rows,
            "missing_columns": self.missing_columns,
            "extra_columns": self.extra_columns,
            "schema_drift": self.schema_drift,
            "skipped_columns": self.skipped_columns,
            "sampled": self.sampled,
        }


# -------------------------------------------------------------------------------------------- tests


def default_method(column_type: str, reference_rows: int, n_values: int) -> str:
    """``_get_default_stattest`` of Evidently 0.7 (``n_values``: unique values of both sides)."""
    if column_type == TEXT:
        return "perc_text_content_drift" if reference_rows <= SMALL_REFERENCE_ROWS else "abs_text_content_drift"
    if reference_rows <= SMALL_REFERENCE_ROWS:
        if column_type == NUM and n_values > 5:
            return "ks"
        return "chisquare" if n_values > 2 else "z"
    if column_type == NUM and n_values > 5:
        return "wasserstein"
    return "jensenshannon"


def is_drifted(method: str, score: float, threshold: float) -> bool:
    """Evidently's comparison for ``method``: p-values drift below the threshold, distances at or above."""
    rule = METHODS[method][1]
    if rule == "le":
        return bool(score <= threshold)
    if rule == "lt":
        return bool(score < threshold)
    return bool(score >= threshold)


def _expand(stats: ColumnStats) -> np.ndarray:
    import numpy as np

    return stats.values if stats.counts is None else np.repeat(stats.values, stats.counts)


def _aligned_counts(ref: ColumnStats, cur: ColumnStats) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """Counts of reference and current over the union of their values (unseen values count 0)."""
    import numpy as np

    rk, rc = ref.category_counts()
    ck, cc = cur.category_counts()
    if not isinstance(rk, list) and not isinstance(ck, list):
        keys = np.union1d(rk, ck)
        ra = np.zeros(len(keys), np.int64)
        ca = np.zeros(len(keys), np.int64)
        ra[np.searchsorted(keys, rk)] = rc
        ca[np.searchsorted(keys, ck)] = cc
        return keys.tolist(), ra, ca
    rd = dict(zip(_as_list(rk), (int(c) for c in rc), strict=True))
    cd = dict(zip(_as_list(ck), (int(c) for c in cc), strict=True))
    # Reference order, then values only the current batch has: deterministic whatever the hash seed,
    # so sums over the categories (chi-square, Jensen-Shannon, PSI) are the same in every process.
    keys = list(rd) + [k for k in cd if k not in rd]
    return (
        keys,
        np.array([rd.get(k, 0) for k in keys], dtype=np.int64),
        np.array([cd.get(k, 0) for k in keys], dtype=np.int64),
    )


def _as_list(keys: Any) -> list[Any]:
    return keys if isinstance(keys, list) else keys.tolist()


def _n_values(ref: ColumnStats, cur: ColumnStats) -> int:
    """Unique non-missing values over both sides (``pd.concat([ref, cur]).nunique()``).

    Exact up to 6; above that only "more than 5" matters to the method choice.
    """
    import numpy as np

    if ref.n_unique > 5 or cur.n_unique > 5:
        return max(ref.n_unique, cur.n_unique)
    if ref.is_numeric and cur.is_numeric:
        return len(np.union1d(ref.category_counts()[0], cur.category_counts()[0]))
    rk, _ = ref.category_counts()
    ck, _ = cur.category_counts()
    return len(set(_as_list(rk)) | set(_as_list(ck)))


def _chisquare(ref: ColumnStats, cur: ColumnStats) -> float:
    import numpy as np
    from scipy.stats import chisquare

    _, rc, cc = _aligned_counts(ref, cur)
    k_norm = cur.n_valid / ref.n_valid
    f_exp = rc * k_norm
    # a category unseen in the reference has expected frequency 0: statistic inf, p-value 0 (as Evidently)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(chisquare(cc, f_exp)[1])


def _z_test(ref: ColumnStats, cur: ColumnStats) -> float:
    import numpy as np
    from scipy.stats import norm

    keys, rc, cc = _aligned_counts(ref, cur)
    if np.count_nonzero(rc) == 1 and np.count_nonzero(cc) == 1 and np.argmax(rc) == np.argmax(cc):
        return 1.0
    first = sorted(keys)[0]
    idx = keys.index(first)
    n1, n2 = ref.n_valid, cur.n_valid
    p1 = float(n1 - rc[idx]) / n1
    p2 = float(n2 - cc[idx]) / n2
    big_p = float(p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / np.sqrt(big_p * (1 - big_p) * (1.0 / n1 + 1.0 / n2))
    return float(2 * (1 - norm.cdf(np.abs(z))))


def _sturges_edges(lo: Any, hi: Any, size: int, dtype: Any) -> np.ndarray:
    """``np.histogram_bin_edges(data, bins="sturges")`` from the data's min, max, size and dtype."""
    import numpy as np

    is_int = np.issubdtype(dtype, np.integer)
    ptp = (int(hi) - int(lo)) if is_int else hi - lo
    width = ptp / (np.log2(size) + 1.0)
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    delta = (int(hi) - int(lo)) if is_int else hi - lo
    if width:
        if is_int and width < 1:
            width = 1
        n_bins = int(np.ceil(delta / width))
    else:
        n_bins = 1
    bin_type = np.result_type(lo, hi, np.empty(0, dtype))
    if np.issubdtype(bin_type, np.integer):
        bin_type = np.result_type(bin_type, float)
    return np.linspace(lo, hi, n_bins + 1, endpoint=True, dtype=bin_type)


def _hist_sorted(stats: ColumnStats, edges: np.ndarray) -> np.ndarray:
    """``np.histogram(data, edges)[0]`` from sorted values (the same searchsorted rule numpy uses)."""
    import numpy as np

    idx = np.concatenate(
        (
            np.searchsorted(stats.values, edges[:-1], "left"),
            np.searchsorted(stats.values, edges[-1:], "right"),
        )
    )
    if stats.counts is None:
        cum = idx
    else:
        cum = np.concatenate(([0], np.cumsum(stats.counts)))[idx]
    return np.diff(cum)


def _binned_percents(
    ref: ColumnStats, cur: ColumnStats, column_type: str, fill_zeroes: bool
) -> tuple[Any, Any]:
    """``evidently.legacy.calculations.stattests.utils.get_binned_data``."""
    import numpy as np

    if column_type == NUM and ref.is_numeric and cur.is_numeric and ref.n_unique > 20:
        lo = min(ref.values[0], cur.values[0])
        hi = max(ref.values[-1], cur.values[-1])
        dtype = np.result_type(ref.values.dtype, cur.values.dtype)
        edges = _sturges_edges(lo, hi, ref.n_valid + cur.n_valid, dtype)
        ref_p = _hist_sorted(ref, edges) / ref.n_valid
        cur_p = _hist_sorted(cur, edges) / cur.n_valid
    else:
        _, rc, cc = _aligned_counts(ref, cur)
        ref_p = rc / ref.n_valid
        cur_p = cc / cur.n_valid
    if fill_zeroes:
        for arr in (ref_p, cur_p):
            smallest = arr[arr != 0].min()
            np.place(arr, arr == 0, smallest / 10**6 if smallest <= 0.0001 else 0.0001)
    return ref_p, cur_p


def _jensenshannon(ref: ColumnStats, cur: ColumnStats, column_type: str) -> float:
    from scipy.spatial import distance

    ref_p, cur_p = _binned_percents(ref, cur, column_type, False)
    return float(distance.jensenshannon(ref_p, cur_p))


def _psi(ref: ColumnStats, cur: ColumnStats, column_type: str) -> float:
    import numpy as np

    ref_p, cur_p = _binned_percents(ref, cur, column_type, True)
    return float(np.sum((ref_p - cur_p) * np.log(ref_p / cur_p)))


def _ks(ref: ColumnStats, cur: ColumnStats) -> float:
    from scipy.stats import ks_2samp

    return float(ks_2samp(_expand(ref), _expand(cur))[1])


def _std(stats: ColumnStats) -> float:
    """Population standard deviation; values beyond ``2**500`` are scaled by a power of two first.

    The standard deviation never exceeds the largest absolute value, so it is finite when the values
    are, while ``(v - mean) ** 2`` overflows near +/-1e308.
    """
    big = _magnitude(stats) if stats.is_numeric else 0.0
    if big > _RESCALE_ABOVE:
        exponent = math.frexp(big)[1]
        return math.ldexp(_std(_rescaled(stats, exponent)), exponent)
    return _plain_std(stats)


def _plain_std(stats: ColumnStats) -> float:
    import numpy as np

    if len(stats.values) == 0:
        return 0.0  # an empty column (never tested: it is drifted or skipped before any score)
    if stats.counts is None:
        return float(np.std(stats.values, dtype=np.float64))
    values = stats.values.astype(np.float64, copy=False)
    n = stats.n_valid
    mean = np.dot(values, stats.counts) / n
    return float(np.sqrt(np.dot((values - mean) ** 2, stats.counts) / n))


def _wasserstein_norm(ref: ColumnStats, cur: ColumnStats, floor: float = 0.001) -> float:
    """``scipy.stats.wasserstein_distance(ref, cur) / max(std(ref), 0.001)`` from sorted values.

    ``floor`` is ``0.001`` scaled like the values when :func:`_rescaled` scaled them.
    """
    distance = _wasserstein_sorted(ref.values, ref.counts, cur.values, cur.counts)
    return distance / max(ref.std(), floor)


def _magnitude(stats: ColumnStats) -> float:
    """Largest absolute value of a numeric column (its values are sorted)."""
    if not len(stats.values) or stats.values.dtype.kind != "f":
        return 0.0
    return max(abs(float(stats.values[0])), abs(float(stats.values[-1])))


def _rescaled(stats: ColumnStats, exponent: int) -> ColumnStats:
    """A copy of a numeric column with every value multiplied by ``2 ** -exponent`` (exact in binary)."""
    import numpy as np

    return ColumnStats(
        stats.name,
        stats.dtype,
        stats.n_rows,
        stats.n_valid,
        stats.column_type,
        values=np.ldexp(stats.values.astype(np.float64), -exponent),
        counts=stats.counts,
        n_unique=stats.n_unique,
    )


def _wasserstein_sorted(u: np.ndarray, u_counts: Any, v: np.ndarray, v_counts: Any) -> float:
    """First Wasserstein distance of two sorted samples (values with optional repeat counts).

    Uses ``W1 = integral over t in (0, 1] of |Q_u(t) - Q_v(t)|`` (Q: quantile functions), whose
    breakpoints ``i/n_u`` and ``j/n_v`` merge by integer arithmetic, so no sort or search over the
    data is needed; this equals SciPy's ``integral |F_u - F_v| dx`` up to rounding.
    """
    import numpy as np

    n_u = len(u) if u_counts is None else int(u_counts.sum())
    n_v = len(v) if v_counts is None else int(v_counts.sum())
    u = u.astype(np.float64, copy=False)
    v = v.astype(np.float64, copy=False)
    if u_counts is None and v_counts is None:
        lcm = math.lcm(n_u, n_v)
        if lcm in (n_u, n_v) and n_u != n_v:
            return _wasserstein_nested(u, v) if lcm == n_v else _wasserstein_nested(v, u)
        if lcm <= 2 * (n_u + n_v):
            # both quantile functions are constant on the lcm equal pieces of (0, 1]
            diff = np.repeat(u, lcm // n_u) if lcm != n_u else u.copy()
            diff -= np.repeat(v, lcm // n_v) if lcm != n_v else v
            np.abs(diff, out=diff)
            return float(diff.mean())
    # breakpoints of both quantile functions on the common grid of 1 / (n_u * n_v)
    a = (
        np.arange(1, n_u + 1, dtype=np.int64) if u_counts is None else np.cumsum(u_counts, dtype=np.int64)
    ) * n_v
    b = (
        np.arange(1, n_v + 1, dtype=np.int64) if v_counts is None else np.cumsum(v_counts, dtype=np.int64)
    ) * n_u
    if u_counts is None:
        pos_b = b // n_v  # how many of a are <= each b (a[i] = (i + 1) * n_v)
    else:
        pos_b = np.searchsorted(a, b, "right")
    pos_b += np.arange(len(b), dtype=np.int64)
    n_total = len(a) + len(b)
    is_b = np.zeros(n_total, dtype=bool)
    is_b[pos_b] = True
    grid = np.empty(n_total, dtype=np.int64)
    grid[pos_b] = b
    grid[~is_b] = a
    lengths = np.diff(grid, prepend=0).astype(np.float64)
    del grid
    iv = np.cumsum(is_b, dtype=np.int64)
    iv -= is_b  # b breakpoints before each position = index of v's block
    iu = np.arange(n_total, dtype=np.int64)
    iu -= iv  # a breakpoints before each position = index of u's block
    np.minimum(iu, len(u) - 1, out=iu)
    np.minimum(iv, len(v) - 1, out=iv)
    gap = u[iu]
    del iu
    gap -= v[iv]
    del iv
    np.abs(gap, out=gap)
    return float(np.dot(gap, lengths) / (float(n_u) * float(n_v)))


def _wasserstein_nested(small: np.ndarray, large: np.ndarray, block: int = 1 << 20) -> float:
    """W1 of two sorted samples when ``len(small)`` divides ``len(large)`` (e.g. a 1M reference, a 10M batch).

    Quantile piece ``i`` of ``small`` covers pieces ``i*k .. i*k+k-1`` of ``large`` (``k`` the ratio), so
    ``W1 = mean(|large[i*k + j] - small[i]|)``, summed block by block: no array of the batch's size.
    """
    import numpy as np

    k = len(large) // len(small)
    rows = max(1, block // k)
    total = 0.0
    for start in range(0, len(small), rows):
        stop = min(start + rows, len(small))
        diff = large[start * k : stop * k].reshape(stop - start, k) - small[start:stop, None]
        np.abs(diff, out=diff)
        total += float(diff.sum())
    return total / len(large)


def run_test(method: str, ref: ColumnStats, cur: ColumnStats, column_type: str) -> float:
    """Score of ``method`` for one column (p-value or distance).

    Numeric values beyond ``2**500`` in magnitude (squares and differences of values near +/-1e308
    overflow to inf, and inf/inf is NaN) are first multiplied by a power of two that brings them into
    [-1, 1].  Every method is then unchanged: ranks, counts and Sturges bins do not move under an exact
    binary scaling, and the normed Wasserstein distance is computed as ``W1' / max(std', 0.001 * 2**-k)``.
    """
    floor = 0.001
    if ref.is_numeric and cur.is_numeric:
        big = max(_magnitude(ref), _magnitude(cur))
        if big > _RESCALE_ABOVE:
            exponent = math.frexp(big)[1]  # big < 2**exponent
            ref, cur = _rescaled(ref, exponent), _rescaled(cur, exponent)
            floor = math.ldexp(0.001, -exponent)
    if method == "wasserstein":
        return _wasserstein_norm(ref, cur, floor)
    if method == "ks":
        return _ks(ref, cur)
    if method == "chisquare":
        return _chisquare(ref, cur)
    if method == "z":
        return _z_test(ref, cur)
    if method == "jensenshannon":
        return _jensenshannon(ref, cur, column_type)
    if method == "psi":
        return _psi(ref, cur, column_type)
    raise DriftInputError(f"Unknown drift method {method!r}; use one of {sorted(METHODS)}")


# -------------------------------------------------------------------------------------------- check


def _validate_overrides(
    methods: Mapping[str, str] | None, thresholds: Mapping[str, float] | None, drift_share: float
) -> tuple[dict[str, str], dict[str, float]]:
    methods = dict(methods or {})
    thresholds = dict(thresholds or {})
    bad = {c: m for c, m in methods.items() if m not in METHODS}
    if bad:
        raise DriftInputError(f"Unknown drift method(s) {bad}; use one of {sorted(METHODS)}")
    for col, value in thresholds.items():
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            raise DriftInputError(f"Threshold of column {col!r} must be a finite number, got {value!r}")
    if not isinstance(drift_share, int | float) or not 0 < drift_share <= 1:
        raise DriftInputError(f"drift_share must be in (0, 1], got {drift_share!r}")
    return methods, thresholds


def check_drift(
    reference: ReferenceProfile | pd.DataFrame,
    current_df: pd.DataFrame,
    column_methods: Mapping[str, str] | None = None,
    column_thresholds: Mapping[str, float] | None = None,
    drift_share: float = 0.5,
    *,
    max_rows: int | None = None,
    seed: int = 0,
    workers: int | None = None,
    columns: Iterable[Any] | None = None,
) -> DriftResult:
    """
    Compare ``current_df`` with a reference profile (or reference DataFrame) column by column.

    With the defaults the per-column methods, thresholds and verdicts are those of Evidently 0.7's
    ``DataDriftPreset``.  Columns are checked in the reference's order.  A reference column missing
    from the batch counts as drifted (``note: "missing in current"``, also listed in
    ``missing_columns``); batch columns the reference lacks are listed in ``extra_columns``.

    :raises DriftInputError: bad arguments, an empty batch, a batch sharing no column with the
        reference, no column that could be tested, or a score that came out NaN.

    :param reference: a :class:`ReferenceProfile`, or a DataFrame (profiled on the fly, one column
        at a time, so the profile never holds all columns at once).
    :param current_df: the batch to check.
    :param column_methods: per-column method override (``ks``, ``chisquare``, ``z``, ``wasserstein``,
        ``jensenshannon``, ``psi``).
    :param column_thresholds: per-column threshold override.
    :param drift_share: dataset drift when the share of drifted columns is at least this.
    :param max_rows: sampling cap when ``reference`` is a DataFrame (see :func:`build_profile`).
    :param seed: seed of that sample.
    :param workers: threads used over columns (default ``min(2, cpu_count)``).
    :param columns: check only these reference columns (default: all); one the reference lacks raises.
    """
    import pandas as pd

    methods, thresholds = _validate_overrides(column_methods, column_thresholds, drift_share)
    cur_labels = _check_frame(current_df, "current")
    if len(current_df) == 0:
        raise DriftInputError("The current batch has no rows; there is nothing to check for drift")
    if isinstance(reference, pd.DataFrame):
        ref_labels = _check_frame(reference, "reference")
        if len(reference) == 0:
            raise DriftInputError("The reference data has no rows; a drift check needs at least one")
        ref_names = list(ref_labels)
        rows = _sample_rows(len(reference), max_rows, seed)
        ref_get = {n: (lambda n=n: _column_stats(reference[ref_labels[n]], n, rows)) for n in ref_names}
        ref_rows = len(reference) if rows is None else len(rows)
        source_rows, sampled = len(reference), rows is not None
    elif isinstance(reference, ReferenceProfile):
        # the model's outputs stored with the profile are checked by the prediction drift check only
        ref_names = [n for n in reference.columns if not is_output_column(n)]
        ref_get = {n: (lambda s=s: s) for n, s in reference.columns.items()}
        ref_rows, source_rows, sampled = reference.n_rows, reference.source_rows, reference.sampled
    else:
        raise DriftInputError(
            f"reference must be a ReferenceProfile or a pandas DataFrame, got {type(reference).__name__}"
        )
    if columns is not None:
        ref_names = _select_columns(dict.fromkeys(ref_names), columns)
    cur_get = {n: (lambda n=n: _column_stats(current_df[cur_labels[n]], n)) for n in cur_labels}
    result = DriftResult(
        columns={},
        drift_share=float(drift_share),
        reference_rows=ref_rows,
        current_rows=len(current_df),
        sampled=sampled,
        reference_source_rows=source_rows,
    )
    return _check_columns(result, ref_names, ref_get, list(cur_labels), cur_get, methods, thresholds, workers)


def _check_columns(
    result: DriftResult,
    ref_names: list[str],
    ref_get: Mapping[str, Any],
    cur_names: list[str],
    cur_get: Mapping[str, Any],
    methods: Mapping[str, str],
    thresholds: Mapping[str, float],
    workers: int | None,
) -> DriftResult:
    """Check every reference column (callables give the statistics) and fill ``result``, in reference order.

    Shared by :func:`check_drift` and the partitioned check.  A reference column missing from the batch
    counts as drifted ("missing in current"); a batch sharing no column with the reference, or leaving
    no column that could be tested, raises :class:`DriftInputError`.
    """
    unknown = sorted((set(methods) | set(thresholds)) - set(ref_names))
    if unknown:
        raise DriftInputError(f"Method/threshold overrides name columns not in the reference: {unknown}")
    present = set(cur_names)
    if not present & set(ref_names):
        raise _no_common_columns(ref_names, cur_names)
    ref_set = set(ref_names)
    result.missing_columns = [c for c in ref_names if c not in present]
    result.extra_columns = [c for c in cur_names if c not in ref_set]

    def check_one(name: str) -> DriftResult:
        part = DriftResult(columns={}, drift_share=result.drift_share, reference_rows=0, current_rows=0)
        ref = ref_get[name]()
        if name not in present:
            part.columns[name] = ColumnDrift(
                name, ref.column_type, None, None, None, True, ref.n_valid, 0, note=MISSING_IN_CURRENT
            )
            return part
        _check_column(part, name, ref, cur_get[name](), methods.get(name), thresholds.get(name))
        return part

    # statistics of a missing column are cheap for a profile; a DataFrame reference computes them too,
    # for the reference type and row count shown in the summary
    for part in _map(check_one, ref_names, workers):
        result.columns.update(part.columns)
        result.schema_drift.extend(part.schema_drift)
        result.skipped_columns.update(part.skipped_columns)
    if not result.columns:
        raise DriftInputError(
            f"None of the {len(ref_names)} reference columns could be tested for drift: "
            + "; ".join(f"{n}: {why}" for n, why in list(result.skipped_columns.items())[:20])
        )
    return result


def _default_workers() -> int:
    return max(1, min(DEFAULT_WORKERS, os.cpu_count() or 1))


def _map(fn: Any, items: list[Any], workers: int | None) -> Iterator[Any]:
    """``map`` over columns, in threads (numpy's sorts and SciPy release the GIL); order is kept."""
    workers = _default_workers() if workers is None else max(1, int(workers))
    if workers == 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="drift") as pool:
        yield from pool.map(fn, items)


def _quiet_floats() -> Any:
    """numpy's float warnings off: a non-finite score is checked explicitly after the test."""
    import numpy as np

    return np.errstate(over="ignore", invalid="ignore", divide="ignore")


def _check_column(
    result: DriftResult,
    name: str,
    ref: ColumnStats,
    cur: ColumnStats,
    method: str | None,
    threshold: float | None,
) -> None:
    ref_family, cur_family = _dtype_family(ref.dtype), _dtype_family(cur.dtype)
    column_type = cur.column_type  # Evidently types columns from the current data
    if ref.n_valid == 0:
        result.skipped_columns[name] = "no values in the reference data (all NaN/inf/missing)"
        return
    if cur.n_valid == 0:
        # Evidently raises on such a column; here it is a drifted column, never a silent skip
        result.columns[name] = ColumnDrift(
            name, ref.column_type, None, None, None, True, ref.n_valid, 0, note=NO_VALUES_IN_CURRENT
        )
        return
    if ref.dtype != cur.dtype:
        compatible = ref_family == cur_family or (
            column_type == CAT and {ref_family, cur_family} <= {"string", "category", "bool"}
        )
        result.schema_drift.append(
            {
                "column": name,
                "reference_dtype": ref.dtype,
                "current_dtype": cur.dtype,
                "compatible": compatible,
            }
        )
        if not compatible:
            result.columns[name] = ColumnDrift(
                name,
                column_type,
                None,
                None,
                None,
                True,
                ref.n_valid,
                cur.n_valid,
                note=f"dtype changed from {ref.dtype} to {cur.dtype}",
            )
            return
    if column_type == TEXT:
        _check_text_column(result, name, ref, cur, method, threshold)
        return
    if column_type != TEXT and method in _TEXT_ONLY:
        raise DriftInputError(
            f"Method {method!r} needs a text column; {name!r} is "
            f"{ {NUM: 'numerical', CAT: 'categorical'}.get(column_type, column_type) } in the current batch"
        )
    if column_type not in (NUM, CAT):
        result.skipped_columns[name] = f"dtype {cur.dtype} is not checked by Evidently's defaults"
        return
    if column_type == NUM and not (ref.is_numeric and cur.is_numeric):
        result.skipped_columns[name] = (
            f"column is numerical in the current data but {ref.dtype} in the reference"
        )
        return
    if method is None:
        method = default_method(column_type, ref.n_valid, _n_values(ref, cur))
    elif method in _NUMERIC_ONLY and column_type != NUM:
        raise DriftInputError(
            f"Method {method!r} needs a numerical column; {name!r} is categorical "
            f"(dtype {cur.dtype}, {cur.n_unique} unique values in the current batch)"
        )
    elif method in _CATEGORICAL_ONLY and column_type == NUM:
        raise DriftInputError(
            f"Method {method!r} needs a categorical column; {name!r} is numerical (dtype {cur.dtype}, "
            f"{cur.n_unique} unique values in the current batch; Evidently refuses it too). "
            f"Use 'ks', 'wasserstein', 'jensenshannon' or 'psi', or cast the column to str/category"
        )
    if threshold is None:
        threshold = METHODS[method][0]
    try:
        with _quiet_floats():
            score = run_test(method, ref, cur, column_type)
    except (ValueError, ArithmeticError) as err:
        raise DriftInputError(
            f"Drift score of column {name!r} with method {method!r} could not be computed: {err}"
        ) from None
    if math.isnan(score):
        raise DriftInputError(
            f"Drift score of column {name!r} with method {method!r} is NaN "
            f"({ref.n_valid} reference and {cur.n_valid} current values); it cannot be read as a verdict"
        )
    note = None
    if math.isinf(score):
        note = f"{method} score exceeds the float range"
    result.columns[name] = ColumnDrift(
        name,
        column_type,
        method,
        score,
        float(threshold),
        is_drifted(method, score, threshold),
        ref.n_valid,
        cur.n_valid,
        note=note,
    )


# -------------------------------------------------------------------------------------------- text


def _check_text_column(
    result: DriftResult,
    name: str,
    ref: ColumnStats,
    cur: ColumnStats,
    method: str | None,
    threshold: float | None,
) -> None:
    """Evidently 0.7's text drift (``perc``/``abs_text_content_drift``) on the values in row order."""
    if method is not None and method not in _TEXT_ONLY:
        raise DriftInputError(
            f"Method {method!r} cannot test {name!r}: it is a text column in the current batch (more than "
            f"half of its values unique); use {sorted(_TEXT_ONLY)} as Evidently does"
        )
    ref_texts, cur_texts = ref.texts, cur.texts
    if ref_texts is None or cur_texts is None:
        result.skipped_columns[name] = (
            "text column, but the reference holds no texts for it (the profile was built when it was not a "
            "text column, by an older version, or the check is partitioned); check against the reference data"
        )
        return
    method = method or default_method(TEXT, ref.n_valid, 0)
    if threshold is None:
        threshold = METHODS[method][0]
    try:
        score, drifted, bar = text_drift(ref_texts, cur_texts, method, float(threshold))
    except ValueError as err:  # e.g. an empty vocabulary (only stop words / punctuation)
        raise DriftInputError(f"Text drift of column {name!r} with method {method!r} failed: {err}") from None
    note = None if method == "abs_text_content_drift" else f"drift when AUC > {bar:.6g} (random-classifier percentile)"
    result.columns[name] = ColumnDrift(
        name, TEXT, method, score, float(threshold), drifted, ref.n_valid, cur.n_valid, note=note
    )


def text_drift(
    reference: list[Any], current: list[Any], method: str, threshold: float
) -> tuple[float, bool, float]:
    """
    ``calculate_text_drift_score`` of Evidently 0.7 (``legacy/utils/data_drift_utils.py``), step by step.

    A domain classifier (TF-IDF with ``sublinear_tf``, ``max_df=0.5``, English stop words, then an L1
    ``SGDClassifier`` with modified Huber loss, ``random_state=42``) learns to tell current rows
    (label 1) from reference rows (label 0) on a shuffled half (``train_test_split``,
    ``random_state=42``) and is scored by ROC AUC on the other half.  ``abs_text_content_drift``:
    drift when AUC > ``threshold`` (0.55).  ``perc_text_content_drift``: drift when AUC exceeds the
    ``100 * threshold``-th percentile of the AUCs of 1000 random classifiers on the same labels (seeded
    as Evidently seeds them).  Every random choice is seeded as there, so the score is Evidently's.

    :returns: (AUC, drifted, the bar the AUC was compared with).
    """
    import numpy as np
    import pandas as pd
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import SGDClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline

    texts = pd.Series(list(reference) + list(current), dtype=object)
    labels = pd.Series(np.r_[np.zeros(len(reference), dtype=np.int64), np.ones(len(current), dtype=np.int64)])
    x_train, x_test, y_train, y_test = train_test_split(texts, labels, test_size=0.5, random_state=42, shuffle=True)
    pipeline = Pipeline(
        [
            ("vectorization", TfidfVectorizer(sublinear_tf=True, max_df=0.5, stop_words="english")),
            (
                "classification",
                SGDClassifier(alpha=0.0001, max_iter=50, penalty="l1", loss="modified_huber", random_state=42),
            ),
        ]
    )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter=50, as in Evidently
        pipeline.fit(x_train, y_train)
    auc = float(roc_auc_score(y_test, pipeline.predict_proba(x_test)[:, 1]))
    if method == "abs_text_content_drift":
        return auc, auc > threshold, threshold
    bar = float(_random_auc_percentile(y_test.to_numpy(), p_value=1 - threshold))
    return auc, auc > bar, bar


def _random_auc_percentile(y_test: Any, p_value: float, iter_num: int = 1000, seed: int = 42) -> float:
    """``roc_auc_random_classifier_percentile``: the same seeds, so the same 1000 random AUCs.

    Evidently seeds numpy's global generator; this uses a private ``RandomState`` with the same seeds,
    which draws the same numbers without touching the global state.  Each AUC is computed from ranks
    (Mann-Whitney: ``(sum of the positives' ranks - n1 (n1 + 1) / 2) / (n1 n0)``), which equals
    ``roc_auc_score`` on untied scores up to rounding and is several times faster than 1000 calls to it.
    """
    import numpy as np

    y = np.asarray(y_test) == 1
    n, n1 = len(y), int(y.sum())
    n0 = n - n1
    if n1 == 0 or n0 == 0:
        raise ValueError("the held-out half holds rows of one side only; ROC AUC is undefined")
    seeds = np.random.RandomState(seed).randint(0, iter_num * 10, size=iter_num)
    ranks = np.empty(n, dtype=np.float64)
    positions = np.arange(1, n + 1, dtype=np.float64)
    values = np.empty(iter_num, dtype=np.float64)
    for i, s in enumerate(seeds):
        ranks[np.random.RandomState(s).rand(n).argsort()] = positions  # random floats: no ties
        values[i] = (ranks[y].sum() - n1 * (n1 + 1) / 2.0) / (float(n1) * float(n0))
    return float(np.percentile(values, 100 * (1 - p_value)))
