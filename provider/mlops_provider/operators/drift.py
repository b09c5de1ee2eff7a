"""DriftCheckOperator: compare a batch with a model's reference profile (or a dataset) and act on drift.

The reusable glue (resolve a reference, run the check) is :func:`resolve_drift_reference` and
:func:`run_drift_check`, shared with :class:`~mlops_provider.sensors.drift.DriftSensor`.

Artifact contract with ``TrainModelOperator``: the model version's run holds a sample of the training
features at ``reference/features.parquet``; the drift profile built from it is stored on the same run
at ``drift/profile.bin`` (binary, compressed, with a sha256; built and logged on first use when the
training task did not), and its sha256 in the model version's tag ``mlops.drift_profile_sha256``.
A profile stored by older versions at ``drift/profile.json`` is read once more and converted.
Each worker keeps the profiles it used in a disk cache keyed by model, version and sha256, so a
version's profile is downloaded once per worker.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, AssetAlias, BaseOperator
from airflow.sdk.bases.skipmixin import SkipMixin

from mlops_provider._args import FAIL, SKIP, WARN, check_choice, check_number, is_templated, reject_renamed
from mlops_provider._names import batch_label, run_name
from mlops_provider.hooks.mlflow import MlflowHook
from mlops_provider.lineage import LineageMixin, records
from mlops_provider.links.mlflow import DriftReportLink, MlflowRunLink, record_link

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import Context

    from mlops_provider.core.drift import DriftResult

log = logging.getLogger(__name__)

PROFILE_ARTIFACT_DIR = "drift"
PROFILE_ARTIFACT_FILE = "profile.bin"
#: Where a model version's drift profile lives on its MLflow run (binary, see ``core.profile_store``).
PROFILE_ARTIFACT_PATH = f"{PROFILE_ARTIFACT_DIR}/{PROFILE_ARTIFACT_FILE}"
#: Where older versions of the provider stored it (JSON): read once more, then converted.
LEGACY_PROFILE_ARTIFACT_PATH = f"{PROFILE_ARTIFACT_DIR}/profile.json"
#: Model version tag holding the sha256 of the stored profile's payload (the worker cache's key).
PROFILE_DIGEST_TAG = "mlops.drift_profile_sha256"
#: Training-feature sample logged by ``TrainModelOperator`` (same value as its ``REFERENCE_ARTIFACT_PATH``).
REFERENCE_FEATURES_PATH = "reference/features.parquet"
REPORT_ARTIFACT_PATH = "drift/report.html"
#: Evidently's report of the model's outputs (prediction drift), beside the feature report.
PREDICTION_REPORT_ARTIFACT_PATH = "drift/prediction_report.html"
#: The model's outputs on its evaluation split, logged by ``TrainModelOperator`` (same values as its
#: ``OUTPUTS_ARTIFACT_PATH`` / ``OUTPUTS_SPEC_PATH``): the prediction drift reference.
OUTPUTS_ARTIFACT_PATH = "reference/outputs.parquet"
OUTPUTS_SPEC_PATH = "reference/outputs.json"
#: ``on_failure`` values of the drift operator (what to do when the batch drifted), default ``"warn"``.
DRIFT_ON_FAILURE = (WARN, FAIL, SKIP)

_MODEL_URI = re.compile(r"^models:/(?P<name>[^@/]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


def drift_asset_uri(model_name: str) -> str:
    """``mlops://<model>/drift``: the Asset a retraining DAG can be scheduled on."""
    return f"mlops://{model_name}/drift"


def drift_asset_alias(model_name: str) -> str:
    """Name of the asset alias through which the drift event is emitted (only when drift is found)."""
    return f"mlops_drift__{model_name}"


def prediction_drift_asset_uri(model_name: str) -> str:
    """``mlops://<model>/prediction_drift``: the model's outputs drifted (its own event, apart from feature drift)."""
    return f"mlops://{model_name}/prediction_drift"


def prediction_drift_asset_alias(model_name: str) -> str:
    """Name of the asset alias through which the prediction drift event is emitted (only on prediction drift)."""
    return f"mlops_prediction_drift__{model_name}"


def parse_model_uri(value: Any) -> tuple[str, str | None, str | None] | None:
    """``(name, alias, version)`` of ``models:/<name>@<alias>`` or ``models:/<name>/<version>``, else ``None``."""
    if not isinstance(value, str):
        return None
    match = _MODEL_URI.match(value.strip())
    if not match:
        return None
    return match.group("name"), match.group("alias"), match.group("version")


@dataclass
class ResolvedReference:
    """A reference ready for :func:`~mlops_provider.core.drift.check_drift` and where it came from."""

    reference: Any  # ReferenceProfile | pd.DataFrame
    description: str
    model_name: str | None = None
    model_version: str | None = None
    run_id: str | None = None
    profile_logged: bool = False
    frame: Any = None  # raw reference rows when loaded (for the HTML report)
    #: why the reference holds no model outputs (prediction drift cannot be checked), when it holds none
    outputs_missing: str | None = None
    #: how a model version's profile was obtained: "cache", "download", "converted" (from the older
    #: JSON artifact) or "built" (from the training-feature sample)
    profile_source: str | None = None

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reference": self.description}
        if self.model_name:
            out.update(model_name=self.model_name, model_version=self.model_version, model_run_id=self.run_id)
        if self.profile_source:
            out["profile_source"] = self.profile_source
        if self.profile_logged:
            out["profile_logged"] = f"runs:/{self.run_id}/{PROFILE_ARTIFACT_PATH}"
        return out


@dataclass
class DriftCheckOutcome:
    result: DriftResult
    reference: ResolvedReference
    current_frame: Any = field(repr=False)
    current_info: dict[str, Any] = field(default_factory=dict)
    #: prediction drift (``PredictionDriftResult``) when it was checked
    prediction: Any = None
    #: why prediction drift was asked for but not checked
    prediction_not_checked: str | None = None
    current_outputs: Any = field(default=None, repr=False)
    #: per-batch quality figures (:func:`mlops_provider.core.quality.batch_quality`)
    quality: dict[str, Any] | None = None

    def summary(self) -> dict[str, Any]:
        out = {**self.result.to_summary(), **self.reference.info(), "current": self.current_info}
        if self.prediction is not None:
            out["prediction_drift"] = self.prediction.to_summary()
        elif self.prediction_not_checked:
            out["prediction_drift"] = {"status": "not_checked", "drift": None, "reason": self.prediction_not_checked}
        if self.quality is not None:
            out["quality"] = {
                "rows": self.quality["rows"],
                "columns_with_nulls": {k: round(v, 6) for k, v in self.quality["null_share"].items() if v}
                if len(self.quality["null_share"]) <= 200 else "see the monitoring run",
                "unseen_categories": {k: v for k, v in self.quality["unseen_categories"].items() if v},
            }
        return out


