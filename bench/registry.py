"""Bench: HTTP requests per registration/promotion, and train-and-log overhead of TrainModelOperator.

Starts a real ``mlflow server`` on 127.0.0.1 (SQLite backend), then

1. counts the HTTP requests the provider sends to it (every ``requests.Session.send`` in this
   process whose URL is the server) for one registration, a retried registration, one promotion
   and one rollback (targets: promotion <= 5);
2. times ``TrainModelOperator.execute`` against a plain script making the same sklearn and MLflow
   calls (load parquet, split, fit, score, log params/metrics/inputs/model/reference sample), on
   the same data, alternating, and prints the medians and their ratio (target <= 1.1).

The operator runs with a hand-made minimal context (dag id, run id, try number): this is a bench of
the operator's own work, not of Airflow's task runner.

Usage: ``.venv/bin/python bench/registry.py [--rows 20000] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ["MLFLOW_ENABLE_ASYNC_LOGGING"] = "false"

ESTIMATOR = "sklearn.ensemble.HistGradientBoostingClassifier"
PARAMS = {"max_iter": 50}


class RequestCounter:
    """Counts HTTP requests sent to ``base_url`` by ``requests`` in this process."""

    def __init__(self, base_url: str) -> None:
        import requests

        self.base_url = base_url
        self.calls: list[str] = []
        self._orig = requests.Session.send
        counter = self

        def send(session, request, **kwargs):
            if request.url.startswith(counter.base_url):
                counter.calls.append(f"{request.method} {request.url[len(counter.base_url):].split('?')[0]}")
            return counter._orig(session, request, **kwargs)

        requests.Session.send = send

    def measure(self, hook, fn):
        start = len(self.calls)
        with hook.mlflow_env():  # as the operators do: one credential scope around the primitive
            result = fn()
        return result, self.calls[start:]


def make_data(path: Path, rows: int) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"f{i}": rng.normal(size=rows) for i in range(10)})
    frame["id"] = np.arange(rows)
    frame["y"] = (frame["f0"] + frame["f1"] * frame["f2"] + rng.normal(scale=0.5, size=rows) > 0).astype(int)
    frame.to_parquet(path, index=False)


def plain_script(data: Path, experiment: str) -> float:
    """The same sklearn and MLflow calls, written by hand."""
    import mlflow
    import mlflow.sklearn
    import pandas as pd
    import skops.io
    from mlflow.models import infer_signature
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import get_scorer
    from sklearn.model_selection import train_test_split

    start = time.perf_counter()
    frame = pd.read_parquet(data)
    features = [c for c in frame.columns if c not in ("id", "y")]
    train, test = train_test_split(frame, test_size=0.2, random_state=42, stratify=frame["y"])
    model = HistGradientBoostingClassifier(**PARAMS).fit(train[features], train["y"])
    scores = {}
    for name, scorer, sign in (("accuracy", "accuracy", 1), ("f1", "f1", 1), ("roc_auc", "roc_auc", 1),
                               ("log_loss", "neg_log_loss", -1)):
        scores[name] = sign * get_scorer(scorer)(model, test[features], test["y"])
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name="plain"):
        mlflow.log_params({"estimator": ESTIMATOR, **PARAMS})
        mlflow.log_metrics(scores)
        mlflow.log_input(mlflow.data.from_pandas(train, source=str(data), targets="y", name="training"), "training")
        mlflow.log_input(mlflow.data.from_pandas(test, source=str(data), targets="y", name="evaluation"), "evaluation")
        probe = test[features].head(200)
        mlflow.sklearn.log_model(
            model, name="model", signature=infer_signature(probe, model.predict(probe)),
            input_example=train[features].head(5),
            pip_requirements=mlflow.sklearn.get_default_pip_requirements(),
            skops_trusted_types=skops.io.get_untrusted_types(data=skops.io.dumps(model)),
        )
        with tempfile.TemporaryDirectory() as tmp:
            sample = train[features].sample(n=min(10_000, len(train)), random_state=42)
            sample.to_parquet(f"{tmp}/features.parquet", index=False)
            mlflow.log_artifact(f"{tmp}/features.parquet", artifact_path="reference")
    return time.perf_counter() - start


def operator_run(data: Path, experiment: str) -> tuple[float, dict]:
    from mlops_provider.operators.training import TrainModelOperator

    op = TrainModelOperator(
        task_id="train", training_data=str(data), target="y", exclude_columns=["id"],
        estimator=ESTIMATOR, estimator_params=PARAMS, experiment_name=experiment,
    )
    context = {
        "dag": SimpleNamespace(dag_id="bench", fileloc=__file__),
        "ti": SimpleNamespace(try_number=1),
        "run_id": f"bench-{uuid.uuid4().hex[:6]}",
    }
    start = time.perf_counter()
    result = op.execute(context)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from tests.helpers.servers import MlflowServer

    workdir = Path(tempfile.mkdtemp(prefix="bench-registry-"))
    os.environ["AIRFLOW_HOME"] = str(workdir / "airflow")
    server = MlflowServer(workdir / "mlflow").start()
    try:
        os.environ["AIRFLOW_CONN_MLFLOW_DEFAULT"] = json.dumps({"conn_type": "mlflow", "host": server.url})
        import mlflow

        from mlops_provider.core.registry import compare_and_set_alias, register_model_version, rollback_alias
        from mlops_provider.hooks.mlflow import MlflowHook

        data = workdir / "data.parquet"
        make_data(data, args.rows)
        hook = MlflowHook()

        # warm-up: imports and the first experiment, outside the timings
        with hook.mlflow_env():
            operator_run(data, "bench-warmup")

        plain, wrapped = [], []
        results = []
        for _ in range(args.repeats):
            with hook.mlflow_env():
                plain.append(plain_script(data, "bench-plain"))
            seconds, result = operator_run(data, "bench-operator")
            wrapped.append(seconds)
            results.append(result)

        counter = RequestCounter(server.url)
        client = hook.get_client()
        name = f"bench-{uuid.uuid4().hex[:6]}"
        r1, r2 = results[0], results[-1]
        v1, reg_calls = counter.measure(hook, lambda: register_model_version(client, name, r1["model_uri"], r1["run_id"]))
        _, retry_calls = counter.measure(hook, lambda: register_model_version(client, name, r1["model_uri"], r1["run_id"]))
        v2, reg2_calls = counter.measure(hook, lambda: register_model_version(client, name, r2["model_uri"], r2["run_id"]))
        _, first_promo = counter.measure(hook, lambda: compare_and_set_alias(client, name, "champion", v1.version, "none"))
        _, promo_calls = counter.measure(
            hook, lambda: compare_and_set_alias(client, name, "champion", v2.version, v1.version, reason="bench")
        )
        _, rollback_calls = counter.measure(hook, lambda: rollback_alias(client, name, reason="bench"))

        print(f"\nMLflow {mlflow.__version__}, server {server.url}, {args.rows} rows x 10 features, "
              f"{args.repeats} repeats (medians)\n")
        print(f"{'HTTP requests':44s} {'count':>6s}  target")
        rows = [
            ("registration (new model, new version)", reg_calls, ""),
            ("registration retried (existing version)", retry_calls, ""),
            ("registration (existing model, new version)", reg2_calls, ""),
            ("first promotion (no champion yet)", first_promo, "<= 5"),
            ("promotion with compare-and-set", promo_calls, "<= 5"),
            ("rollback", rollback_calls, ""),
        ]
        for label, calls, target in rows:
            print(f"  {label:42s} {len(calls):6d}  {target}")
        print("\n  requests of the compare-and-set promotion: " + ", ".join(promo_calls))
        print("  requests of the new registration:           " + ", ".join(reg_calls))
        p, o = statistics.median(plain), statistics.median(wrapped)
        print(f"\n{'train and log':44s} {'plain':>8s} {'operator':>9s} {'ratio':>6s}  target")
        print(f"  {'seconds (median)':42s} {p:8.2f} {o:9.2f} {o / p:6.2f}  <= 1.10")
        print(f"  all plain runs:    {', '.join(f'{x:.2f}' for x in plain)}")
        print(f"  all operator runs: {', '.join(f'{x:.2f}' for x in wrapped)}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
