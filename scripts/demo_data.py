"""Demo data: a loan-default scenario with a training set and daily scoring batches.

Every table has an id column (``loan_id``), a time column (``application_date``), numeric features
(``age``, ``annual_income``, ``loan_amount``, ``credit_score``, ``debt_to_income``, ``open_accounts``)
and categorical ones (``term``, ``employment_type``, ``home_ownership``, ``purpose``).  The label is
``defaulted`` (0/1, about a quarter of the loans), drawn from a fixed logistic "true risk".

The story (:data:`SCENARIO`, one entry per day):

=====  ==========  ===========================================================================
day    kind        what changes
=====  ==========  ===========================================================================
1, 2   stable      same applicant population and the same risk as the training set
3      broken      an upstream export bug: ``credit_score`` is 0 for a fifth of the rows and
                   ``employment_type`` has a new code ``"UNK"`` -> must be quarantined
4      covariate   a partner channel goes live: younger applicants, lower incomes and credit
                   scores, bigger loans, more ``business`` loans.  The risk *given the features*
                   is unchanged (covariate drift: P(x) moves, P(y|x) does not)
5      covariate   the new population persists
6      concept     an economic shock: same applicants as day 5 (features do not move) but the
                   self-employed and contractors, and high debt-to-income, now default far more
                   often (concept drift: P(y|x) moves, P(x) does not)
7      concept     the shock persists
=====  ==========  ===========================================================================

Everything is seeded (``SEED`` plus the day number), so two runs write identical bytes.  Batches hold
the features only; the labels of a batch are a separate file (``loan_id``, ``defaulted``) that
"arrives later" (the demo lands it after the batch was scored).  Run it directly to write the files::

    python scripts/demo_data.py /tmp/loan-data          # training set + every day staged
    python scripts/demo_data.py seed /tmp/loan-data     # ... + the landing folders (a pipeline data root)
    python scripts/demo_data.py land /tmp/loan-data 4   # land day 4's batch (--labels: its labels)

Pure numpy/pandas: no Airflow, no MLflow.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

SEED = 20260101
TRAIN_ROWS = 6_000
BATCH_ROWS = 1_500
START_DATE = "2026-01-01"  # the training set covers the 60 days before it

ID_COLUMN = "loan_id"
TIME_COLUMN = "application_date"
TARGET = "defaulted"
NUMERIC = ["age", "annual_income", "loan_amount", "credit_score", "debt_to_income", "open_accounts"]
CATEGORICAL = ["term", "employment_type", "home_ownership", "purpose"]
FEATURES = NUMERIC + CATEGORICAL


@dataclass(frozen=True)
class Day:
    day: int
    kind: str  # stable | broken | covariate | concept
    note: str


SCENARIO: tuple[Day, ...] = (
    Day(1, "stable", "usual applicants"),
    Day(2, "stable", "usual applicants"),
    Day(3, "broken", "export bug: credit_score=0 on 20% of rows, employment_type 'UNK'"),
    Day(4, "covariate", "partner channel: younger, lower income/credit, bigger loans"),
    Day(5, "covariate", "new population persists"),
    Day(6, "concept", "economic shock: same applicants, self-employed default far more"),
    Day(7, "concept", "shock persists"),
)


def _population(rng, n: int, shifted: bool) -> pd.DataFrame:
    """Applicants; ``shifted`` is the partner-channel population (covariate drift)."""
    import numpy as np
    import pandas as pd

    age = rng.normal(29 if shifted else 42, 7 if shifted else 11, n).clip(21, 75).round().astype("int64")
    income = np.exp(rng.normal(10.6 if shifted else 11.0, 0.4, n)).clip(12_000, 400_000).round(-2)
    amount = np.exp(rng.normal(9.1 if shifted else 9.5, 0.5, n)).clip(1_000, 60_000).round(-2)
    credit = rng.normal(690, 35 if shifted else 55, n).clip(420, 850).round().astype("int64")
    dti = rng.beta(1.8 if shifted else 2.0, 5.0, n).round(3)
    accounts = rng.poisson(3 if shifted else 5, n).clip(0, 25).astype("int64")
    term = rng.choice(["36m", "60m"], n, p=[0.7, 0.3])
    employment = rng.choice(
        ["salaried", "self_employed", "contractor", "retired"],
        n,
        p=[0.45, 0.25, 0.27, 0.03] if shifted else [0.68, 0.14, 0.08, 0.10],
    )
    home = rng.choice(["rent", "mortgage", "own"], n, p=[0.6, 0.3, 0.1] if shifted else [0.38, 0.45, 0.17])
    purpose = rng.choice(
        ["debt_consolidation", "car", "home_improvement", "business", "education"],
        n,
        p=[0.25, 0.15, 0.05, 0.45, 0.10] if shifted else [0.45, 0.2, 0.17, 0.1, 0.08],
    )
    return pd.DataFrame(
        {
            "age": age,
            "annual_income": income,
            "loan_amount": amount,
            "credit_score": credit,
            "debt_to_income": dti,
            "open_accounts": accounts,
            "term": term,
            "employment_type": employment,
            "home_ownership": home,
            "purpose": purpose,
        }
    )


def _default_probability(frame: pd.DataFrame, shock: bool):
    """The true risk.  ``shock`` is the concept drift: the same features now mean more risk."""
    import numpy as np

    credit_weight = 0.004 if shock else 0.016
    z = (
        -1.9
        - credit_weight * (frame["credit_score"] - 680)
        + 3.0 * (frame["debt_to_income"] - 0.3)
        + 0.5 * np.log(frame["loan_amount"] / frame["annual_income"] * 10)
        + 0.4 * (frame["term"] == "60m")
        + 0.3 * (frame["home_ownership"] == "rent")
        - 0.02 * (frame["age"] - 40)
    )
    if shock:
        risky = frame["employment_type"].isin(["self_employed", "contractor"]) | (frame["purpose"] == "business")
        z = z + 2.2 * risky - 1.2 * (~risky)
    return 1 / (1 + np.exp(-z))


def _frame(seed: int, n: int, start: str, days: int, shifted: bool, shock: bool, first_id: int) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = _population(rng, n, shifted)
    frame[TARGET] = (rng.random(n) < _default_probability(frame, shock)).astype("int64")
    offsets = np.sort(rng.integers(0, days * 86_400, n))
    frame.insert(0, TIME_COLUMN, pd.Timestamp(start) + pd.to_timedelta(offsets, unit="s"))
    frame.insert(0, ID_COLUMN, np.arange(first_id, first_id + n, dtype="int64"))
    return frame


def training_set() -> pd.DataFrame:
    """The labelled history the first model is trained on (60 days before ``START_DATE``)."""
    import pandas as pd

    start = (pd.Timestamp(START_DATE) - pd.Timedelta(days=60)).strftime("%Y-%m-%d")
    return _frame(SEED, TRAIN_ROWS, start, 60, shifted=False, shock=False, first_id=1)


def batch(day: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(features, labels)`` of the scoring batch of ``day`` (1-based, see :data:`SCENARIO`)."""
    import pandas as pd

    spec = SCENARIO[day - 1]
    date = (pd.Timestamp(START_DATE) + pd.Timedelta(days=day - 1)).strftime("%Y-%m-%d")
    frame = _frame(
        SEED + day,
        BATCH_ROWS,
        date,
        1,
        shifted=spec.kind in ("covariate", "concept"),
        shock=spec.kind == "concept",
        first_id=1_000_000 * day,
    )
    labels = frame[[ID_COLUMN, TARGET]].copy()
    features = frame.drop(columns=[TARGET])
    if spec.kind == "broken":
        import numpy as np

        rng = np.random.default_rng(SEED + 1000 + day)
        bad = rng.random(len(features)) < 0.2
        features.loc[bad, "credit_score"] = 0
        features.loc[rng.random(len(features)) < 0.05, "employment_type"] = "UNK"
    return features, labels


