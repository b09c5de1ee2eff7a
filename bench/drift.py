"""Drift engine vs Evidently, side by side on the same generated data: time and peak memory.

    .venv/bin/python bench/drift.py                 # all cases
    .venv/bin/python bench/drift.py --cases 1m      # one case (1m, 100k_wide, 10m)
    .venv/bin/python bench/drift.py --markdown      # print the table as Markdown (for docs/performance.md)
    .venv/bin/python bench/drift.py --skip-evidently  # our engine only

The "CPU (s)" column is the measuring process's CPU time (all its threads) during the call: on a
loaded machine it moves much less than the wall time (the MLflow server's CPU is not in it).

Every measurement runs in a fresh subprocess that imports the libraries, generates the frames
(deterministic seeds), then times one call.  Peak memory is the process high-water mark (``VmHWM``,
reset through ``/proc/self/clear_refs`` just before the call; Linux only) minus the resident size
just before the call, i.e. what the call itself added on top of its input frames; "peak / input" is ``(input + that) / input`` where input is the resident size of
the two frames (or of the current frame and the loaded profile for "stored profile").

Measurements:

* ``evidently``: ``Report([DataDriftPreset()]).run(current, reference)``;
* ``ours cold``: ``check_drift(reference_df, current_df)`` (reference statistics computed on the fly);
* ``ours build``: ``build_profile(reference_df)`` + save as a binary profile (once per model version);
  the profile is then logged to a run of a local ``mlflow server`` started by this script, as
  ``DriftCheckOperator`` stores it (``drift/profile.bin``);
* ``ours stored, end to end``: download the profile from that server (``MlflowClient.download_artifacts``,
  through the server's artifact proxy), load it (sha256 verified) and ``check_drift(profile,
  current_df)``: what a worker does the first time it checks a model version; the time of each step
  is printed under the table;
* ``ours stored, worker cache``: load the profile from the worker's disk cache and check (every later
  check of that version on that worker);
* the profile's size, binary and JSON (the older format), is printed under the table;
* text cases (``text_1k``: Evidently's ``perc_text_content_drift``, ``text_100k``: its
  ``abs_text_content_drift``) also time the text columns alone (``evidently text only``, ``ours text
  only``): the text test trains a classifier and costs far more than the numeric tests.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CASES = {
    "tiny": (20_000, 15, 5, "20k rows x 20 cols (smoke test)"),
    # name: (rows, numeric columns, categorical columns, label[, text columns])
    "1m": (1_000_000, 15, 5, "1M rows x 20 cols (15 num, 5 cat)"),
    "100k_wide": (100_000, 150, 50, "100k rows x 200 cols (150 num, 50 cat)"),
    "10m": (10_000_000, 15, 5, "10M rows x 20 cols (15 num, 5 cat)"),
    "text_1k": (1_000, 5, 2, "1k rows x 9 cols (5 num, 2 cat, 2 text: perc_text_content_drift)", 2),
    "text_100k": (100_000, 5, 2, "100k rows x 9 cols (5 num, 2 cat, 2 text: abs_text_content_drift)", 2),
}
TEXT_ONLY = ("evidently_text", "cold_text")
#: Evidently added ~1.0 GB on top of 0.3 GB of frames for 1M x 20 here (1.5-1.7 GB reported elsewhere),
#: linearly in rows: 10M rows would need ~13 GB or more, too much for a shared machine.
EVIDENTLY_MAX_ROWS = 2_000_000

_CHILD = r"""
import json, os, sys, time, gc
sys.path.insert(0, {provider!r})

def rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def hwm():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024

def reset_hwm():
    with open("/proc/self/clear_refs", "w") as fh:  # "5" resets the peak RSS (Linux >= 4.0)
        fh.write("5")

import numpy as np, pandas as pd
what = {what!r}
if what.startswith("evidently"):
    import warnings; warnings.filterwarnings("ignore")
    from evidently import Report
    from evidently.presets import DataDriftPreset
from mlops_provider.core import drift as D
import scipy.stats, scipy.spatial.distance  # imported up front, as Evidently's own import does
import pyarrow  # likewise (the profile codec; pandas and MLflow load it anyway in a worker)
if what == "stored_e2e":
    from mlflow import MlflowClient
    client = MlflowClient({tracking_uri!r})
    client.get_experiment("0")  # the connection is open, as in a worker that resolved the model version

WORDS = np.array(["price", "delivery", "quality", "support", "refund", "account", "login", "payment",
                  "order", "shipping", "package", "courier"] + [f"item{{i}}" for i in range(48)], dtype=object)
APP = np.array(["crash", "error", "slow", "battery", "screen", "update", "freeze", "bug"], dtype=object)

