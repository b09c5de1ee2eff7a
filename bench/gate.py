"""Promotion gate vs a plain script: time and tracking-server requests on a 100k-row evaluation set.

Both sides run against the same real ``mlflow server`` (started here) and evaluate the same two
registered versions (champion and challenger) with the same libraries (MLflow to load the models,
pandas to read the parquet file, sklearn to score), overall and per slice (region, segment):

* **plain**: download and load both models, predict once per model, compute the metrics with sklearn
  per slice, compare with ``if`` statements.  No report, no tags, no chart.
* **gate**: ``PromotionGateOperator.execute()`` with value, change, per-slice and fairness thresholds,
  plus the JSON + PNG report run, version tags and the XCom summary (``on_pass="none"``).

Requests are counted at ``requests.Session.request`` (everything MLflow sends to the server).
Plain and gate runs alternate (pairs, order swapped each pair) so a load change hits both sides alike.
Usage: ``.venv/bin/python bench/gate.py [--rows 100000] [--repeat 7] [--latency]``.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "provider"))

METRICS = ["accuracy", "f1", "roc_auc", "log_loss", "recall"]
FEATURES = [f"x{i}" for i in range(8)]


class RequestCounter:
    """Counts HTTP requests made through ``requests`` (MLflow's REST and artifact clients)."""

    def __init__(self) -> None:
        import requests

        self.count = 0
        self._orig = requests.Session.request
        counter = self

        def request(session, method, url, *args, **kwargs):
            counter.count += 1
            return counter._orig(session, method, url, *args, **kwargs)

        requests.Session.request = request


def make_data(rows: int, seed: int = 0):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, len(FEATURES)))
    logit = X[:, 0] + 0.7 * X[:, 1] - 0.5 * X[:, 2] * X[:, 3] + rng.normal(scale=0.7, size=rows)
    frame = pd.DataFrame(X, columns=FEATURES)
    frame["region"] = rng.choice(["EU", "US", "APAC", "LATAM"], size=rows)
    frame["segment"] = rng.choice(["a", "b"], size=rows)
    frame["label"] = (logit > 0).astype(int)
    return frame


def setup_models(tmp: Path, name: str) -> None:
    """Train and register champion (v1) and challenger (v2)."""
    import mlflow
    import skops.io
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    train = make_data(20_000, seed=1)
    X, y = train[FEATURES], train["label"]
    champion = LogisticRegression(max_iter=500).fit(X, y)
    challenger = HistGradientBoostingClassifier(max_iter=60, random_state=0).fit(X, y)
    mlflow.set_experiment("bench-gate-models")
    client = mlflow.MlflowClient()
    for alias, model in (("champion", champion), ("challenger", challenger)):
        with mlflow.start_run():
            trusted = list(skops.io.get_untrusted_types(data=skops.io.dumps(model))) or None
            info = mlflow.sklearn.log_model(model, name="model", skops_trusted_types=trusted)
        version = mlflow.register_model(info.model_uri, name).version
        client.set_registered_model_alias(name, alias, version)


def plain_script(name: str, eval_path: str) -> dict:
    """What one would write by hand: same libraries, no report, no tags."""
    import mlflow
    import numpy as np
    import pandas as pd
    from sklearn.metrics import accuracy_score, f1_score, log_loss, recall_score, roc_auc_score

    client = mlflow.MlflowClient()
    frame = pd.read_parquet(eval_path)
    y = frame["label"].to_numpy()
    slices = {"overall": np.arange(len(frame))}
    for col in ("region", "segment"):
        for value, idx in frame.groupby(col).indices.items():
            slices[f"{col}={value}"] = idx
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for alias in ("champion", "challenger"):
            version = client.get_model_version_by_alias(name, alias).version
            local = mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=f"{tmp}/{alias}")
            model = mlflow.sklearn.load_model(local)
            X = frame[FEATURES]
            pred, proba = model.predict(X), model.predict_proba(X)[:, 1]
            results[alias] = {
                key: {
                    "accuracy": accuracy_score(y[idx], pred[idx]),
                    "f1": f1_score(y[idx], pred[idx]),
                    "roc_auc": roc_auc_score(y[idx], proba[idx]),
                    "log_loss": log_loss(y[idx], proba[idx], labels=[0, 1]),
                    "recall": recall_score(y[idx], pred[idx]),
                }
                for key, idx in slices.items()
            }
    ch, cp = results["challenger"], results["champion"]
    passed = all(ch[s]["accuracy"] >= 0.7 for s in ch) and ch["overall"]["roc_auc"] >= cp["overall"]["roc_auc"] - 0.005
    passed = passed and ch["overall"]["log_loss"] <= cp["overall"]["log_loss"] * 1.02
    recalls = [ch[s]["recall"] for s in ch if s.startswith("segment=")]
    return {"passed": passed and max(recalls) - min(recalls) <= 0.1}