def _profile_from_model(
    hook: MlflowHook,
    name: str,
    alias: str | None,
    version: str | None,
    max_rows: int | None,
    outputs: bool = False,
) -> ResolvedReference:
    """The drift profile of a model version: from this worker's cache, else downloaded once (or built once and logged).

    The cache key is the model, the version and the profile's sha256 (the version's
    :data:`PROFILE_DIGEST_TAG`), so a cached profile is used only while the version still names it.
    """
    from mlops_provider.core.drift import ProfileError, ReferenceProfile
    from mlops_provider.core.profile_store import ProfileCache
    from mlops_provider.exceptions import MlopsConfigurationError

    client = hook.get_client()
    label = f"models:/{name}@{alias}" if alias else f"models:/{name}/{version}"
    try:
        mv = (
            client.get_model_version_by_alias(name, alias)
            if alias
            else client.get_model_version(name, version)
        )
    except Exception as err:  # noqa: BLE001 - MLflow raises RestException/MlflowException
        raise MlopsConfigurationError(f"Drift reference {label} does not resolve: {str(err)[:300]}") from None
    if not mv.run_id:
        raise MlopsConfigurationError(f"{label} (version {mv.version}) has no MLflow run holding a reference")
    resolved = ResolvedReference(None, label, name, str(mv.version), mv.run_id)
    cache = ProfileCache()
    digest = (mv.tags or {}).get(PROFILE_DIGEST_TAG)
    profile = None
    cached = cache.get(name, str(mv.version), digest)
    if cached is not None:
        try:
            profile = ReferenceProfile.load(cached)
            resolved.profile_source = "cache"
        except ProfileError as err:  # a damaged cache file: drop it and download again
            log.warning("Dropping the cached drift profile %s: %s", cached, err)
            cached.unlink(missing_ok=True)
        if profile is not None and outputs and not _has_outputs(profile):
            profile = None  # cached before the outputs were part of it: fetch, add them once, log it again
    if profile is None:
        profile = _fetch_profile(client, resolved, cache, digest, max_rows, outputs)
    try:
        profile.check_model(name)
    except ProfileError as err:
        raise MlopsConfigurationError(f"{label}: {err}") from None
    resolved.reference = profile
    return resolved


def _fetch_profile(
    client: Any,
    resolved: ResolvedReference,
    cache: Any,
    digest: str | None,
    max_rows: int | None,
    outputs: bool = False,
) -> Any:
    """Download the binary profile (or convert the older JSON one, or build one), cache it and tag its sha256."""
    from mlops_provider.core.drift import ProfileError, ReferenceProfile, build_profile
    from mlops_provider.exceptions import MlopsConfigurationError

    run_id, label = resolved.run_id, resolved.description
    with tempfile.TemporaryDirectory(prefix="mlops-drift-") as tmp:
        profile = None
        for artifact in (PROFILE_ARTIFACT_PATH, LEGACY_PROFILE_ARTIFACT_PATH):
            try:
                path = client.download_artifacts(run_id, artifact, tmp)
            except Exception:  # noqa: BLE001 - missing artifact: try the next form, else build it below
                continue
            try:
                profile = ReferenceProfile.load(path)
            except ProfileError as err:
                raise MlopsConfigurationError(f"{label}: runs:/{run_id}/{artifact}: {err}") from None
            try:  # before anything is converted, logged or cached
                profile.check_model(resolved.model_name)
            except ProfileError as err:
                raise MlopsConfigurationError(f"{label}: runs:/{run_id}/{artifact}: {err}") from None
            resolved.profile_source = "download" if artifact == PROFILE_ARTIFACT_PATH else "converted"
            break
        if profile is None:
            profile = _build_profile_from_features(client, resolved, tmp, max_rows, build_profile)
            resolved.profile_source = "built"
        elif outputs and not _has_outputs(profile):
            # a profile built before the outputs were part of it: add them once, log it again
            resolved.outputs_missing = _attach_outputs(client, resolved, profile, tmp)
            if resolved.outputs_missing is None:
                profile.digest = None
        if profile.digest is None:  # built now, or read from the older JSON artifact: log the binary form
            local = profile.save(os.path.join(tmp, "out", PROFILE_ARTIFACT_FILE))
            client.log_artifact(run_id, str(local), artifact_path=PROFILE_ARTIFACT_DIR)
            resolved.profile_logged = True
            log.info("Logged the drift profile of %s as runs:/%s/%s (%s)", label, run_id, PROFILE_ARTIFACT_PATH,
                     resolved.profile_source)
        else:
            local = path
        cache.put(resolved.model_name, resolved.model_version, profile.digest, local)
    if digest != profile.digest:
        try:
            client.set_model_version_tag(resolved.model_name, resolved.model_version, PROFILE_DIGEST_TAG, profile.digest)
        except Exception as err:  # noqa: BLE001 - without the tag the next check downloads again; no harm
            log.warning("Could not tag %s with the profile's sha256 (%s); the next check downloads it again",
                        label, str(err)[:200])
    return profile


def _build_profile_from_features(
    client: Any, ref: ResolvedReference, tmp: str, max_rows: int | None, build: Any
) -> Any:
    import pandas as pd

    from mlops_provider.exceptions import MlopsConfigurationError

    try:
        features = client.download_artifacts(ref.run_id, REFERENCE_FEATURES_PATH, tmp)
    except Exception as err:  # noqa: BLE001
        raise MlopsConfigurationError(
            f"{ref.description} (version {ref.model_version}): its run {ref.run_id} has neither a drift profile "
            f"({PROFILE_ARTIFACT_PATH}) nor a training-feature sample ({REFERENCE_FEATURES_PATH}): {str(err)[:200]}"
        ) from None
    frame = pd.read_parquet(features)
    profile = build(
        frame,
        max_rows=max_rows,
        metadata={
            "model_name": ref.model_name,
            "model_version": ref.model_version,
            "run_id": ref.run_id,
            "source": f"runs:/{ref.run_id}/{REFERENCE_FEATURES_PATH}",
        },
    )
    # the model's outputs on its evaluation data, when training stored them: the prediction drift reference
    ref.outputs_missing = _attach_outputs(client, ref, profile, tmp)
    log.info("Built the drift profile of %s from %s", ref.description, REFERENCE_FEATURES_PATH)
    ref.frame = frame
    return profile


def _has_outputs(profile: Any) -> bool:
    from mlops_provider.core.prediction_drift import has_outputs

    return has_outputs(profile)