def tickets(rng, n, shift):
    # short support tickets (4-9 words of 60); with shift, 20 % of them use other words
    idx = rng.integers(0, len(WORDS), (n, 9))
    lengths = rng.integers(4, 10, n)
    other = rng.random(n) < (0.2 if shift else 0.0)
    out = []
    for row, k, o in zip(idx, lengths, other):
        words = APP[row[:k] % len(APP)] if o else WORDS[row[:k]]
        out.append(" ".join(words))
    return np.array(out, dtype=object)

def frame(n, n_num, n_cat, seed, shift, n_text=0):
    rng = np.random.default_rng(seed)
    cats = np.array(["red", "green", "blue", "cyan", "magenta", "yellow", "black", "white"], dtype=object)
    cols = {{}}
    for i in range(n_text):
        cols[f"text_{{i}}"] = tickets(rng, n, shift)
    for i in range(n_num):
        col = rng.normal(shift * (i % 3 == 0), 1.0, n)
        if i % 5 == 4:
            col = np.round(col * 10)  # discrete-ish values, many ties
        cols[f"num_{{i}}"] = col
    for i in range(n_cat):
        p = np.full(8, 1 / 8)
        if shift and i % 2 == 0:
            p = np.array([0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05])
        cols[f"cat_{{i}}"] = cats[rng.choice(8, n, p=p)]
    return pd.DataFrame(cols)

n, n_num, n_cat, n_text = {rows}, {n_num}, {n_cat}, {n_text}
gc.collect()
base = rss()
cur = frame(n, n_num, n_cat, 2, 0.05, n_text)
ref = None if what.startswith("stored") else frame(n, n_num, n_cat, 1, 0.0, n_text)
if what in ("evidently_text", "cold_text"):  # the text columns alone
    texts = [c for c in cur.columns if c.startswith("text_")]
    cur, ref = cur[texts], ref[texts]
profile = None
steps = {{}}
if what == "stored_e2e":
    import tempfile
    tmp = tempfile.mkdtemp(prefix="drift-bench-dl-")
gc.collect()
inputs = rss() - base
before = rss()
reset_hwm()
c0 = time.process_time()
t0 = time.perf_counter()
if what.startswith("evidently"):
    snap = Report([DataDriftPreset()]).run(cur, ref)
    d = snap.dict()
    drifted = [m["value"]["count"] for m in d["metrics"] if m["config"]["type"].endswith("DriftedColumnsCount")][0]
elif what in ("cold", "cold_text"):
    res = D.check_drift(ref, cur)
    drifted = res.number_of_drifted_columns
elif what == "build":
    p = D.build_profile(ref)
    drifted = None
    p.save({profile_path!r})
elif what == "stored_e2e":
    path = client.download_artifacts({run_id!r}, "drift/profile.bin", tmp)
    steps["download"] = time.perf_counter() - t0
    profile = D.ReferenceProfile.load(path)
    steps["load"] = time.perf_counter() - t0 - steps["download"]
    res = D.check_drift(profile, cur)
    steps["check"] = time.perf_counter() - t0 - steps["download"] - steps["load"]
    drifted = res.number_of_drifted_columns
elif what == "stored":
    profile = D.ReferenceProfile.load({profile_path!r})
    steps["load"] = time.perf_counter() - t0
    res = D.check_drift(profile, cur)
    steps["check"] = time.perf_counter() - t0 - steps["load"]
    drifted = res.number_of_drifted_columns
seconds = time.perf_counter() - t0
cpu = time.process_time() - c0
extra = max(0, hwm() - before)
print(json.dumps({{"seconds": seconds, "cpu": cpu, "inputs": inputs, "extra": extra, "drifted": drifted, "steps": steps,
                   "sampled": (res.sampled if what in ("cold", "cold_text", "stored", "stored_e2e") else None)}}))