def batch_name(day: int) -> str:
    return f"day-{day:02d}.parquet"


def land(frame: pd.DataFrame, folder: str | Path, name: str) -> Path:
    """Write under a hidden temporary name, then rename into place (the batch completion convention)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.tmp"
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, folder / name)
    return folder / name


def write_contracts(folder: str | Path) -> dict[str, Path]:
    """Derive the batch and training-data contracts from the training set (committed in dags/pipelines/)."""
    from mlops_provider.core.validation import derive_schema_suite

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    train = training_set()
    out = {
        "batch": folder / "loan_default_batch.yaml",
        "training": folder / "loan_default_training.yaml",
    }
    out["batch"].write_text(derive_schema_suite(train.drop(columns=[TARGET]), tolerance=0.1, name="loan_default_batch", ranges=True))
    out["training"].write_text(derive_schema_suite(train, tolerance=0.1, name="loan_default_training", ranges=True))
    return out


def write_all(root: str | Path) -> dict[str, str]:
    """Write the training set and every day's batch and labels under ``root`` (not landed: a staging copy)."""
    root = Path(root)
    land(training_set(), root / "training", "base.parquet")
    for spec in SCENARIO:
        features, labels = batch(spec.day)
        land(features, root / "staging" / "batches", batch_name(spec.day))
        land(labels, root / "staging" / "labels", batch_name(spec.day))
    return {"training": str(root / "training" / "base.parquet"), "staging": str(root / "staging")}


def seed(root: str | Path) -> dict[str, str]:
    """
    A pipeline data root ready for ``dags/pipelines/loan_default.yaml``: the training set in place,
    the empty landing folders the watchers need, and every day's batch and labels staged (not landed).
    """
    root = Path(root)
    out = write_all(root)
    for folder in ("batches", "labels"):
        (root / "landing" / folder).mkdir(parents=True, exist_ok=True)
    return {**out, "landing": str(root / "landing")}


def land_day(root: str | Path, day: int, labels: bool = False) -> Path:
    """Land day ``day``'s staged batch (or its labels) into the landing folder, by rename, as a producer would."""
    root = Path(root)
    kind = "labels" if labels else "batches"
    staged = root / "staging" / kind / batch_name(day)
    if not staged.is_file():
        raise FileNotFoundError(f"{staged} is not staged: run the seed command first (days 1-{len(SCENARIO)})")
    target = root / "landing" / kind / batch_name(day)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, target)
    return target


def main(argv: list[str] | None = None) -> int:
    """``demo_data.py [ROOT]`` writes everything staged; ``seed ROOT`` prepares a data root; ``land ROOT DAY``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["seed"] and len(argv) == 2:
        print(seed(argv[1]))
    elif argv[:1] == ["land"] and len(argv) in (3, 4) and argv[2].isdigit() and argv[3:] in ([], ["--labels"]):
        print(land_day(argv[1], int(argv[2]), labels=argv[3:] == ["--labels"]))
    elif len(argv) <= 1 and not argv[:1] == ["seed"]:
        print(write_all(argv[0] if argv else "/tmp/loan-data"))
    else:
        print("usage: demo_data.py [ROOT] | seed ROOT | land ROOT DAY [--labels]", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