def _attach_outputs(client: Any, ref: ResolvedReference, profile: Any, tmp: str) -> str | None:
    """
    Add the outputs stored on the version's run (``reference/outputs.parquet`` and ``.json``) to
    ``profile``; returns ``None`` when added, else why the version has none (a message for the summary).
    """
    import json

    import pandas as pd

    from mlops_provider.core.drift import DriftInputError
    from mlops_provider.core.prediction_drift import OutputSpec, add_outputs

    folder = os.path.join(tmp, "outputs")
    try:
        spec_path = client.download_artifacts(ref.run_id, OUTPUTS_SPEC_PATH, folder)
        data_path = client.download_artifacts(ref.run_id, OUTPUTS_ARTIFACT_PATH, folder)
    except Exception:  # noqa: BLE001 - MLflow raises RestException/MlflowException/OSError for a missing file
        return (
            f"{ref.model_name} v{ref.model_version} has no stored outputs ({OUTPUTS_ARTIFACT_PATH} on run "
            f"{ref.run_id}): it was trained before prediction drift existed, or not by TrainModelOperator. "
            "Retrain it (TrainModelOperator stores them) to check prediction drift"
        )
    try:
        with open(spec_path, encoding="utf-8") as fh:
            spec = OutputSpec.from_dict(json.load(fh))
        add_outputs(profile, pd.read_parquet(data_path), spec, source=f"runs:/{ref.run_id}/{OUTPUTS_ARTIFACT_PATH}")
    except (DriftInputError, ValueError, OSError) as err:
        from mlops_provider.exceptions import MlopsConfigurationError

        raise MlopsConfigurationError(
            f"{ref.description} (version {ref.model_version}): the stored outputs on run {ref.run_id} "
            f"cannot be read: {str(err)[:300]}"
        ) from None
    return None


def resolve_drift_reference(
    reference: Any,
    *,
    mlflow_conn_id: str = MlflowHook.default_conn_name,
    columns: Sequence[str] | None = None,
    max_rows: int | None = None,
    outputs: bool = False,
) -> ResolvedReference:
    """
    Turn a drift reference argument into something :func:`check_drift` accepts.

    With ``outputs`` (prediction drift), a model version's profile also holds the model's outputs on its
    evaluation data when its run stores them (``ResolvedReference.outputs_missing`` says why not).

    :param reference: ``models:/<name>@<alias>`` or ``models:/<name>/<version>`` (the profile stored on
        the version's run, built from ``reference/features.parquet`` and logged on first use), a local
        profile path (``*.bin``, or ``*.json`` of the older format), a :class:`~mlops_provider.core.drift.ReferenceProfile`, or a dataset
        reference (path/URI, dict or ``DatasetRef``).
    """
    from mlops_provider.core.datasets import load_dataset
    from mlops_provider.core.drift import ReferenceProfile

    if isinstance(reference, ReferenceProfile):
        return ResolvedReference(reference, "profile")
    model = parse_model_uri(reference)
    if model:
        return _profile_from_model(
            MlflowHook(mlflow_conn_id=mlflow_conn_id), *model, max_rows=max_rows, outputs=outputs
        )
    if isinstance(reference, str) and reference.endswith((".json", ".bin")) and "://" not in reference:
        from mlops_provider.core.drift import ProfileError
        from mlops_provider.exceptions import MlopsConfigurationError

        try:
            return ResolvedReference(ReferenceProfile.load(reference), reference)
        except (ProfileError, OSError) as err:
            raise MlopsConfigurationError(f"Drift profile {reference}: {err}") from None
    loaded = load_dataset(reference, columns=list(columns) if columns else None)
    return ResolvedReference(loaded.frame, loaded.uri, frame=loaded.frame)


def run_drift_check(
    reference: Any,
    current: Any,
    *,
    mlflow_conn_id: str = MlflowHook.default_conn_name,
    columns: Sequence[str] | None = None,
    column_methods: Mapping[str, str] | None = None,
    column_thresholds: Mapping[str, float] | None = None,
    drift_share: float = 0.5,
    max_rows: int | None = None,
    prediction_drift: bool = False,
    quality: bool = False,
) -> DriftCheckOutcome:
    """
    Run a drift check of the dataset ``current`` against ``reference`` (see :func:`resolve_drift_reference`).

    With ``prediction_drift``, the batch is also scored with the reference's model version and its
    outputs are compared with the outputs stored with that version (:func:`check_batch_outputs`).  With
    ``quality``, the batch's quality figures are measured (:func:`mlops_provider.core.quality.batch_quality`).

    Bad data or arguments raise :class:`~mlops_provider.exceptions.DatasetError` or
    :class:`~mlops_provider.exceptions.MlopsConfigurationError` (no retry can fix them).
    """
    from mlops_provider.core.datasets import load_dataset
    from mlops_provider.core.drift import DriftInputError, ProfileError, check_drift
    from mlops_provider.exceptions import DatasetError, MlopsConfigurationError

    resolved = resolve_drift_reference(
        reference, mlflow_conn_id=mlflow_conn_id, columns=columns, max_rows=max_rows, outputs=prediction_drift
    )
    if prediction_drift and not resolved.model_name:
        raise MlopsConfigurationError(
            f"prediction_drift needs a model version as the reference (models:/<name>@<alias> or "
            f"models:/<name>/<version>), to score the batch and read its stored outputs; got {resolved.description}"
        )
    # scoring needs every input of the model, not only the checked columns
    loaded = load_dataset(current, columns=None if prediction_drift else (list(columns) if columns else None))
    full = loaded.frame
    frame = full
    if columns and prediction_drift:
        absent = [c for c in columns if c not in full.columns]
        if absent:
            raise DatasetError(f"{loaded.uri} lacks the column(s) to check {absent[:20]}")
        frame = full[list(columns)]
    try:
        result = check_drift(
            resolved.reference,
            frame,
            column_methods=column_methods,
            column_thresholds=column_thresholds,
            drift_share=float(drift_share),
            max_rows=max_rows,
            columns=list(columns) if columns else None,
        )
    except ProfileError as err:
        raise MlopsConfigurationError(f"Drift reference {resolved.description}: {err}") from None
    except DriftInputError as err:
        raise DatasetError(f"Drift check of {loaded.uri} against {resolved.description}: {err}") from None
    outcome = DriftCheckOutcome(result, resolved, frame, loaded.summary())
    if prediction_drift:
        if resolved.outputs_missing:
            outcome.prediction_not_checked = resolved.outputs_missing
        else:
            outcome.prediction, outcome.current_outputs = check_batch_outputs(
                resolved, full, mlflow_conn_id=mlflow_conn_id, batch=loaded.uri
            )
    if quality:
        from mlops_provider.core.quality import batch_quality

        outcome.quality = batch_quality(
            frame, resolved.reference, result,
            None if outcome.prediction is None else outcome.prediction.drift,
        )
    return outcome