def gate(name: str, eval_path: str, latency: bool) -> dict:
    from mlops_provider.operators.gate import PromotionGateOperator

    spec = {
        "thresholds": [
            {"metric": "accuracy", "value": {"lower_bound": 0.7}, "slices": ["overall", "*"]},
            {"metric": "roc_auc", "change": {"direction": "higher_is_better", "absolute": -0.005}},
            {"metric": "log_loss", "change": {"direction": "lower_is_better", "relative": 0.02}},
        ],
        "fairness": [{"metric": "recall", "column": "segment", "max_gap": 0.1}],
        "max_model_size_mb": 100,
    }
    if latency:
        spec["latency_p95_ms_per_1k_rows"] = 1000
    op = PromotionGateOperator(
        task_id="gate", model_name=name, eval_dataset=eval_path, target_column="label",
        feature_columns=FEATURES, slice_columns=["region"], metrics=METRICS, gate_spec=spec,
        on_pass="none", on_failure="skip",
    )
    return op.execute({})


def interleaved(plain_fn, gate_fn, counter: RequestCounter, repeat: int) -> dict[str, tuple[list[float], int, object]]:
    """Run plain and gate in alternating pairs (order swapped every pair) so load drifts hit both alike."""
    out: dict[str, tuple[list[float], int, object]] = {"plain": ([], 0, None), "gate": ([], 0, None)}
    for i in range(repeat):
        order = (("plain", plain_fn), ("gate", gate_fn)) if i % 2 == 0 else (("gate", gate_fn), ("plain", plain_fn))
        for key, fn in order:
            times, _, _ = out[key]
            before = counter.count
            t0 = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - t0)
            out[key] = (times, counter.count - before, result)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--latency", action="store_true", help="also time the latency budget (extra predicts)")
    args = parser.parse_args()

    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="bench-gate-airflow-"))
    os.environ["MLFLOW_ENABLE_ASYNC_LOGGING"] = "false"
    from tests.helpers.servers import MlflowServer

    work = Path(tempfile.mkdtemp(prefix="bench-gate-"))
    server = MlflowServer(work / "server").start()
    try:
        os.environ["MLFLOW_TRACKING_URI"] = server.url
        os.environ["AIRFLOW_CONN_MLFLOW_DEFAULT"] = json.dumps({"conn_type": "mlflow", "host": server.url})
        name = f"bench-gate-{uuid.uuid4().hex[:6]}"
        setup_models(work, name)
        eval_path = str(work / "eval.parquet")
        make_data(args.rows, seed=2).to_parquet(eval_path)

        import mlflow  # noqa: F401 - warm imports for both sides alike
        import sklearn.metrics  # noqa: F401

        import mlops_provider.operators.gate  # noqa: F401

        counter = RequestCounter()
        # warm-up (imports, caches), alternating order, then measured runs
        plain_script(name, eval_path)
        gate(name, eval_path, args.latency)
        runs = interleaved(
            lambda: plain_script(name, eval_path), lambda: gate(name, eval_path, args.latency), counter, args.repeat
        )
        plain_t, plain_req, plain_res = runs["plain"]
        gate_t, gate_req, gate_res = runs["gate"]
    finally:
        server.stop()

    p, g = statistics.median(plain_t), statistics.median(gate_t)
    print(f"rows={args.rows} repeat={args.repeat} latency_budget={'on' if args.latency else 'off'} "
          f"slices=overall+region(4)+segment(2) metrics={len(METRICS)} cpus={os.cpu_count()}")
    print(f"plain script : median {p:.2f}s  (runs {', '.join(f'{t:.2f}' for t in plain_t)})  "
          f"requests/run {plain_req}  passed={plain_res['passed']}")
    print(f"gate operator: median {g:.2f}s  (runs {', '.join(f'{t:.2f}' for t in gate_t)})  "
          f"requests/run {gate_req}  verdict={gate_res['verdict']}  checks={gate_res['n_checks']}")
    pairs = statistics.median(gt / pt for gt, pt in zip(gate_t, plain_t, strict=True))
    print(f"ratio gate/plain = {g / p:.2f} (medians; median of per-pair ratios {pairs:.2f}; target <= 1.2)")


if __name__ == "__main__":
    main()
