"""Estimators for tests that need to see inside a training task (importable by dotted path, so MLflow's
skops format can save and load them)."""

from __future__ import annotations

import os
import signal

from sklearn.linear_model import LogisticRegression

#: Sizes of the training sets :class:`RecordingClassifier` was fitted on in this process.
FIT_CALLS: list[int] = []


class RecordingClassifier(LogisticRegression):
    """
    A LogisticRegression that records each fit and, when it predicts inside an MLflow run (the training
    operator's signature step), either kills its own process with SIGKILL while ``kill_file`` exists
    (a try killed in the middle of logging its run) or raises once if ``fail_file`` exists (it deletes
    the file, so the retry succeeds).
    """

    def __init__(self, kill_file: str = "", fail_file: str = "", C: float = 1.0, max_iter: int = 100) -> None:
        super().__init__(C=C, max_iter=max_iter)
        self.kill_file = kill_file
        self.fail_file = fail_file

    def fit(self, X, y, sample_weight=None):
        FIT_CALLS.append(len(X))
        return super().fit(X, y, sample_weight)

    def predict(self, X):
        import mlflow

        in_run = mlflow.active_run() is not None
        if in_run and self.kill_file and os.path.exists(self.kill_file):
            os.kill(os.getpid(), signal.SIGKILL)
        if in_run and self.fail_file and os.path.exists(self.fail_file):
            os.remove(self.fail_file)
            raise RuntimeError("lost the worker's disk while logging (test)")
        return super().predict(X)