def check_batch_outputs(
    resolved: ResolvedReference, frame: pd.DataFrame, *, mlflow_conn_id: str, batch: str = "the batch"
) -> tuple[Any, pd.DataFrame]:
    """
    Score ``frame`` with the reference's model version and compare its outputs with the stored ones.

    The model is the exact version whose profile is the reference (``models:/<name>/<version>``), and
    the outputs come from the same function that computed the stored ones at training
    (:func:`~mlops_provider.core.prediction_drift.model_outputs`), so a promotion between scoring and
    checking can never pair one version's outputs with another's.  Returns the
    ``PredictionDriftResult`` and the batch's outputs.
    """
    from mlops_provider.core.drift import DriftInputError, is_output_column
    from mlops_provider.core.prediction_drift import OutputSpec, check_prediction_drift, model_outputs
    from mlops_provider.exceptions import DatasetError, MlopsConfigurationError

    profile = resolved.reference
    spec = OutputSpec.from_dict(profile.metadata["outputs"])
    model_uri = f"models:/{resolved.model_name}/{resolved.model_version}"
    model = _load_model(MlflowHook(mlflow_conn_id=mlflow_conn_id), model_uri)
    if spec.has_probabilities and not callable(getattr(model, "predict_proba", None)):
        raise MlopsConfigurationError(
            f"Prediction drift: the stored outputs of {model_uri} hold probabilities, but the model loaded "
            f"from MLflow ({type(model).__name__}) has no predict_proba"
        )
    names = getattr(model, "feature_names_in_", None)
    inputs = [str(c) for c in names] if names is not None else [
        c for c in profile.columns if not is_output_column(c)
    ]
    missing = [c for c in inputs if c not in frame.columns]
    if missing:
        raise DatasetError(
            f"Prediction drift: {batch} lacks the model's input column(s) {missing[:20]}; "
            f"{model_uri} cannot score it"
        )
    try:
        outputs = model_outputs(model, frame[inputs], spec)
    except DriftInputError as err:
        raise MlopsConfigurationError(f"Prediction drift: {model_uri} on {batch}: {err}") from None
    except Exception as err:  # noqa: BLE001 - the model's own error, with the column problems named
        from mlops_provider.operators.prediction import input_problems

        problems = input_problems(frame[inputs], {})
        detail = ("; input problems: " + "; ".join(problems[:5])) if problems else ""
        raise DatasetError(
            f"Prediction drift: {model_uri} failed to score {batch}: {str(err).splitlines()[0][:300]}{detail}"
        ) from None
    try:
        result = check_prediction_drift(profile, outputs, spec=spec)
    except DriftInputError as err:
        raise DatasetError(f"Prediction drift of {batch} against {resolved.description}: {err}") from None
    return result, outputs


def _load_model(hook: MlflowHook, model_uri: str) -> Any:
    """The model as its scikit-learn object (``predict_proba``), else as an MLflow pyfunc (``predict`` only)."""
    from mlops_provider.exceptions import MlopsConfigurationError

    with hook.mlflow_env():
        import mlflow.pyfunc
        import mlflow.sklearn

        try:
            return mlflow.sklearn.load_model(model_uri)
        except Exception as sk_err:  # noqa: BLE001 - not an sklearn model: try the generic flavour
            try:
                return mlflow.pyfunc.load_model(model_uri)
            except Exception as err:  # noqa: BLE001
                translated = hook._translate_error(err)
                if translated is not err:
                    raise translated from None
                raise MlopsConfigurationError(
                    f"Prediction drift: cannot load {model_uri}: {str(err).splitlines()[0][:300]} "
                    f"(as scikit-learn: {str(sk_err).splitlines()[0][:200]})"
                ) from None


def check_drift_arguments(
    where: str,
    *,
    drift_share: Any = 0.5,
    column_methods: Any = None,
    column_thresholds: Any = None,
) -> None:
    """
    Refuse bad drift arguments when the DAG is parsed (templated values are left for ``execute()``).

    Shared by :class:`DriftCheckOperator` and :class:`~mlops_provider.sensors.drift.DriftSensor`;
    raises :class:`~mlops_provider.exceptions.MlopsConfigurationError` naming the allowed values.
    """
    from mlops_provider.core.drift import METHODS
    from mlops_provider.exceptions import MlopsConfigurationError

    check_number(where, "drift_share", drift_share, low=0, high=1, low_open=True)
    for name, value, kind in (("column_methods", column_methods, "method"), ("column_thresholds", column_thresholds, "threshold")):
        if value is None or is_templated(value):
            continue
        if not isinstance(value, Mapping):
            raise MlopsConfigurationError(
                f"{where}: {name} must be a mapping of column name to {kind}; got {type(value).__name__} {value!r:.200}"
            )
        for column, item in value.items():
            if kind == "method":
                check_choice(where, f"{name}[{column!r}]", item, sorted(METHODS))
            else:
                check_number(where, f"{name}[{column!r}]", item, low=0)


def _rendered_share(where: str, value: Any) -> float:
    """``drift_share`` after rendering (a template renders to a string such as ``"0.3"``)."""
    from mlops_provider.exceptions import MlopsConfigurationError

    try:
        share = float(value)
    except (TypeError, ValueError):
        raise MlopsConfigurationError(f"{where}: drift_share must be a number in (0, 1]; got {value!r}") from None
    check_number(where, "drift_share", share, low=0, high=1, low_open=True)
    return share


def describe_column(result: DriftResult, name: str) -> str:
    """``"x (ks 0.0012)"`` or ``"y (missing in current)"`` for logs and error messages."""
    col = result.columns[name]
    if col.score is None:
        return f"{name} ({col.note or 'not tested'})"
    return f"{name} ({col.method} {col.score:.4g})"


def verdict_line(result: DriftResult) -> str:
    """The verdict with what was left out: ``"no drift (0 of 4 columns drifted, ...); all 4 columns tested"``."""
    left_out = result.not_tested()
    if not result.untested_columns:
        left_out = f"all {result.number_of_columns} columns tested" + (f"; {left_out}" if left_out else "")
    return (
        f"{'DRIFT' if result.dataset_drift else 'no drift'} ({result.number_of_drifted_columns} of "
        f"{result.number_of_columns} columns drifted, share {result.share_of_drifted_columns:.3f}, "
        f"threshold {result.drift_share:.3f}); {left_out}"
    )


def _metric_key(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z_\-. /]", "_", text)[:200]


