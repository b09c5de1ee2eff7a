"""Text columns (issue 18, section 2): Evidently 0.7's text drift, same scores and verdicts.

Evidently types a string column with more than 50 % unique values as text and tests it with a
domain classifier (``perc_text_content_drift`` for a reference of at most 1000 rows,
``abs_text_content_drift`` above).  Every random choice in it is seeded, so the engine, which runs the
same steps, must give the same AUC (to rounding) and the same verdict on every case; the agreement over
seeds is measured below and reported in ``docs/operators/drift.md``.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlops_provider.core import drift as D

from .test_drift_parity import evidently_drift

SHOP = "price delivery quality support refund account login payment order shipping package courier".split() + [
    f"item{i}" for i in range(48)
]  # 60 words: in long tickets each still occurs in fewer than half of them (TF-IDF's max_df=0.5)
APP = "crash error slow battery screen update freeze bug password reset timeout notification".split()


def texts(rng: np.random.Generator, n: int, vocab: list[str], lo: int = 4, hi: int = 10) -> list[str]:
    """Short tickets: random word sequences (nearly all unique, so Evidently types the column as text)."""
    return [" ".join(rng.choice(vocab, rng.integers(lo, hi))) for _ in range(n)]


def pair(kind: str, n_ref: int, n_cur: int, seed: int, mix: float = 0.5) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    reference = pd.DataFrame({"ticket": texts(rng, n_ref, SHOP), "amount": rng.normal(50, 10, n_ref)})
    if kind == "same":
        current_texts = texts(rng, n_cur, SHOP)
    elif kind == "vocabulary":  # a share ``mix`` of the tickets is about the app, not the shop
        current_texts = [
            t if rng.random() >= mix else " ".join(rng.choice(APP, 6)) for t in texts(rng, n_cur, SHOP)
        ]
    elif kind == "length":  # the same words, tickets three times longer
        current_texts = texts(rng, n_cur, SHOP, 12, 30)
    else:
        raise ValueError(kind)
    current = pd.DataFrame({"ticket": current_texts, "amount": rng.normal(50, 10, n_cur)})
    return reference, current


def assert_same_as_evidently(reference: pd.DataFrame, current: pd.DataFrame) -> D.ColumnDrift:
    expected, count = evidently_drift(reference, current)
    for result in (
        D.check_drift(reference, current),
        D.check_drift(D.ReferenceProfile.from_dict(json.loads(json.dumps(D.build_profile(reference).to_dict()))), current),
    ):
        method, score, threshold, _ = expected["ticket"]
        col = result.columns["ticket"]
        assert col.column_type == D.TEXT and col.method == method and col.threshold == threshold
        assert abs(col.score - score) <= 1e-12, (col.score, score)
        assert result.number_of_drifted_columns == count["count"]  # text verdict counted like Evidently's
        assert result.share_of_drifted_columns == pytest.approx(count["share"], abs=1e-12)
    return col


CASES = [
    # (kind, reference rows, current rows, drift expected)
    ("same", 200, 200, False),
    ("vocabulary", 200, 150, True),
    ("length", 250, 200, None),  # Evidently's classifier decides; we only require the same answer
    ("same", 1500, 700, False),
    ("vocabulary", 1500, 700, True),
    ("length", 1200, 900, None),
]


@pytest.mark.parametrize(("kind", "n_ref", "n_cur", "drift"), CASES, ids=lambda v: str(v))
def test_text_drift_equals_evidently(kind, n_ref, n_cur, drift):
    col = assert_same_as_evidently(*pair(kind, n_ref, n_cur, seed=n_ref + n_cur))
    assert col.method == ("perc_text_content_drift" if n_ref <= 1000 else "abs_text_content_drift")
    if drift is not None:
        assert col.drifted is drift


def test_agreement_over_seeds_near_the_threshold():
    """A mild vocabulary shift (10 % of tickets), where the verdict flips from seed to seed."""
    verdicts, agree = [], 0
    for seed in range(12):
        reference, current = pair("vocabulary", 1100, 500, seed=seed, mix=0.06)
        expected, _ = evidently_drift(reference, current)
        ours = D.check_drift(reference, current).columns["ticket"]
        agree += ours.drifted == expected["ticket"][3] and abs(ours.score - expected["ticket"][1]) <= 1e-12
        verdicts.append(ours.drifted)
    assert agree == 12  # measured: 12 of 12 seeds agree (scores within 1e-12)
    assert 0 < sum(verdicts) < 12, verdicts  # the case is really unstable: both verdicts occur


def test_threshold_override_and_refused_methods():
    reference, current = pair("vocabulary", 1200, 400, seed=1, mix=0.2)
    base = D.check_drift(reference, current).columns["ticket"]
    strict = D.check_drift(reference, current, column_thresholds={"ticket": base.score + 1e-9}).columns["ticket"]
    assert strict.score == base.score and base.drifted and not strict.drifted
    with pytest.raises(D.DriftInputError, match="text column in the current batch"):
        D.check_drift(reference, current, column_methods={"ticket": "chisquare"})
    with pytest.raises(D.DriftInputError, match="needs a text column; 'amount' is numerical"):
        D.check_drift(reference, current, column_methods={"amount": "abs_text_content_drift"})
    forced = D.check_drift(reference, current, column_methods={"ticket": "abs_text_content_drift"})
    assert forced.columns["ticket"].method == "abs_text_content_drift"


def test_text_columns_with_missing_values_and_integer_labels():
    reference, current = pair("vocabulary", 1400, 300, seed=5, mix=0.4)
    reference.loc[::7, "ticket"] = None
    current.loc[::5, "ticket"] = np.nan
    assert_same_as_evidently(reference, current)
    as_ints = D.check_drift(reference.set_axis([0, 1], axis=1), current.set_axis([0, 1], axis=1))
    assert as_ints.columns["0"].score == D.check_drift(reference, current).columns["ticket"].score


def test_profile_without_texts_names_the_column_as_not_tested():
    """An older profile (no ``texts``), or a column categorical in the reference: skipped and named, never 'no drift'."""
    reference, current = pair("vocabulary", 400, 300, seed=2, mix=0.5)
    data = D.build_profile(reference).to_dict()
    del data["columns"]["ticket"]["texts"]
    result = D.check_drift(D.ReferenceProfile.from_dict(data), current)
    assert "reference holds no texts" in result.skipped_columns["ticket"]
    assert result.not_tested().startswith("1 of 2 columns not tested: ticket (text column, but the reference")


def test_texts_without_usable_terms_fail_naming_the_column_as_evidently_fails():
    """Every word in more than half of the rows: TF-IDF (max_df=0.5) keeps no term; Evidently raises too."""
    rng = np.random.default_rng(9)
    words = "alpha beta gamma delta kappa sigma omega theta".split()  # 8! orders: nearly every row unique
    reference = pd.DataFrame({"ticket": [" ".join(rng.permutation(words)) for _ in range(1200)]})
    current = pd.DataFrame({"ticket": [" ".join(rng.permutation(words)) for _ in range(400)]})
    with pytest.raises(ValueError, match="no terms remain"):
        evidently_drift(reference, current)
    with pytest.raises(D.DriftInputError, match="Text drift of column 'ticket' with method 'abs_text_content_drift'"):
        D.check_drift(reference, current)
