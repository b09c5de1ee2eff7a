"""Train an sklearn-compatible model on a dataset reference and track everything in MLflow."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from mlops_provider._args import PROBLEM_TYPES, check_choice, check_number, reject_renamed
from mlops_provider.hooks.mlflow import MlflowHook
from mlops_provider.lineage import LineageMixin, records
from mlops_provider.links.mlflow import MlflowRunLink, record_link

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import Context

REFERENCE_ARTIFACT_DIR = "reference"
REFERENCE_ARTIFACT_FILE = "features.parquet"
#: Artifact path of the training-feature sample that drift checks compare against.
REFERENCE_ARTIFACT_PATH = f"{REFERENCE_ARTIFACT_DIR}/{REFERENCE_ARTIFACT_FILE}"
#: The model's outputs on its evaluation split (prediction drift reference) and what they are.
OUTPUTS_ARTIFACT_FILE = "outputs.parquet"
OUTPUTS_SPEC_FILE = "outputs.json"
OUTPUTS_ARTIFACT_PATH = f"{REFERENCE_ARTIFACT_DIR}/{OUTPUTS_ARTIFACT_FILE}"
OUTPUTS_SPEC_PATH = f"{REFERENCE_ARTIFACT_DIR}/{OUTPUTS_SPEC_FILE}"
#: MLflow's dataset digest column holds at most 36 characters; the full digest is in the tags.
_MLFLOW_DIGEST_CHARS = 32
#: The probe that reaches MLflow before the fit: at most this many seconds per request and retries.
PROBE_TIMEOUT_SECONDS = 10
PROBE_MAX_RETRIES = 1
#: Tag on an earlier try's run that this try found RUNNING and marked FAILED.
SUPERSEDED_TAG = "mlops.superseded_by_try"


class TrainModelOperator(LineageMixin, BaseOperator):
    """
    Fit an estimator on a dataset, evaluate it, and log the run to MLflow.

    The run gets the params, all metrics (one batched call), the model with its signature and an
    input example, the training and evaluation datasets with their digests (``mlflow.log_input``),
    provenance tags (DAG, run, task, try, data digests, provider version, git commit of the DAG
    folder), a sample of the training features under ``reference/features.parquet`` for drift
    checks, and the model's outputs on the evaluation split under ``reference/outputs.parquet``
    (described by ``reference/outputs.json``: the class, a binary classifier's probability of the
    positive class, or the score) for prediction drift checks.

    Order of work, so that nothing is fitted or half-logged in vain: the arguments are checked, MLflow
    is reached (an unreachable server fails the try in seconds, before any data is read or fitted),
    the features are checked (datetime, all-missing, infinite and non-numeric values are named), the
    model is fitted and evaluated, and only then is the MLflow run started, so bad input leaves no run
    behind.  A run of an earlier try of the same task instance that is still ``RUNNING`` (the try was
    killed) is marked ``FAILED`` first, so a retry never leaves a run ``RUNNING``.

    :param training_data: dataset reference (path/URI string, dict with ``uri``/``conn_id``/``sql``, or
        :class:`~mlops_provider.core.datasets.DatasetRef`).
    :param target: the label column.
    :param estimator: dotted import path of an estimator class or factory
        (``"sklearn.ensemble.HistGradientBoostingClassifier"``) or a callable returning an estimator
        or ``Pipeline``; called with ``estimator_params``.
    :param estimator_params: JSON-safe keyword arguments of the estimator (dict or JSON text).
    :param feature_columns: features; default all columns but the target, ``exclude_columns`` and
        ``time_column``.
    :param exclude_columns: id/time columns that are not features.
    :param problem_type: ``classification`` or ``regression``; inferred from the target when omitted.
    :param positive_label: binary classification: the class that ``f1``, ``precision``, ``recall``,
        ``average_precision`` count as positive and whose probability ``roc_auc`` ranks by.  Default:
        the last class in sorted order (``1`` of 0/1, ``True``, ``'yes'`` of 'no'/'yes'); a class given
        as text matches by its text.  Refused for regression and multiclass targets.
    :param holdout_fraction: fraction of rows held out for evaluation.
    :param seed: random seed of the split (and of cross-validation and the reference sample).
    :param time_column: split by time instead: train on the past, evaluate on the most recent rows.
    :param evaluation_data: evaluate on this dataset instead of a holdout split.
    :param metrics: metric names (sklearn scorer names or short names such as ``rmse``); defaults per task.
    :param cv_folds: also cross-validate on the training split with this many folds.
    :param experiment_name: MLflow experiment; default the connection's ``experiment_name`` extra, else the DAG id.
    :param run_name: MLflow run name; default ``<task_id>-<logical date or run id>``.
    :param tags: extra run tags.
    :param reference_sample_rows: size cap of the reference feature sample (0 logs all training rows).
    :param pip_requirements: requirements stored with the model; default MLflow's sklearn defaults
        (fast); set ``"infer"`` to let MLflow infer them from the model (slower, catches custom code).
    :param mlflow_conn_id: the MLflow connection.
    """

    template_fields: Sequence[str] = (
        "training_data",
        "evaluation_data",
        "target",
        "estimator",
        "estimator_params",
        "feature_columns",
        "exclude_columns",
        "problem_type",
        "positive_label",
        "holdout_fraction",
        "seed",
        "time_column",
        "metrics",
        "cv_folds",
        "experiment_name",
        "run_name",
        "tags",
        "reference_sample_rows",
        "mlflow_conn_id",
    )
    template_fields_renderers = {"estimator_params": "json", "tags": "json", "training_data": "json"}
    operator_extra_links = (MlflowRunLink(),)
    ui_color = "#d5e8f7"

    def __init__(
        self,
        *,
        training_data: Any,
        target: str,
        estimator: str | Callable[..., Any],
        estimator_params: dict[str, Any] | str | None = None,
        feature_columns: list[str] | str | None = None,
        exclude_columns: list[str] | str | None = None,
        problem_type: str | None = None,
        positive_label: Any = None,
        holdout_fraction: float | str = 0.2,
        seed: int | str | None = 42,
        time_column: str | None = None,
        evaluation_data: Any = None,
        metrics: list[str] | str | None = None,
        cv_folds: int | str | None = None,
        experiment_name: str | None = None,
        run_name: str | None = None,
        tags: dict[str, Any] | None = None,
        reference_sample_rows: int | str = 10_000,
        pip_requirements: list[str] | str | None = None,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        reject_renamed(f"TrainModelOperator {kwargs.get('task_id')!r}", kwargs, {"task_type": "problem_type"})
        super().__init__(**kwargs)
        where = f"TrainModelOperator {self.task_id!r}"
        check_choice(where, "problem_type", problem_type, PROBLEM_TYPES, optional=True)
        check_number(where, "holdout_fraction", holdout_fraction, low=0, high=1, low_open=True, high_open=True)
        check_number(where, "seed", seed, low=0, integer=True, optional=True)
        if cv_folds != 0:
            check_number(where, "cv_folds", cv_folds, low=2, integer=True, optional=True)
        check_number(where, "reference_sample_rows", reference_sample_rows, low=0, integer=True)
        self.training_data = training_data
        self.target = target
        # Airflow calls a callable template field with the context when it renders: keep a factory aside
        self.estimator = _EstimatorFactory(estimator) if callable(estimator) else estimator
        self.estimator_params = estimator_params
        self.feature_columns = feature_columns
        self.exclude_columns = exclude_columns
        self.problem_type = problem_type
        self.positive_label = positive_label
        self.holdout_fraction = holdout_fraction
        self.seed = seed
        self.time_column = time_column
        self.evaluation_data = evaluation_data
        self.metrics = metrics
        self.cv_folds = cv_folds
        self.experiment_name = experiment_name
        self.run_name = run_name
        self.tags = tags
        self.reference_sample_rows = reference_sample_rows
        self.pip_requirements = pip_requirements
        self.mlflow_conn_id = mlflow_conn_id

    @cached_property
    def hook(self) -> MlflowHook:
        return MlflowHook(mlflow_conn_id=self.mlflow_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_provider.core import training
        from mlops_provider.core.datasets import load_dataset, to_dataset_ref

        train_ref = to_dataset_ref(self.training_data)
        eval_ref = to_dataset_ref(self.evaluation_data) if self.evaluation_data not in (None, "") else None
        self._lineage = records.training_inputs(train_ref, eval_ref)
        spec = training.TrainingSpec(
            target=self.target,
            feature_columns=self.feature_columns,
            exclude_columns=self.exclude_columns,
            problem_type=self.problem_type,
            positive_label=self.positive_label,
            holdout_fraction=self.holdout_fraction,
            seed=self.seed,
            time_column=self.time_column,
            metrics=self.metrics,
            cv_folds=self.cv_folds,
        ).validated()
        try:
            sample_rows = int(self.reference_sample_rows)
        except (TypeError, ValueError):
            from mlops_provider.exceptions import MlopsConfigurationError

            raise MlopsConfigurationError(
                f"reference_sample_rows must be an integer, got {self.reference_sample_rows!r}"
            ) from None
        factory = self.estimator.factory if isinstance(self.estimator, _EstimatorFactory) else self.estimator
        label = training.estimator_label(factory)
        user_params = training.coerce_params(self.estimator_params)
        estimator = training.build_estimator(factory, user_params)
        experiment_id = self._reach_mlflow(context)

        train_ds = load_dataset(train_ref)
        eval_ds = load_dataset(eval_ref) if eval_ref is not None else None
        self.log.info(
            "Training %s on %s (%d rows, digest %s)", label, train_ds.uri, train_ds.n_rows, train_ds.digest[:12]
        )
        result = training.train_and_evaluate(
            estimator, train_ds.frame, spec, eval_ds.frame if eval_ds else None, estimator_name=label
        )
        self.log.info("Evaluation (%s split): %s", result.split, result.metrics)

        tags = self._run_tags(context, train_ds, eval_ds, label)
        params = training.loggable_params(result.estimator, user_params, label)
        params.update(
            {
                "target": spec.target,
                "problem_type": result.problem_type,
                "split": result.split,
                "holdout_fraction": str(spec.holdout_fraction),
                "seed": str(spec.seed),
                "n_features": str(len(result.feature_columns)),
            }
        )
        positive = _plain(result.positive_label)
        if positive is not None:
            params["positive_label"] = str(positive)[:500]
            self.log.info("Positive class of %r: %r (f1, precision, recall count it)", spec.target, positive)
        all_metrics = {**result.metrics, **result.cv_metrics}
        all_metrics.update({"n_train_rows": float(len(result.X_train)), "n_eval_rows": float(len(result.X_eval))})

        self._digests: dict[str, str] = {}
        with self.hook.mlflow_env():
            if experiment_id is None:
                import mlflow

                experiment_id = str(mlflow.set_experiment(self._experiment(context)).experiment_id)
            self._fail_stale_runs(context, experiment_id)
            run_id, model_uri, model_id = self._log_run(
                context, experiment_id, result, params, all_metrics, tags, train_ds, eval_ds, train_ref, eval_ref,
                sample_rows,
            )
        self._lineage = records.training(
            train_ref, eval_ref, self.hook.tracking_uri, run_id=run_id, experiment_id=experiment_id, model_uri=model_uri,
            model_id=model_id, estimator=label, params=params, metrics=all_metrics, problem_type=result.problem_type,
        )
        record_link(self, MlflowRunLink.name, self.hook.run_url(run_id, experiment_id))
        return {
            "run_id": run_id,
            "experiment_id": experiment_id,
            "model_uri": model_uri,
            "model_id": model_id,
            "reference_uri": f"runs:/{run_id}/{REFERENCE_ARTIFACT_PATH}",
            "problem_type": result.problem_type,
            "positive_label": positive if isinstance(positive, str | int | float | bool) or positive is None else str(positive),
            "metrics": {k: round(v, 6) for k, v in all_metrics.items()},
            "split": result.split,
            "n_features": len(result.feature_columns),
            "training_data": train_ds.summary() | {"uri": train_ds.uri[:300]},
            "evaluation_data": (eval_ds.summary() | {"uri": eval_ds.uri[:300]}) if eval_ds else None,
            "validation_run_id": tags.get("mlops.validation_run_id"),
            "train_split": {"digest": self._digests["train_split"], "n_rows": len(result.X_train)},
            "eval_split": {"digest": self._digests["eval_split"], "n_rows": len(result.X_eval)},
        }

    # ------------------------------------------------------------------ helpers

    def _experiment(self, context: Context) -> str:
        if self.experiment_name:
            return str(self.experiment_name)
        return str(self.hook.extras.get("experiment_name") or context["dag"].dag_id)

    def _run_tags(self, context: Context, train_ds: Any, eval_ds: Any, label: str) -> dict[str, str]:
        from mlops_provider import __version__
        from mlops_provider._airflow_tags import lineage_tags
        from mlops_provider.core.training import git_commit_of

        dag = context.get("dag")
        tags = {
            **lineage_tags(context, self.task_id),
            "mlops.estimator": label[:250],
            "mlops.training_digest": train_ds.digest,
            "mlops.training_uri": train_ds.uri[:500],
            "mlops.provider_version": __version__,
        }
        if eval_ds is not None:
            tags["mlops.evaluation_digest"] = eval_ds.digest
            tags["mlops.evaluation_uri"] = eval_ds.uri[:500]
        commit = git_commit_of(getattr(dag, "fileloc", None))
        if commit:
            tags["mlops.git_commit"] = commit
        validation_run_id = self._validation_lineage(context, train_ds.digest)
        if validation_run_id:
            tags["mlops.validation_run_id"] = validation_run_id
        tags.update({str(k): str(v) for k, v in (self.tags or {}).items()})
        return tags

    def _validation_lineage(self, context: Context, digest: str) -> str | None:
        """
        The MLflow run of an upstream ``DataValidationOperator`` that passed on exactly this data.

        Validation tasks push a lineage record (XCom key ``validation_lineage``); only a record whose
        data digest equals the training data's digest counts, so a run never claims a validation of
        other data.
        """
        from mlops_provider.core.validation import matching_validation_run
        from mlops_provider.operators.validation import LINEAGE_XCOM_KEY

        ti = context.get("ti")
        try:
            upstream = sorted(self.get_flat_relative_ids(upstream=True))
        except Exception:  # noqa: BLE001 - a task outside a DAG has no upstream
            return None
        if ti is None or not upstream:
            return None
        records = ti.xcom_pull(task_ids=upstream, key=LINEAGE_XCOM_KEY)
        if isinstance(records, dict):
            records = [records]
        run_id = matching_validation_run([r for r in (records or []) if r], digest)
        if run_id:
            self.log.info("Training data digest %s was validated by MLflow run %s", digest[:12], run_id)
        return run_id

    def _run_name(self, context: Context) -> str:
        if self.run_name:
            return str(self.run_name)
        from mlops_provider._names import run_name

        return run_name("train", self._experiment(context).removesuffix("-training"), context)

    def _reach_mlflow(self, context: Context) -> str | None:
        """
        Reach MLflow before any data is read or fitted: look the experiment up; return its id (``None``
        when it does not exist yet: it is created when the run is logged, so bad input leaves none).

        The probe uses at most :data:`PROBE_MAX_RETRIES` retries of :data:`PROBE_TIMEOUT_SECONDS` each
        (or the connection's own, when lower), so an unreachable server fails the try in seconds with
        :class:`~mlops_provider.exceptions.MlflowConnectionError`, which Airflow retries.
        """
        from mlflow import MlflowClient

        name = self._experiment(context)
        with self.hook.mlflow_env():
            for key, cap in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", PROBE_MAX_RETRIES),
                             ("MLFLOW_HTTP_REQUEST_TIMEOUT", PROBE_TIMEOUT_SECONDS)):
                current = os.environ.get(key)
                os.environ[key] = str(min(int(current), cap) if current and current.isdigit() else cap)
            try:
                experiment = MlflowClient().get_experiment_by_name(name)
            except Exception:
                self.log.error("MLflow at %s could not be reached: nothing was read or fitted", self.hook.tracking_uri)
                raise
        if experiment is None:
            self.log.info("MLflow reached; experiment %r will be created when the run is logged", name)
            return None
        self.log.info("MLflow reached: experiment %r (id %s)", name, experiment.experiment_id)
        return str(experiment.experiment_id)

    def _fail_stale_runs(self, context: Context, experiment_id: str) -> list[str]:
        """
        Mark ``FAILED`` the runs of earlier tries of this task instance that are still ``RUNNING``.

        A try that was killed (SIGKILL, out of memory, a lost worker) cannot end its run; this try finds
        it by the tags of the same DAG, DAG run, task and map index, and ends it, tagging which try did.
        """
        from mlflow import MlflowClient

        ti = context.get("ti")
        dag = context.get("dag")
        try_number = str(getattr(ti, "try_number", "") or "")

        def quoted(value: Any) -> str:
            return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"

        flt = " and ".join(
            [
                f"tags.`mlops.dag_id` = {quoted(getattr(dag, 'dag_id', '') or '')}",
                f"tags.`mlops.run_id` = {quoted(context.get('run_id') or '')}",
                f"tags.`mlops.task_id` = {quoted(self.task_id)}",
                f"tags.`mlops.map_index` = {quoted(getattr(ti, 'map_index', -1))}",
                "attributes.status = 'RUNNING'",
            ]
        )
        client = MlflowClient()
        stale = client.search_runs([experiment_id], filter_string=flt, max_results=100)
        failed = []
        for run in stale:  # this try has not started its own run yet: every RUNNING one is left over
            client.set_tag(run.info.run_id, SUPERSEDED_TAG, try_number or "?")
            client.set_terminated(run.info.run_id, status="FAILED")
            failed.append(run.info.run_id)
        if failed:
            self.log.warning(
                "Marked FAILED %d MLflow run(s) of earlier tries of this task left RUNNING: %s",
                len(failed), ", ".join(failed),
            )
        return failed

    def _log_run(
        self, context, experiment_id, result, params, all_metrics, tags, train_ds, eval_ds, train_ref, eval_ref,
        sample_rows,
    ) -> tuple[str, str, str | None]:
        import mlflow
        import mlflow.sklearn
        from mlflow.models import infer_signature

        from mlops_provider.core.training import reference_sample

        self.hook.mark_experiment_kind(mlflow.get_experiment(experiment_id))  # model development, not GenAI
        with mlflow.start_run(experiment_id=experiment_id, run_name=self._run_name(context), tags=tags) as run:
            run_id = run.info.run_id
            mlflow.log_params(params)
            mlflow.log_metrics(all_metrics)  # one batched request
            target = str(result.y_train.name)
            train_frame = result.X_train.assign(**{target: result.y_train})
            self._digests["train_split"] = _log_dataset(mlflow, train_frame, train_ref, "training", target)
            eval_frame = result.X_eval.assign(**{target: result.y_eval})
            self._digests["eval_split"] = _log_dataset(
                mlflow, eval_frame, eval_ref or train_ref, "evaluation", target
            )

            example = result.X_train.head(5)
            probe = result.X_eval.head(200)
            signature = infer_signature(probe, result.estimator.predict(probe))
            info = mlflow.sklearn.log_model(
                result.estimator,
                name="model",
                signature=signature,
                input_example=example,
                pip_requirements=self._pip_requirements(),
                skops_trusted_types=_skops_types(result.estimator),
            )
            sample = reference_sample(result.X_train, sample_rows, result_seed(params))
            with tempfile.TemporaryDirectory(prefix="mlops-ref-") as tmp:
                path = os.path.join(tmp, REFERENCE_ARTIFACT_FILE)
                sample.to_parquet(path, index=False)
                mlflow.log_artifact(path, artifact_path=REFERENCE_ARTIFACT_DIR)
                self._log_outputs(mlflow, result, tmp)
        return run_id, info.model_uri, getattr(info, "model_id", None)

    def _log_outputs(self, mlflow: Any, result: Any, tmp: str) -> None:
        """The model's outputs on the evaluation split: the prediction drift reference of this version."""
        import json

        from mlops_provider.core.prediction_drift import model_outputs, output_spec_for

        spec = output_spec_for(result.estimator, result.problem_type, result.positive_label)
        outputs = model_outputs(result.estimator, result.X_eval, spec)
        path = os.path.join(tmp, OUTPUTS_ARTIFACT_FILE)
        outputs.to_parquet(path, index=False)
        spec_path = os.path.join(tmp, OUTPUTS_SPEC_FILE)
        with open(spec_path, "w", encoding="utf-8") as fh:
            json.dump({**spec.to_dict(), "rows": len(outputs), "data": "evaluation split"}, fh)
        mlflow.log_artifact(path, artifact_path=REFERENCE_ARTIFACT_DIR)
        mlflow.log_artifact(spec_path, artifact_path=REFERENCE_ARTIFACT_DIR)
        self.log.info(
            "Logged the model's outputs on the %d evaluation rows (%s) for prediction drift",
            len(outputs), ", ".join(spec.label(c) for c in spec.types()),
        )

    def _pip_requirements(self) -> list[str] | None:
        req = self.pip_requirements
        if req == "infer":
            return None
        if req:
            return [req] if isinstance(req, str) else list(req)
        import mlflow.sklearn

        return mlflow.sklearn.get_default_pip_requirements()


def _skops_types(estimator: Any) -> list[str] | None:
    """
    The non-default types of the model just trained, trusted for MLflow's default ``skops`` format.

    The operator built this estimator itself (from the DAG's own estimator path), so its types are
    trusted by construction; without this, MLflow refuses models such as HistGradientBoosting.
    """
    try:
        import skops.io
    except ImportError:
        return None
    return list(skops.io.get_untrusted_types(data=skops.io.dumps(estimator))) or None


class _EstimatorFactory:
    """A callable estimator (class or factory), held so that template rendering leaves it alone."""

    def __init__(self, factory: Callable[..., Any]) -> None:
        self.factory = factory

    def __repr__(self) -> str:
        return getattr(self.factory, "__qualname__", None) or repr(self.factory)


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value (JSON-safe); anything else unchanged."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def result_seed(params: dict[str, str]) -> int | None:
    seed = params.get("seed")
    return int(seed) if seed not in (None, "None", "") else None


def _log_dataset(mlflow: Any, frame: pd.DataFrame, ref: Any, context: str, target: str) -> str:
    """``mlflow.log_input`` of a split with its content digest; returns the full digest."""
    import mlflow.data

    from mlops_provider.core.datasets import frame_digest

    digest = frame_digest(frame)
    source = ref.uri if (ref is not None and ref.uri) else None
    # MLflow's dataset digest column holds 36 characters: log a prefix, the full digest goes to XCom.
    kwargs = {"targets": target, "name": context, "digest": digest[:_MLFLOW_DIGEST_CHARS]}
    try:
        dataset = mlflow.data.from_pandas(frame, source=source, **kwargs)
    except Exception:  # noqa: BLE001 - MLflow cannot resolve every source URI (sql, custom schemes)
        dataset = mlflow.data.from_pandas(frame, **kwargs)
    mlflow.log_input(dataset, context=context)
    return digest