class DriftCheckOperator(LineageMixin, BaseOperator, SkipMixin):
    """
    Check a batch for data drift against a model's reference profile or a reference dataset.

    With default settings the verdicts are those of Evidently 0.7's ``DataDriftPreset`` (see
    ``docs/operators/drift.md``), computed by the provider's engine from a stored reference profile.
    The drift metrics are logged to an MLflow monitoring run tagged with the model version, so drift
    can be plotted over time; optionally an Evidently HTML report on a sample is logged there too
    ("Drift report" link).  When drift is found the task emits an Asset event on
    ``mlops://<model>/drift`` (through the alias ``mlops_drift__<model>``, so nothing is emitted when
    there is no drift) with the summary in the event's ``extra``.

    :param reference: ``models:/<name>@<alias>`` / ``models:/<name>/<version>``, a profile path (``*.bin``, ``*.json``), or
        a dataset reference (templated).
    :param current: dataset reference of the batch to check (templated).
    :param model_name: registered model the drift event is about (not templated: it names the outlet
        alias); defaults to the name in a literal ``models:/`` reference.  Without it no event is emitted.
    :param columns: only check these columns.
    :param column_methods: per-column method (``ks``, ``chisquare``, ``z``, ``wasserstein``,
        ``jensenshannon``, ``psi``).
    :param column_thresholds: per-column threshold.
    :param drift_share: dataset drift when at least this share of columns drifted (default 0.5).
    :param on_failure: what to do when the batch drifted: ``"warn"`` (default: log a warning, record
        the metrics, emit the drift event, succeed), ``"fail"`` (record the metrics, then raise
        :class:`~mlops_provider.exceptions.DriftDetected`; a failed task emits no Asset event), or
        ``"skip"`` (record, emit the event, succeed and skip the downstream tasks, so a drifted batch
        goes no further).  To run a task *only* on drift, put a ``@task.short_circuit`` on
        ``summary["dataset_drift"]`` after this task (see ``dags/example_drift_check.py``).
        Renamed from ``on_drift``.
    :param html_report: log Evidently's HTML report of a sample as ``drift/report.html``.
    :param report_sample_rows: rows of each side in that report (default 20 000).
    :param log_to_mlflow: log metrics to a monitoring run (default true).
    :param monitoring_experiment: MLflow experiment of monitoring runs (default ``<model>-monitoring``
        or ``drift-monitoring``).
    :param max_reference_rows: profile size cap (see :data:`mlops_provider.core.drift.DEFAULT_MAX_ROWS`).
    :param prediction_drift: also check the model's outputs (needs a ``models:/`` reference): the batch
        is scored with the reference's model version and its outputs (class, probability of the positive
        class, or score) are compared with that version's outputs on its evaluation data, stored at
        training.  Reported apart (``summary["prediction_drift"]``, ``prediction_drift.*`` metrics,
        ``drift/prediction_report.html``); on prediction drift the task emits an Asset event on
        ``mlops://<model>/prediction_drift`` (alias ``mlops_prediction_drift__<model>``), and
        ``on_failure`` applies as to feature drift.  A version without stored outputs is reported
        ``not_checked`` with the reason (a warning), never as "no prediction drift".
    :param batch_step: MLflow step of this batch's quality figures (``quality.*`` metrics): its ordinal
        in the stream of batches, stable across reruns (templated; default: the DAG run's logical date,
        or its ``run_after``, in epoch seconds).
    :param mlflow_conn_id: the MLflow connection.
    """

    template_fields: Sequence[str] = (
        "reference",
        "current",
        "columns",
        "column_methods",
        "column_thresholds",
        "drift_share",
        "monitoring_experiment",
        "batch_step",
    )
    operator_extra_links = (MlflowRunLink(), DriftReportLink())
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        reference: Any,
        current: Any,
        model_name: str | None = None,
        columns: Sequence[str] | None = None,
        column_methods: Mapping[str, str] | None = None,
        column_thresholds: Mapping[str, float] | None = None,
        drift_share: float = 0.5,
        on_failure: str = WARN,
        html_report: bool = False,
        report_sample_rows: int = 20_000,
        log_to_mlflow: bool = True,
        monitoring_experiment: str | None = None,
        max_reference_rows: int | None = None,
        prediction_drift: bool = False,
        batch_step: int | str | None = None,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        where = f"DriftCheckOperator {kwargs.get('task_id')!r}"
        reject_renamed(where, kwargs, {"on_drift": "on_failure"})
        check_choice(where, "on_failure", on_failure, DRIFT_ON_FAILURE)
        check_drift_arguments(
            where, drift_share=drift_share, column_methods=column_methods, column_thresholds=column_thresholds
        )
        check_choice(where, "html_report", html_report, (True, False))
        check_choice(where, "log_to_mlflow", log_to_mlflow, (True, False))
        check_number(where, "report_sample_rows", report_sample_rows, low=1, integer=True)
        check_number(where, "max_reference_rows", max_reference_rows, low=1, integer=True, optional=True)
        check_choice(where, "prediction_drift", prediction_drift, (True, False))
        if not is_templated(batch_step):
            step = batch_step
            if isinstance(step, str) and step.strip().isdigit():
                step = int(step)  # a literal "3", as a rendered template gives it
            check_number(where, "batch_step", None if step == "" else step, low=0, integer=True, optional=True)
        if prediction_drift and isinstance(reference, str) and not is_templated(reference) and not parse_model_uri(reference):
            from mlops_provider.exceptions import MlopsConfigurationError

            raise MlopsConfigurationError(
                f"{where}: prediction_drift=True needs reference='models:/<name>@<alias>' or "
                f"'models:/<name>/<version>' (the model scores the batch; its stored outputs are the reference); "
                f"got {reference!r:.200}"
            )
        event_model = model_name or (parse_model_uri(reference) or (None,))[0]
        if event_model:
            outlets = [AssetAlias(drift_asset_alias(event_model))]
            if prediction_drift:
                outlets.append(AssetAlias(prediction_drift_asset_alias(event_model)))
            kwargs.setdefault("outlets", outlets)
        super().__init__(**kwargs)
        self.reference = reference
        self.current = current
        self.model_name = model_name
        self.event_model = event_model
        self.columns = columns
        self.column_methods = column_methods
        self.column_thresholds = column_thresholds
        self.drift_share = drift_share
        self.on_failure = on_failure
        self.html_report = html_report
        self.report_sample_rows = report_sample_rows
        self.log_to_mlflow = log_to_mlflow
        self.monitoring_experiment = monitoring_experiment
        self.max_reference_rows = max_reference_rows
        self.prediction_drift = prediction_drift
        self.batch_step = batch_step
        self.mlflow_conn_id = mlflow_conn_id

    @cached_property
    def hook(self) -> MlflowHook:
        return MlflowHook(mlflow_conn_id=self.mlflow_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_provider.exceptions import DriftDetected

        where = f"DriftCheckOperator {self.task_id!r}"
        # the templated arguments, now rendered
        share = _rendered_share(where, self.drift_share)
        check_drift_arguments(
            where, drift_share=share, column_methods=self.column_methods, column_thresholds=self.column_thresholds
        )
        outcome = run_drift_check(
            self.reference,
            self.current,
            mlflow_conn_id=self.mlflow_conn_id,
            columns=self.columns,
            column_methods=self.column_methods,
            column_thresholds=self.column_thresholds,
            drift_share=share,
            max_rows=self.max_reference_rows,
            prediction_drift=self.prediction_drift,
            quality=self.log_to_mlflow,
        )
        result = outcome.result
        summary = {**outcome.summary(), "on_failure": self.on_failure}
        self._lineage = records.drift(self.current, self.mlflow_conn_id, summary, outcome.reference)
        self.log.info(
            "Drift check of %s against %s: %s",
            summary["current"].get("uri"),
            outcome.reference.description,
            verdict_line(result),
        )
        for name in result.drifted_columns[:20]:
            col = result.columns[name]
            self.log.info(
                "  drifted: %s", describe_column(result, name) + (f", threshold {col.threshold}" if col.threshold is not None else "")
            )
        prediction = outcome.prediction
        if prediction is not None:
            self.log.info("Prediction drift of %s: %s", summary["current"].get("uri"), prediction.verdict_line())
        elif outcome.prediction_not_checked:
            self.log.warning("Prediction drift NOT checked: %s", outcome.prediction_not_checked)
        if self.log_to_mlflow:
            summary.update(self._log_monitoring_run(context, outcome, summary))
        if result.dataset_drift and self.event_model:
            summary["event"] = self._emit_event(context, summary)
        predicted_drift = prediction is not None and prediction.drift
        if predicted_drift and self.event_model:
            summary["prediction_drift"]["event"] = self._emit_prediction_event(context, summary, prediction)
        if result.dataset_drift or predicted_drift:
            evidence = (
                summary.get("report_url")
                or summary.get("monitoring_run_url")
                or summary.get("monitoring_run_id")
            )
            parts = []
            if result.dataset_drift:
                parts.append(
                    f"Data drift in {summary['current'].get('uri')} against {outcome.reference.description}: "
                    f"{result.number_of_drifted_columns} of {result.number_of_columns} columns drifted "
                    f"(share {result.share_of_drifted_columns:.3f} >= {result.drift_share}); first: "
                    + ", ".join(describe_column(result, n) for n in result.drifted_columns[:5])
                )
            if predicted_drift:
                parts.append(
                    f"Prediction drift in {summary['current'].get('uri')} against {outcome.reference.description}: "
                    + ", ".join(prediction.describe(n) for n in prediction.drifted_outputs)
                )
            message = "; ".join(parts) + (f"; full report: {evidence}" if evidence else "")
            if self.on_failure == FAIL:
                raise DriftDetected(message)
            self.log.warning("%s (on_failure=%r)", message, self.on_failure)
            if self.on_failure == SKIP:
                self._skip_downstream(context, summary)
        return summary

    # ------------------------------------------------------------------ events and branching

    def _emit_event(self, context: Context, summary: dict[str, Any]) -> dict[str, Any]:
        from mlops_provider._airflow_tags import producer

        uri = drift_asset_uri(self.event_model)
        extra = {
            k: summary[k]
            for k in (
                "dataset_drift",
                "share_of_drifted_columns",
                "number_of_drifted_columns",
                "number_of_columns",
                "current_rows",
                "reference_rows",
                "model_version",
                "monitoring_run_id",
            )
            if k in summary
        }
        extra["drifted_columns"] = summary["drifted_columns"][:50]
        extra["current_uri"] = summary["current"].get("uri")
        # one unambiguous shape with the decay event: what, which model, the verdict and its threshold, who
        extra.update({
            "reason": "drift",
            "model_name": self.event_model,
            "drift_share_threshold": summary.get("drift_share"),
            "summary": (
                f"{summary.get('number_of_drifted_columns')} of {summary.get('number_of_columns')} columns drifted "
                f"(share {summary.get('share_of_drifted_columns', 0):.2f} >= threshold {summary.get('drift_share')}) "
                f"in {extra['current_uri']} against {self.event_model} v{summary.get('model_version')}"
            ),
            "producer": producer(context, self.task_id),
        })
        context["outlet_events"][AssetAlias(drift_asset_alias(self.event_model))].add(Asset(uri), extra=extra)
        self.log.info("Emitted an Asset event on %s", uri)
        return {"asset": uri, "alias": drift_asset_alias(self.event_model)}

    def _emit_prediction_event(self, context: Context, summary: dict[str, Any], prediction: Any) -> dict[str, Any]:
        """The prediction drift event: the drift event's shape (model, version, verdict, thresholds, summary)."""
        uri = prediction_drift_asset_uri(self.event_model)
        alias = prediction_drift_asset_alias(self.event_model)
        ti = context.get("ti")
        current_uri = summary["current"].get("uri")
        extra = {
            "reason": "prediction_drift",
            "model_name": self.event_model,
            "model_version": summary.get("model_version"),
            "prediction_drift": True,
            "drifted_outputs": prediction.drifted_outputs,
            "outputs": {
                name: {"output": prediction.spec.label(name), "method": col.method, "score": col.score,
                       "threshold": col.threshold, "drifted": col.drifted}
                for name, col in prediction.columns.items()
            },
            "thresholds": {name: col.threshold for name, col in prediction.columns.items()},
            "current_rows": prediction.current_rows,
            "reference_rows": prediction.reference_rows,
            "current_uri": current_uri,
            "monitoring_run_id": summary.get("monitoring_run_id"),
            "summary": (
                f"model outputs drifted: {', '.join(prediction.describe(n) for n in prediction.drifted_outputs)} "
                f"in {current_uri} against {self.event_model} v{summary.get('model_version')}'s outputs on its "
                "evaluation data"
            )[:500],
            "producer": {"dag_id": getattr(ti, "dag_id", None), "run_id": context.get("run_id"),
                         "task_id": getattr(ti, "task_id", self.task_id)},
        }
        context["outlet_events"][AssetAlias(alias)].add(Asset(uri), extra=extra)
        self.log.info("Emitted an Asset event on %s", uri)
        return {"asset": uri, "alias": alias}

    def _skip_downstream(self, context: Context, summary: dict[str, Any]) -> None:
        tasks = [t for t in context["task"].get_flat_relatives(upstream=False) if not t.is_teardown]
        if not tasks:
            return
        self.log.info("Drift (on_failure='skip'): skipping downstream tasks %s", [t.task_id for t in tasks])
        context["ti"].xcom_push(key="return_value", value=summary)
        self.skip(ti=context["ti"], tasks=tasks)

    # ------------------------------------------------------------------ MLflow

    def _log_monitoring_run(
        self, context: Context, outcome: DriftCheckOutcome, summary: dict[str, Any]
    ) -> dict:
        """Log the drift metrics to a monitoring run (reused when the task is retried)."""
        import time

        from mlflow.entities import Metric, RunTag

        ref = outcome.reference
        result = outcome.result
        client = self.hook.get_client()
        experiment = self.monitoring_experiment or (
            f"{ref.model_name or self.event_model}-monitoring"
            if (ref.model_name or self.event_model)
            else "drift-monitoring"
        )
        exp = client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
        ti = context.get("ti")
        ti_key = "/".join(
            str(x)
            for x in (
                getattr(ti, "dag_id", "manual"),
                context.get("run_id", "manual"),
                getattr(ti, "task_id", self.task_id),
                getattr(ti, "map_index", -1),
            )
        )
        found = client.search_runs(
            [exp_id], filter_string=f"tags.`mlops.airflow_ti` = '{ti_key}'", max_results=1
        )
        run = (
            found[0]
            if found
            else client.create_run(exp_id, run_name=run_name(
                "drift", f"{ref.model_name or self.event_model or ''} {batch_label(summary['current'].get('uri'))}",
                context))
        )
        run_id = run.info.run_id
        # the run is reused on retry: its start time stamps the per-batch figures, so a rerun logs the
        # same (key, step, timestamp, value) points, which MLflow's stores keep once
        started = int(run.info.start_time or time.time() * 1000)
        now = int(time.time() * 1000)
        metrics = [
            Metric("drift.dataset_drift", float(result.dataset_drift), now, 0),
            Metric("drift.share_of_drifted_columns", result.share_of_drifted_columns, now, 0),
            Metric("drift.drift_share_threshold", float(result.drift_share), now, 0),
            Metric("drift.number_of_drifted_columns", float(result.number_of_drifted_columns), now, 0),
            Metric("drift.current_rows", float(result.current_rows), now, 0),
        ]
        for name, col in result.columns.items():
            if col.score is not None:
                # a distance beyond the float range (values near 1e308) is logged as the largest float
                score = max(min(float(col.score), sys.float_info.max), -sys.float_info.max)
                metrics.append(Metric(_metric_key(f"drift.score.{name}"), score, now, 0))
            metrics.append(Metric(_metric_key(f"drift.drifted.{name}"), float(col.drifted), now, 0))
        prediction = outcome.prediction
        if prediction is not None:
            metrics.append(Metric("prediction_drift.drift", float(prediction.drift), now, 0))
            for name, col in prediction.columns.items():
                # prediction, proba, or proba.<class> for a multiclass model's per-class probability
                key = "proba." + name.split(":", 1)[1] if name.startswith("__proba__:") else name.strip("_")
                if col.score is not None:
                    score = max(min(float(col.score), sys.float_info.max), -sys.float_info.max)
                    metrics.append(Metric(_metric_key(f"prediction_drift.score.{key}"), score, now, 0))
                metrics.append(Metric(_metric_key(f"prediction_drift.drifted.{key}"), float(col.drifted), now, 0))
        step = self._batch_step(context)
        quality_metrics = {}
        if outcome.quality is not None:
            from mlops_provider.core.quality import quality_metrics as named

            quality_metrics = named(outcome.quality)
        tags = {
            "mlops.kind": "drift_check",
            "mlops.airflow_ti": ti_key,
            "airflow.dag_id": str(getattr(ti, "dag_id", None) or "manual"),
            "airflow.run_id": str(context.get("run_id") or "manual"),
            "airflow.task_id": str(getattr(ti, "task_id", self.task_id)),
            "mlops.reference": ref.description[:500],
            "mlops.current_uri": str(summary["current"].get("uri"))[:500],
            "mlops.current_digest": str(summary["current"].get("digest")),
            "mlops.dataset_drift": str(result.dataset_drift).lower(),
        }
        if prediction is not None:
            tags["mlops.prediction_drift"] = str(prediction.drift).lower()
        elif outcome.prediction_not_checked:
            tags["mlops.prediction_drift"] = "not_checked"
            tags["mlops.prediction_drift_reason"] = outcome.prediction_not_checked[:500]
        if quality_metrics:
            tags["mlops.batch_step"] = str(step)
            metrics.extend(Metric(k, v, started, step) for k, v in quality_metrics.items())
        if ref.model_name:
            tags.update({"mlops.model_name": ref.model_name, "mlops.model_version": str(ref.model_version)})
            tags["mlops.model_run_id"] = str(ref.run_id)
        for start in range(0, len(metrics), 900):
            client.log_batch(
                run_id,
                metrics=metrics[start : start + 900],
                tags=[RunTag(k, v) for k, v in tags.items()] if start == 0 else [],
            )
        out: dict[str, Any] = {"monitoring_run_id": run_id}
        if quality_metrics:
            out["quality_run_id"] = self._log_quality_timeline(
                client, exp_id, ref.model_name or self.event_model, ref.description, step, started, quality_metrics
            )
            out["batch_step"] = step
        if self.html_report:
            out.update(self._log_report(client, run_id, exp_id, outcome))
            if prediction is not None:
                out.update(self._log_prediction_report(client, run_id, exp_id, outcome))
        client.set_terminated(run_id, "FINISHED")
        if ref.model_name and ref.model_version:
            client.set_model_version_tag(ref.model_name, ref.model_version, "mlops.last_drift_run_id", run_id)
            client.set_model_version_tag(
                ref.model_name,
                ref.model_version,
                "mlops.last_dataset_drift",
                str(result.dataset_drift).lower(),
            )
        url = self.hook.run_url(run_id, exp_id)
        out["monitoring_run_url"] = url
        record_link(self, MlflowRunLink.name, url)
        if not out.get("report_url"):
            # no HTML report (html_report=False): the run's page shows the per-column scores and verdicts
            record_link(self, DriftReportLink.name, url)
        return out

    def _batch_step(self, context: Context) -> int:
        """The batch's step: ``batch_step`` (rendered), else the DAG run's logical date (or run_after) in seconds."""
        from mlops_provider.exceptions import MlopsConfigurationError

        if self.batch_step not in (None, ""):
            try:
                step = int(str(self.batch_step).strip())
            except ValueError:
                step = -1
            if step < 0:
                raise MlopsConfigurationError(
                    f"DriftCheckOperator {self.task_id!r}: batch_step must be a non-negative integer; "
                    f"got {self.batch_step!r}"
                )
            return step
        dag_run = context.get("dag_run")
        when = context.get("logical_date") or getattr(dag_run, "logical_date", None) or getattr(dag_run, "run_after", None)
        return int(when.timestamp()) if when is not None else 0

    def _log_quality_timeline(
        self,
        client: Any,
        exp_id: str,
        model_name: str | None,
        reference: str,
        step: int,
        timestamp: int,
        metrics: dict[str, float],
    ) -> str:
        """
        Log the batch's quality figures at ``step`` in the model's data-quality run (one run per model and
        monitoring experiment, ``mlops.kind = data_quality``), so MLflow charts them across batches.

        Concurrent tasks may both create the run: each then keeps the oldest and deletes its own extra one.
        """
        from mlflow.entities import Metric, RunTag

        subject = model_name or reference
        quoted = subject.replace("\\", "\\\\").replace("'", "\\'")
        query = f"tags.`mlops.kind` = 'data_quality' and tags.`mlops.quality_subject` = '{quoted}'"

        def canonical() -> Any:
            runs = client.search_runs([exp_id], filter_string=query, max_results=50)
            return min(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id)) if runs else None

        run = canonical()
        if run is None:
            mine = client.create_run(exp_id, run_name=f"data quality {subject}"[:250], tags={
                "mlops.kind": "data_quality", "mlops.quality_subject": subject[:500],
                **({"mlops.model_name": model_name} if model_name else {}),
            })
            client.set_terminated(mine.info.run_id, "FINISHED")
            run = canonical() or mine
            if run.info.run_id != mine.info.run_id:
                client.delete_run(mine.info.run_id)
        items = [Metric(k, float(v), timestamp, step) for k, v in metrics.items()]
        for start in range(0, len(items), 900):
            client.log_batch(run.info.run_id, metrics=items[start : start + 900],
                             tags=[RunTag("mlops.last_batch_step", str(step))] if start == 0 else [])
        return run.info.run_id

    def _log_prediction_report(
        self, client: Any, run_id: str, exp_id: str, outcome: DriftCheckOutcome
    ) -> dict[str, Any]:
        """Evidently's report of the outputs (``ValueDrift`` per output), logged as ``drift/prediction_report.html``."""
        import pandas as pd

        ref_run = outcome.reference.run_id
        with tempfile.TemporaryDirectory(prefix="mlops-drift-") as tmp:
            try:
                reference = pd.read_parquet(client.download_artifacts(ref_run, OUTPUTS_ARTIFACT_PATH, tmp))
            except Exception as err:  # noqa: BLE001 - the report is optional; say why it is missing
                self.log.warning("No prediction drift report: the stored outputs could not be read (%s)", err)
                return {"prediction_report": None}
        n = int(self.report_sample_rows)
        path = render_prediction_report(
            _sample(reference, n), _sample(outcome.current_outputs, n), outcome.prediction.spec
        )
        try:
            client.log_artifact(run_id, path, artifact_path=os.path.dirname(PREDICTION_REPORT_ARTIFACT_PATH))
        finally:
            shutil.rmtree(os.path.dirname(path), ignore_errors=True)
        return {
            "prediction_report": f"runs:/{run_id}/{PREDICTION_REPORT_ARTIFACT_PATH}",
            "prediction_report_url": self.hook.artifact_url(run_id, PREDICTION_REPORT_ARTIFACT_PATH, exp_id),
        }

    def _log_report(
        self, client: Any, run_id: str, exp_id: str, outcome: DriftCheckOutcome
    ) -> dict[str, Any]:
        """Evidently's HTML report on a sample of both sides, logged as ``drift/report.html``."""
        reference_frame = outcome.reference.frame
        if reference_frame is None and outcome.reference.run_id:
            reference_frame = self._download_features(client, outcome.reference.run_id)
        if reference_frame is None:
            self.log.warning("No reference rows to render an HTML report from (profile-only reference)")
            return {"report": None}
        n = int(self.report_sample_rows)
        current = outcome.current_frame
        cols = [c for c in reference_frame.columns if c in current.columns]
        path = render_evidently_report(_sample(reference_frame[cols], n), _sample(current[cols], n))
        try:
            client.log_artifact(run_id, path, artifact_path=os.path.dirname(REPORT_ARTIFACT_PATH))
        finally:
            shutil.rmtree(os.path.dirname(path), ignore_errors=True)
        out: dict[str, Any] = {"report": f"runs:/{run_id}/{REPORT_ARTIFACT_PATH}"}
        url = self.hook.artifact_url(run_id, REPORT_ARTIFACT_PATH, exp_id)
        out["report_url"] = url
        record_link(self, DriftReportLink.name, url)
        return out

    @staticmethod
    def _download_features(client: Any, run_id: str) -> pd.DataFrame | None:
        import pandas as pd

        with tempfile.TemporaryDirectory(prefix="mlops-drift-") as tmp:
            try:
                return pd.read_parquet(client.download_artifacts(run_id, REFERENCE_FEATURES_PATH, tmp))
            except Exception:  # noqa: BLE001 - report is optional
                return None