"""


def measure(case: str, what: str, profile_path: str, tracking_uri: str = "", run_id: str = "") -> dict:
    rows, n_num, n_cat, _, *rest = CASES[case]
    code = _CHILD.format(
        provider=str(ROOT / "provider"),
        what=what,
        rows=rows,
        n_num=n_num,
        n_cat=n_cat,
        n_text=rest[0] if rest else 0,
        profile_path=profile_path,
        tracking_uri=tracking_uri,
        run_id=run_id,
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1][:200]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _mb(value: float) -> str:
    return f"{value / 2**20:,.0f}"


def _log_profile(client, profile_path: str, case: str) -> str:
    """Log the binary profile to a new run, as ``DriftCheckOperator`` stores it; returns the run id."""
    exp = client.create_experiment(f"drift-bench-{case}-{os.getpid()}-{len(client.search_experiments())}")
    run_id = client.create_run(exp).info.run_id
    client.log_artifact(run_id, profile_path, artifact_path="drift")
    return run_id


def run(cases: list[str], markdown: bool, evidently: bool = True) -> None:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "provider"))
    from mlflow import MlflowClient

    from tests.helpers.servers import MlflowServer

    lines = [
        "| case | engine | time (s) | vs Evidently | CPU (s) | extra peak (MB) | input frames (MB) | peak / input | drifted cols |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    notes = []
    with tempfile.TemporaryDirectory(prefix="drift-bench-mlflow-") as server_dir:
        server = MlflowServer(Path(server_dir)).start(timeout=600)  # slow to start on a loaded machine
        try:
            client = MlflowClient(server.url)
            for case in cases:
                _run_case(case, client, server.url, lines, notes, evidently)
        finally:
            server.stop()
    table = "\n".join(lines)
    text = table + ("\n\n" + "\n".join(f"- {n}" for n in notes) if notes else "")
    print()
    print(text if markdown else textwrap.indent(text, ""))


def _run_case(case: str, client, tracking_uri: str, lines: list[str], notes: list[str], evidently: bool) -> None:
    rows, _, _, label, *rest = CASES[case]
    with tempfile.TemporaryDirectory(prefix="drift-bench-") as tmp:
        profile_path = os.path.join(tmp, "profile.bin")
        results = {}
        if not evidently:
            pass
        elif rows <= EVIDENTLY_MAX_ROWS:
            results["evidently"] = measure(case, "evidently", profile_path)
        else:
            notes.append(
                f"{label}: Evidently skipped - it needs ~1.3 GB resident per 1M rows x 20 columns "
                f"(frames + its own peak), so {rows / 1e6:.0f}M rows would need ~{rows / 1e6 * 1.3:.0f} GB "
                "on a shared machine (evidently issue 1526 reports it running out of memory at 10M rows)."
            )
        results["cold"] = measure(case, "cold", profile_path)
        results["build"] = measure(case, "build", profile_path)
        size = os.path.getsize(profile_path) if os.path.exists(profile_path) else 0
        if size:
            run_id = _log_profile(client, profile_path, case)
            results["stored_e2e"] = measure(case, "stored_e2e", profile_path, tracking_uri, run_id)
            results["stored"] = measure(case, "stored", profile_path)
            size_json = _json_size(profile_path, tmp)
        if rest:  # text columns: their test timed on its own, for both engines
            if evidently:
                results["evidently_text"] = measure(case, "evidently_text", profile_path)
            results["cold_text"] = measure(case, "cold_text", profile_path)
    ev = results.get("evidently", {})
    names = {
        "evidently": "Evidently 0.7.23 `Report([DataDriftPreset()])`",
        "cold": "ours, cold (`check_drift(reference_df, current_df)`)",
        "build": "ours, `build_profile(reference_df)` + save (binary)",
        "stored_e2e": "ours, stored profile **end to end** (download from `mlflow server` + load + check)",
        "stored": "ours, stored profile from the worker cache (load + check)",
        "evidently_text": "Evidently, text columns only",
        "cold_text": "ours, text columns only (cold)",
    }
    for key, res in results.items():
        if "error" in res:
            lines.append(f"| {label} | {names[key]} | failed: {res['error']} | | | | | | |")
            continue
        base = results.get("evidently_text", {}) if key == "cold_text" else ev
        ratio = (
            f"{base['seconds'] / res['seconds']:.0f}x"
            if "seconds" in base and not key.startswith("evidently")
            else ""
        )
        drifted = "" if res["drifted"] is None else str(int(res["drifted"]))
        if res.get("sampled"):
            drifted += " (sampled ref)"
        lines.append(
            f"| {label} | {names[key]} | {res['seconds']:.2f} | {ratio} | {res['cpu']:.2f} | {_mb(res['extra'])} | "
            f"{_mb(res['inputs'])} | {(res['inputs'] + res['extra']) / max(res['inputs'], 1):.2f} | {drifted} |"
        )
        if res.get("steps"):
            steps = ", ".join(f"{k} {v:.3f} s" for k, v in res["steps"].items())
            notes.append(f"{label}, {names[key].split(' (')[0]}: {steps}.")
    if size:
        lines.append(
            f"| {label} | stored profile size: binary {size / 2**20:,.1f} MB, JSON (older format) "
            f"{size_json / 2**20:,.1f} MB ({size / size_json:.0%}) | | | | | | | |"
        )
    print("\n".join(lines[-(len(results) + bool(size)) :]), flush=True)


def _json_size(profile_path: str, tmp: str) -> int:
    """Size of the same profile in the older JSON format (converted in a subprocess: the parent stays small)."""
    out = os.path.join(tmp, "profile.json")
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT / 'provider')!r}); from mlops_provider.core import drift as D; "
        f"D.ReferenceProfile.load({profile_path!r}).save({out!r})"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    return os.path.getsize(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", nargs="*", default=["1m", "100k_wide", "10m"], choices=list(CASES))
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--skip-evidently", action="store_true", help="our engine only (Evidently takes minutes)")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()}", flush=True)
    run(args.cases, args.markdown, evidently=not args.skip_evidently)
    print(f"load average at the end: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
