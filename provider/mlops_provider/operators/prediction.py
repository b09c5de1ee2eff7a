"""Batch scoring of a dataset reference with a registered (or any) MLflow model."""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from mlops_provider._args import check_number, is_templated
from mlops_provider._names import batch_label, run_name
from mlops_provider.hooks.mlflow import MlflowHook
from mlops_provider.lineage import LineageMixin, records
from mlops_provider.links.mlflow import MlflowModelVersionLink, MlflowRunLink, record_link

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import Context

_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/]+)$")
_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")
#: Class labels beyond this many are not broken out in the prediction statistics.
MAX_CLASSES_IN_STATS = 50


class BatchPredictOperator(LineageMixin, BaseOperator):
    """
    Score a dataset with a model and write the predictions to parquet, chunk by chunk.

    The model is resolved once (``models:/<name>@champion`` -> a fixed version), so a promotion while
    the task runs cannot mix two models in one output.  The output holds the ``id_columns``, the
    prediction, and the model version of every row.  Inputs are read in chunks of ``batch_rows``
    (parquet by row groups), so they may be larger than memory.  Prediction statistics (count,
    mean/std/min/max, or class shares) are logged to an MLflow run so the prediction distribution can
    be monitored later.  The output is written to a temporary file first and moved into place, so a
    retry never leaves a half-written file behind, and no staging file is left after any failure.

    Refused before anything is read: an ``output_uri`` that is the input itself (it would overwrite the
    batch) or an existing directory.  When the model cannot predict on a chunk, the error names the
    rows and every input column with missing, infinite, non-numeric or datetime values, with the type
    the model's signature expects, instead of MLflow's message, which echoes the whole DataFrame.

    :param input_data: dataset reference to score.
    :param output_uri: where to write the parquet (local path or object-storage URI).
    :param model_uri: any MLflow model URI; default ``models:/<registered_model_name>@<alias>``.
    :param registered_model_name: registry name, used with ``alias`` when ``model_uri`` is omitted.
    :param alias: alias to score with (default ``champion``).
    :param id_columns: input columns copied to the output to identify rows.
    :param output_conn_id: connection for an object-storage ``output_uri``.
    :param batch_rows: rows per chunk (a positive integer).
    :param prediction_column: name of the prediction column.
    :param experiment_name: MLflow experiment of the statistics run (default: the DAG id).
    :param mlflow_conn_id: the MLflow connection.
    """

    template_fields: Sequence[str] = (
        "input_data",
        "output_uri",
        "model_uri",
        "registered_model_name",
        "alias",
        "id_columns",
        "output_conn_id",
        "batch_rows",
        "prediction_column",
        "experiment_name",
        "mlflow_conn_id",
    )
    operator_extra_links = (MlflowRunLink(), MlflowModelVersionLink())
    ui_color = "#dff5e3"

    def __init__(
        self,
        *,
        input_data: Any,
        output_uri: str,
        model_uri: str | None = None,
        registered_model_name: str | None = None,
        alias: str = "champion",
        id_columns: list[str] | str | None = None,
        output_conn_id: str | None = None,
        batch_rows: int | str = 100_000,
        prediction_column: str = "prediction",
        experiment_name: str | None = None,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        where = f"BatchPredictOperator {self.task_id!r}"
        check_number(where, "batch_rows", batch_rows, low=1, integer=True)
        if not model_uri and not registered_model_name:
            from mlops_provider.exceptions import MlopsConfigurationError

            raise MlopsConfigurationError(f"{where}: give model_uri, or registered_model_name (with alias)")
        if alias is not None and not is_templated(alias) and not model_uri:
            from mlops_provider.core.registry import validate_alias

            validate_alias(alias)
        if isinstance(input_data, str) and not is_templated(input_data) and not is_templated(output_uri):
            _refuse_same_path(where, input_data, output_uri)
        self.input_data = input_data
        self.output_uri = output_uri
        self.model_uri = model_uri
        self.registered_model_name = registered_model_name
        self.alias = alias
        self.id_columns = id_columns
        self.output_conn_id = output_conn_id
        self.batch_rows = batch_rows
        self.prediction_column = prediction_column
        self.experiment_name = experiment_name
        self.mlflow_conn_id = mlflow_conn_id

    @cached_property
    def hook(self) -> MlflowHook:
        return MlflowHook(mlflow_conn_id=self.mlflow_conn_id)

    # ------------------------------------------------------------------ model resolution

    def _resolve_model(self) -> tuple[str, str | None, str | None]:
        """(pinned model URI, registered name, version)."""
        from mlflow.exceptions import MlflowException

        from mlops_provider.exceptions import MlopsConfigurationError

        uri = (self.model_uri or "").strip()
        if not uri:
            if not self.registered_model_name:
                raise MlopsConfigurationError("Give model_uri or registered_model_name (with alias)")
            uri = f"models:/{self.registered_model_name}@{self.alias}"
        client = self.hook.get_client()
        match = _ALIAS_URI.match(uri)
        if match:
            name, alias = match["name"], match["alias"]
            try:
                mv = client.get_model_version_by_alias(name, alias)
            except MlflowException as err:
                raise MlopsConfigurationError(
                    f"Cannot resolve {uri}: registered model {name!r} or its alias {alias!r} does not exist "
                    f"({str(err).splitlines()[0][:200]})"
                ) from None
            return f"models:/{name}/{mv.version}", name, str(mv.version)
        match = _VERSION_URI.match(uri)
        if match:
            return uri, match["name"], match["version"]
        return uri, None, None

    # ------------------------------------------------------------------ execute

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_provider.core.datasets import iter_dataset_batches, to_dataset_ref
        from mlops_provider.core.training import as_sequence
        from mlops_provider.exceptions import MlopsConfigurationError

        ref = to_dataset_ref(self.input_data)
        if not self.output_uri or not str(self.output_uri).strip():
            raise MlopsConfigurationError("output_uri is required")
        output_uri = str(self.output_uri).strip()
        if ref.uri:
            _refuse_same_path("BatchPredictOperator", ref.uri, output_uri)
        _refuse_directory(output_uri)
        try:
            batch_rows = int(self.batch_rows)
        except (TypeError, ValueError):
            batch_rows = 0
        if batch_rows < 1:
            raise MlopsConfigurationError(f"batch_rows must be a positive integer, got {self.batch_rows!r}")
        id_columns = as_sequence(self.id_columns)
        pred_col = str(self.prediction_column or "prediction")

        model_uri, name, version = self._resolve_model()
        self._lineage = records.predict(self.input_data, self.hook.tracking_uri, model_uri, name, version)
        self.log.info("Scoring %s with %s", ref.describe(), model_uri)
        with self.hook.mlflow_env():
            import mlflow.pyfunc

            try:
                model = mlflow.pyfunc.load_model(model_uri)
            except Exception as err:
                from mlflow.exceptions import MlflowException

                translated = self.hook._translate_error(err)
                if translated is not err:  # transport or credentials: retryable / named, not "bad model"
                    raise translated from None
                if isinstance(err, MlflowException | OSError):
                    raise MlopsConfigurationError(
                        f"Cannot load model {model_uri}: {str(err).splitlines()[0][:300]}"
                    ) from None
                raise
        features = _model_inputs(model)
        self._expected_types = _model_input_types(model)
        self._model_uri = model_uri
        columns = None if features is None else list(dict.fromkeys([*id_columns, *features]))
        stats = _PredictionStats()
        model_version = version or model_uri

        tmp_dir = tempfile.mkdtemp(prefix="mlops-predict-")
        tmp_path = os.path.join(tmp_dir, "predictions.parquet")
        try:
            n_rows = self._score(
                iter_dataset_batches(ref, batch_rows, columns=columns), model, features, id_columns,
                pred_col, model_version, tmp_path, stats,
            )
            _publish(tmp_path, output_uri, self.output_conn_id)
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
        summary = stats.summary()
        self._lineage = records.predict(ref, self.hook.tracking_uri, model_uri, name, version, output_uri, n_rows)
        run_id = self._log_stats(context, summary, n_rows, model_uri, name, version, output_uri, ref.describe())
        if name and version:
            record_link(self, MlflowModelVersionLink.name, self.hook.model_version_url(name, version))
        return {
            "n_rows": n_rows,
            "output_uri": output_uri,
            "model_uri": model_uri,
            "registered_model_name": name,
            "model_version": version,
            "run_id": run_id,
            "prediction_stats": summary,
        }

    def _score(self, batches, model, features, id_columns, pred_col, model_version, path, stats) -> int:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from mlops_provider.exceptions import DatasetError, MlopsConfigurationError

        writer = None
        n_rows = 0
        try:
            for batch in batches:
                missing = [c for c in id_columns if c not in batch.columns]
                if missing:
                    raise DatasetError(f"Id column(s) {missing} missing from the input data")
                X = batch[features] if features is not None else batch.drop(columns=id_columns)
                try:
                    predictions = model.predict(X)
                except Exception as err:
                    cause = _predict_error_cause(err)
                    problems = input_problems(X, getattr(self, "_expected_types", {}))
                    named = re.search(r"\bcolumn '?(\w+)'?", cause)
                    if not problems and named and named.group(1) in X.columns:
                        problems = [f"{named.group(1)!r} ({X[named.group(1)].dtype}): {cause}"]
                    rows = f"rows {n_rows}-{n_rows + len(X) - 1}"
                    where = f"Model {getattr(self, '_model_uri', '')} failed to predict on {rows} of the input"
                    if problems:
                        listed = "\n".join(f"  - {p}" for p in problems)
                        raise DatasetError(f"{where}: {cause}\nInput column(s) the model cannot use:\n{listed}") from None
                    raise MlopsConfigurationError(f"{where}: {cause}") from None
                out = batch[id_columns].reset_index(drop=True).copy()
                out[pred_col] = _as_1d(predictions)
                out["model_version"] = str(model_version)
                stats.update(out[pred_col])
                table = pa.Table.from_pandas(out, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(path, table.schema)
                writer.write_table(table)
                n_rows += len(out)
        finally:
            if writer is not None:
                writer.close()
        return n_rows

    def _log_stats(self, context, summary, n_rows, model_uri, name, version, output_uri, source) -> str:
        import mlflow

        experiment = self.experiment_name or self.hook.extras.get("experiment_name") or context["dag"].dag_id
        metrics = {"n_rows": float(n_rows)}
        for key, value in summary.items():
            if isinstance(value, int | float) and value is not None and math.isfinite(value):
                metrics[f"prediction_{key}"] = float(value)
        for label, share in (summary.get("class_shares") or {}).items():
            safe = re.sub(r"[^A-Za-z0-9_\-. /]", "_", str(label))[:100]
            metrics[f"prediction_share/{safe}"] = float(share)
        tags = {
            "mlops.kind": "batch_prediction",
            "mlops.model_uri": model_uri,
            "mlops.output_uri": output_uri[:500],
            "mlops.input": source[:500],
            "mlops.dag_id": context["dag"].dag_id,
            "mlops.run_id": str(context.get("run_id") or ""),
            "mlops.task_id": self.task_id,
        }
        if name:
            tags["mlops.registered_model_name"] = name
            tags["mlops.model_version"] = str(version)
        with self.hook.mlflow_env():
            exp = mlflow.set_experiment(str(experiment))
            self.hook.mark_experiment_kind(exp)
            with mlflow.start_run(
                experiment_id=exp.experiment_id,
                run_name=run_name("score", f"{name or self.task_id} {batch_label(tags.get('mlops.input'))}", context),
                tags=tags,
            ) as run:
                mlflow.log_metrics(metrics)
                mlflow.log_dict(summary, "predictions/stats.json")
        record_link(self, MlflowRunLink.name, self.hook.run_url(run.info.run_id, exp.experiment_id))
        return run.info.run_id


def _norm_local(uri: str) -> str | None:
    """The absolute local path of a local URI (``file://`` or a path), else ``None``."""
    uri = str(uri).strip()
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    elif "://" in uri:
        return None
    return os.path.abspath(os.path.expanduser(uri))


def _refuse_same_path(where: str, input_uri: str, output_uri: Any) -> None:
    """Refuse an ``output_uri`` that names the input itself: writing it would overwrite the batch."""
    from mlops_provider.exceptions import MlopsConfigurationError

    if not output_uri or not isinstance(output_uri, str):
        return
    local_in, local_out = _norm_local(input_uri), _norm_local(output_uri)
    if local_in is not None and local_out is not None:
        same = local_in == local_out or (
            os.path.exists(local_in) and os.path.exists(local_out) and os.path.samefile(local_in, local_out)
        )
    else:
        same = str(input_uri).strip().rstrip("/") == str(output_uri).strip().rstrip("/")
    if same:
        raise MlopsConfigurationError(
            f"{where}: output_uri {output_uri!r} is the input itself; writing the predictions there would "
            "overwrite the batch. Give another path (e.g. a predictions/ folder beside it)"
        )


def _refuse_directory(output_uri: str) -> None:
    from mlops_provider.exceptions import MlopsConfigurationError

    local = _norm_local(output_uri)
    if output_uri.endswith("/") or (local is not None and os.path.isdir(local)):
        raise MlopsConfigurationError(
            f"output_uri {output_uri!r} is a directory; give the path of the parquet file to write, "
            f"e.g. {output_uri.rstrip('/')}/predictions.parquet"
        )


def _predict_error_cause(err: BaseException) -> str:
    """The part of a prediction error that says what is wrong (MLflow's message echoes the whole DataFrame)."""
    text = str(err).strip()
    match = re.search(r"\bError: (.+)", text, flags=re.S)
    if match:
        text = match.group(1).strip()
    first = text.splitlines()[0] if text else type(err).__name__
    return first[:300]


#: MLflow signature types that hold numbers.
_NUMERIC_TYPES = {"double", "float", "long", "integer"}
#: Examples of bad values quoted per column.
_MAX_EXAMPLES = 5


def input_problems(X: pd.DataFrame, expected: dict[str, str]) -> list[str]:
    """
    One line per input column the model is likely to refuse, in column order: datetime columns,
    non-numeric text, missing and infinite values, each with the type the model's signature expects.
    """
    import numpy as np
    import pandas as pd

    problems = []
    for column in X.columns:
        values = X[column]
        want = expected.get(str(column))
        wants = f"; the model expects {want}" if want else ""
        if pd.api.types.is_datetime64_any_dtype(values):
            problems.append(f"{column!r} is a datetime column ({values.dtype}){wants}")
            continue
        n_missing = int(values.isna().sum())
        if want in ("long", "integer") and pd.api.types.is_float_dtype(values):
            missing = f" with {n_missing} missing value(s) (NaN/null)" if n_missing else ""
            problems.append(
                f"{column!r} holds {values.dtype}{missing}{wants}: an integer column cannot hold NaN or fractions"
            )
        elif n_missing:
            problems.append(f"{column!r} has {n_missing} missing value(s) (NaN/null){wants}")
        present = values.dropna()
        if pd.api.types.is_bool_dtype(values):
            continue
        if pd.api.types.is_numeric_dtype(values):
            n_inf = int(np.isinf(present.to_numpy(dtype=float)).sum())
            if n_inf:
                problems.append(f"{column!r} has {n_inf} infinite value(s) (inf/-inf){wants}")
        elif want is None or want in _NUMERIC_TYPES:
            numbers = pd.to_numeric(present, errors="coerce")
            bad = present[numbers.isna()]
            if len(bad):
                examples = ", ".join(repr(v) for v in pd.unique(bad.astype(str))[:_MAX_EXAMPLES])
                problems.append(
                    f"{column!r} has {len(bad)} non-numeric value(s) (e.g. {examples}){wants}"
                )
    return problems


def _model_input_types(model: Any) -> dict[str, str]:
    """Input column -> type name from the model's signature (empty without one)."""
    try:
        schema = model.metadata.get_input_schema()
        return {str(spec.name): str(getattr(spec.type, "name", spec.type)) for spec in schema.inputs if spec.name}
    except Exception:  # noqa: BLE001 - no signature, or a tensor signature
        return {}


def _model_inputs(model: Any) -> list[str] | None:
    try:
        schema = model.metadata.get_input_schema()
    except Exception:  # noqa: BLE001 - no signature
        return None
    if schema is None or not schema.has_input_names():
        return None
    return list(schema.input_names())


def _as_1d(predictions: Any) -> Any:
    import numpy as np
    import pandas as pd

    if isinstance(predictions, pd.DataFrame):
        predictions = predictions.iloc[:, 0] if predictions.shape[1] == 1 else predictions.to_numpy()
    arr = np.asarray(predictions)
    if arr.ndim > 1:
        arr = arr[:, 0] if arr.shape[1] == 1 else arr.tolist()
    return arr


class _PredictionStats:
    """Streaming statistics of the predictions: moments for numbers, shares for labels."""

    def __init__(self) -> None:
        self.count = 0
        self.missing = 0
        self.sum = 0.0
        self.sumsq = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.classes: dict[str, int] = {}
        self.numeric = True

    def update(self, values: pd.Series) -> None:
        import pandas as pd

        self.missing += int(values.isna().sum())
        values = values.dropna()
        self.count += len(values)
        if self.numeric and pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            arr = values.to_numpy(dtype=float)
            if len(arr):
                self.sum += float(arr.sum())
                self.sumsq += float((arr * arr).sum())
                self.min = min(self.min, float(arr.min()))
                self.max = max(self.max, float(arr.max()))
            integral = len(arr) == 0 or bool((arr == arr.round()).all())
        else:
            self.numeric = False
            integral = True
        if integral:
            for label, count in values.astype(str).value_counts().items():
                if label in self.classes or len(self.classes) < MAX_CLASSES_IN_STATS:
                    self.classes[label] = self.classes.get(label, 0) + int(count)
        else:
            self.classes = {}

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"count": self.count, "missing": self.missing}
        if self.numeric and self.count:
            mean = self.sum / self.count
            var = max(self.sumsq / self.count - mean * mean, 0.0)
            out.update({"mean": mean, "std": math.sqrt(var), "min": self.min, "max": self.max})
        if self.classes and self.count and len(self.classes) <= MAX_CLASSES_IN_STATS:
            out["class_shares"] = {k: round(v / self.count, 6) for k, v in sorted(self.classes.items())}
        return out


def _publish(tmp_path: str, output_uri: str, conn_id: str | None) -> None:
    """Move the finished file into place (atomic rename locally, one upload for object storage)."""
    from mlops_provider.exceptions import DatasetError

    if not os.path.exists(tmp_path):
        raise DatasetError(f"No predictions were produced for {output_uri}")
    if output_uri.startswith("file://") or "://" not in output_uri:
        dest = output_uri[len("file://") :] if output_uri.startswith("file://") else os.path.expanduser(output_uri)
        if os.path.isdir(dest):
            raise DatasetError(
                f"output_uri {output_uri!r} is a directory; give the path of the parquet file to write"
            )
        try:
            os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
        except OSError as err:
            raise DatasetError(f"Cannot create the folder of output_uri {output_uri!r}: {err.strerror or err}") from None
        staging = f"{dest}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            shutil.copyfile(tmp_path, staging)
            os.replace(staging, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(staging)
            raise
        return
    from airflow.sdk import ObjectStoragePath

    dest_path = ObjectStoragePath(output_uri, conn_id=conn_id)
    with open(tmp_path, "rb") as src, dest_path.open("wb") as dst:
        shutil.copyfileobj(src, dst, length=8 * 1024 * 1024)