def _sample(frame: pd.DataFrame, n: int) -> pd.DataFrame:
    return frame if len(frame) <= n else frame.sample(n=n, random_state=0)


def render_evidently_report(reference: pd.DataFrame, current: pd.DataFrame) -> str:
    """Run ``Report([DataDriftPreset()])`` and write its HTML to a temporary file; returns the path."""
    import warnings

    from evidently import Report
    from evidently.presets import DataDriftPreset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot = Report([DataDriftPreset()]).run(current, reference)
    # the artifact must be called report.html: write it into a private directory of its own
    path = os.path.join(tempfile.mkdtemp(prefix="mlops-drift-report-"), "report.html")
    snapshot.save_html(path)
    return path


def render_prediction_report(reference: pd.DataFrame, current: pd.DataFrame, spec: Any) -> str:
    """Evidently's ``ValueDrift`` of each output column (types fixed by the output) as HTML; returns the path."""
    import warnings

    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    types = spec.types()
    definition = DataDefinition(
        numerical_columns=[c for c, t in types.items() if t == "num"],
        categorical_columns=[c for c, t in types.items() if t == "cat"],
    )
    cols = list(types)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot = Report([ValueDrift(column=c) for c in cols]).run(
            Dataset.from_pandas(current[cols], data_definition=definition),
            Dataset.from_pandas(reference[cols], data_definition=definition),
        )
    path = os.path.join(tempfile.mkdtemp(prefix="mlops-drift-report-"), "prediction_report.html")
    snapshot.save_html(path)
    return path
