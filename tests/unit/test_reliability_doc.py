"""docs/reliability.md stays in sync with the code.

Each row of the page's table names a bad input or fault, the exception raised, fragments of its
message, whether Airflow retries it, and the test that exercises it.  This test checks, for every row:

- the exception exists in ``mlops_provider.exceptions`` and its retry behaviour is the one the row
  states (``no`` exactly when it derives from ``AirflowFailException``);
- every backticked message fragment appears verbatim in the provider's source, so a reworded
  message breaks the page, not the user's trust in it;
- the named test exists.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "reliability.md"
SOURCE = "\n".join(p.read_text() for p in sorted((ROOT / "provider" / "mlops_provider").rglob("*.py")))


def _rows() -> list[list[str]]:
    rows = []
    for line in PAGE.read_text().splitlines():
        if not line.startswith("|") or line.startswith("|---") or line.startswith("| Component"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows.append(cells)
    return rows


ROWS = _rows()


def _test_exists(ref: str) -> bool:
    path, _, name = ref.partition("::")
    file = ROOT / "tests" / path
    if not file.is_file():
        return False
    tree = ast.parse(file.read_text())
    return any(isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == name for n in ast.walk(tree))


def test_the_page_covers_every_operator():
    assert len(ROWS) >= 30, f"docs/reliability.md lists {len(ROWS)} rows"
    components = {row[0] for row in ROWS}
    for name in (
        "DataValidationOperator",
        "TrainModelOperator",
        "RegisterModelOperator",
        "BatchPredictOperator",
        "PromotionGateOperator",
        "DriftCheckOperator",
        "DriftSensor",
        "ModelPerformanceOperator",
        "NewBatchTrigger",
    ):
        assert any(name in c for c in components), f"no row for {name}"


@pytest.mark.parametrize("row", ROWS, ids=[f"{r[0]}: {r[1][:40]}" for r in ROWS])
def test_row_matches_the_code(row):
    import airflow.sdk.exceptions as af_exc

    from mlops_provider import exceptions

    assert len(row) == 6, f"a row has 6 cells (component, input, outcome, left behind, retried, test): {row}"
    _component, _case, outcome, _left, retried, test_ref = row
    fragments = re.findall(r"`([^`]+)`", outcome)
    assert fragments, f"the outcome names the exception or verdict and a message fragment: {outcome}"
    head = fragments[0]
    if hasattr(exceptions, head):
        cls = getattr(exceptions, head)
        assert isinstance(cls, type) and issubclass(cls, BaseException), head
        fails_for_good = issubclass(cls, af_exc.AirflowFailException)
        assert retried in ("no", "yes"), f"retried is 'no' or 'yes' for an exception: {retried}"
        assert (retried == "no") == fails_for_good, (
            f"{head} {'is' if fails_for_good else 'is not'} an AirflowFailException, the page says retried={retried}"
        )
        fragments = fragments[1:]
    for fragment in fragments:
        assert fragment in SOURCE, f"message fragment not in the provider's source: {fragment!r}"
    ref = test_ref.strip("`")
    assert _test_exists(ref), f"test not found: {ref}"
