"""Domain exceptions raised by the provider.

Each message says what failed, by how much, and where the full evidence is.  Exceptions that a retry
cannot fix derive from :class:`airflow.sdk.exceptions.AirflowFailException` so Airflow does not retry them.
"""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowException, AirflowFailException


class MlopsProviderError(AirflowException):
    """Base class for errors raised by the provider that a retry may fix."""


class MlopsConfigurationError(AirflowFailException):
    """A bad argument, connection field or definition: retrying cannot help."""


class MlflowConnectionError(MlopsProviderError):
    """The MLflow tracking or registry server could not be reached or refused the request."""


class MlflowAuthenticationError(AirflowFailException):
    """The MLflow server rejected the credentials of the connection."""


class DatasetError(AirflowFailException):
    """A dataset reference could not be read, or the data is unusable (empty, missing columns)."""


class DataValidationFailed(AirflowFailException):
    """A batch failed its expectation suite under ``on_failure="fail"``."""


class TriggerEventError(AirflowFailException):
    """A deferred task resumed with a malformed trigger event (a bug or a bad spec; retrying cannot help)."""


class DriftDetected(AirflowFailException):
    """Dataset drift was found under ``on_failure="fail"`` (the drift operator; its default is ``"warn"``)."""


class PromotionRejected(AirflowFailException):
    """The promotion gate did not bless the challenger under ``on_failure="fail"``."""


class ChampionMovedError(AirflowFailException):
    """Compare-and-set failed: the champion alias moved since the decision was taken."""


class LabelsNotScored(AirflowFailException):
    """A label file landed, but its batch was not scored (nor quarantined) within the wait: no decay check."""


class PipelineCheckFailed(AirflowFailException):
    """A CI check of a proposed pipeline definition failed (component tests, DAG integrity, data contract)."""


class PipelineRolledBack(AirflowFailException):
    """The post-deployment check failed: the champion and the pipeline definition were rolled back."""
