"""The ``make demo`` story under a real Airflow deployment (api-server, scheduler, dag-processor, triggerer).

It parses ``dags/`` (not ``tests/system/dags``), so it runs its own deployment (the session's
``demo_story`` fixture, shared with the browser tests) instead of the session's ``airflow_cluster``;
the story lands files and Airflow does the rest (Asset watchers, asset-triggered runs, drift and decay
events scheduling retraining).  The timeline is asserted.

Then the loop as a person sees it, in headless Chromium (tests/helpers/browser.py): log in through
Airflow's login form, open the MLOps view from the navigation and check the story's model with v1 to v3
and the champion; follow every extra link of the training, validation, drift, gate and batch-score tasks
to a page that answers 200 with the expected content; requests without a login are refused.  The
screenshots land in docs/img/ (docs/ui.md shows them).  A missing browser fails these tests.
"""

from __future__ import annotations

from urllib.parse import urlparse

import pytest

from tests.helpers.browser import http_get, login, shot, start_chromium, wait


def test_demo_story_timeline(demo_story):
    import demo

    result = demo_story
    print(demo.format_timeline(result))
    rows = {row["day"]: row for row in result["timeline"]}
    assert rows[0]["champion"] == "1"
    assert rows[3]["validation"] == "QUARANTINED" and rows[3]["drift_share"] is None
    drift_days = [day for day, row in rows.items() if row.get("drift")]
    assert drift_days == [4], drift_days
    assert "promoted v2" in rows[4]["action"] and rows[4]["champion"] == "2"
    decay_days = [day for day, row in rows.items() if row.get("decay") == "decay"]
    assert decay_days and decay_days[0] == 6, decay_days
    assert not rows[6].get("drift")  # concept drift: the features did not move
    assert rows[max(rows)]["champion"] == "3"


MODEL = "loan_default"
TRAINING = f"continuous_training__{MODEL}"
MONITOR = f"drift_monitor__{MODEL}"
#: The extra links each task must show, and what the page they open must say.
EXPECTED_LINKS = {
    (TRAINING, "validate_training_data"): {"MLflow run", "Validation report"},
    (TRAINING, "train"): {"MLflow run"},
    (TRAINING, "register_challenger"): {"MLflow model version", "MLflow run"},
    (TRAINING, "gate"): {"MLflow model version", "Gate report"},
    (TRAINING, "promote"): {"MLflow model version"},
    (TRAINING, "batch_score"): {"MLflow run", "MLflow model version"},
    # the drift monitor checks each batch of a run in the mapped group check_batch
    (MONITOR, "check_batch.validate_batch"): {"MLflow run", "Validation report"},
    (MONITOR, "check_batch.check_drift"): {"MLflow run", "Drift report"},
    (MONITOR, "check_batch.score_batch"): {"MLflow run", "MLflow model version"},
}
PAGE_SAYS = {
    "MLflow run": "MLflow run:",
    "MLflow model version": f"{MODEL} v",
    "Validation report": "xpectation",
    "Drift report": "drift",
    "Gate report": "Gate report",
}


@pytest.fixture(scope="module")
def logged_in(demo_story):
    """Chromium, signed in to the story's Airflow as ``admin`` through the login form."""
    driver = start_chromium()
    try:
        stack = demo_story["stack"]
        login(driver, stack.url, "admin", stack.password)
        yield driver
    finally:
        driver.quit()


def test_mlops_view_shows_the_model_versions_and_champion(logged_in, demo_story):
    from selenium.webdriver.common.by import By

    browser, stack = logged_in, demo_story["stack"]
    browser.get(f"{stack.url}/plugin/mlops")
    frame = wait(lambda: browser.find_element(By.TAG_NAME, "iframe"), what="the MLOps view in the UI")
    assert urlparse(frame.get_attribute("src")).path == "/mlops/"
    browser.switch_to.frame(frame)
    text = wait(lambda: MODEL in browser.find_element(By.TAG_NAME, "body").text
                 and browser.find_element(By.TAG_NAME, "body").text, what="the model list")
    assert "champion" in text and "v3" in text and "previous-champion" in text and "v2" in text, text[:2000]
    browser.switch_to.default_content()
    shot(browser, "ui-models")

    browser.get(f"{stack.url}/mlops/models/{MODEL}")
    body = browser.find_element(By.TAG_NAME, "body").text
    for version in ("v1", "v2", "v3"):
        assert version in body
    assert "champion v3" in body.replace("\n", " ") and "quarantined" in body
    points = browser.find_elements(By.CSS_SELECTOR, "svg#timeline .point")
    assert len(points) >= 7, len(points)
    shot(browser, "ui-model-timeline")
    # a point of the chart opens its batch row, with the Airflow run and the MLflow runs
    browser.find_element(By.CSS_SELECTOR, "svg#timeline circle.point.drift").click()
    assert "#batch-" in browser.current_url
    row = browser.find_element(By.CSS_SELECTOR, "tr:target")
    hrefs = [a.get_attribute("href") for a in row.find_elements(By.TAG_NAME, "a")]
    assert any(f"/dags/{MONITOR}/runs/" in h for h in hrefs), hrefs
    assert any("/mlops/runs/" in h for h in hrefs), hrefs

    browser.get(f"{stack.url}/mlops/models/{MODEL}/versions/3")
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Gate" in body and "roc_auc" in body and "Training data" in body
    image = browser.find_element(By.CSS_SELECTOR, "img[alt='gate chart']")
    assert browser.execute_script("return arguments[0].naturalWidth", image) > 0, "the gate chart did not load"
    shot(browser, "ui-version")


def _latest_success(stack, dag_id: str, task_id: str) -> tuple[str, int]:
    """The latest run, and the map index, where ``task_id`` succeeded (mapped tasks have one per batch)."""
    for run in reversed(stack.runs(dag_id)):
        for ti in stack.task_instances(dag_id, run["dag_run_id"]):
            if ti["task_id"] == task_id and ti["state"] == "success":
                return run["dag_run_id"], ti.get("map_index", -1)
    raise AssertionError(f"no run of {dag_id} where {task_id} succeeded")


def test_every_extra_link_opens_a_page_that_answers(logged_in, demo_story):
    from urllib.parse import quote

    browser, stack = logged_in, demo_story["stack"]
    token = stack.token()
    checked = []
    for (dag_id, task_id), names in EXPECTED_LINKS.items():
        run_id, map_index = _latest_success(stack, dag_id, task_id)
        links = stack.api(
            "GET",
            f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/links?map_index={map_index}",
        )["extra_links"]
        missing = {name for name in names if not links.get(name)}
        assert not missing, f"{dag_id}.{task_id}: no URL for {missing} (links: {links})"
        for name, url in links.items():
            if not url:
                continue
            assert url.startswith(stack.url + "/mlops/"), f"{dag_id}.{task_id} {name}: {url}"
            status, media, body = http_get(url, token)
            assert status == 200, f"{dag_id}.{task_id} {name}: {url} -> {status} {body[:300]}"
            assert PAGE_SAYS[name] in body, f"{dag_id}.{task_id} {name}: {url} does not say {PAGE_SAYS[name]!r}"
            assert "text/html" in media, (name, media)
            checked.append((dag_id, task_id, name, url))
    # the buttons on the task instance page of the Airflow UI
    from selenium.webdriver.common.by import By

    run_id, _ = _latest_success(stack, TRAINING, "gate")
    browser.get(f"{stack.url}/dags/{TRAINING}/runs/{quote(run_id, safe='')}/tasks/gate/details")
    button = wait(lambda: browser.find_element(By.XPATH, "//a[normalize-space()='Gate report']"),
                  what="the gate task's 'Gate report' button (Details tab)")
    assert "/mlops/runs/" in button.get_attribute("href") and button.get_attribute("href").endswith("/gate")
    shot(browser, "ui-extra-links")
    # the readable reports, as a person opens them from the task
    gate_url = next(url for _d, task, name, url in checked if name == "Gate report")
    browser.get(gate_url)
    assert "Gate report" in browser.title or "Gate" in browser.page_source
    shot(browser, "ui-gate-report")
    validation_url = next(url for _d, task, name, url in checked if name == "Validation report")
    browser.get(validation_url)
    shot(browser, "ui-validation-report")
    assert len(checked) >= sum(len(v) for v in EXPECTED_LINKS.values())


def test_requests_without_login_are_refused(demo_story):
    stack = demo_story["stack"]
    run = stack.runs(TRAINING)[0]["dag_run_id"]
    for path in ("/mlops/", f"/mlops/models/{MODEL}", f"/mlops/models/{MODEL}/versions/1"):
        status, _media, body = http_get(stack.url + path, None)
        assert status == 401, (path, status)
        assert "Log in to Airflow" in body
    links = stack.api("GET", f"/dags/{TRAINING}/dagRuns/{run}/taskInstances/gate/links")["extra_links"]
    status, _media, _body = http_get(links["Gate report"], None)
    assert status == 401


def test_mlflow_connection_form_and_test_button(logged_in, demo_story):
    """
    The ``mlflow`` connection form shows no literal "null", and with ``[core] test_connection = Enabled``
    (the demo_story fixture sets it) the connection list's Test button turns green for a store that answers
    and red for one that does not; the request it makes answers with the hook's message.
    """
    import json

    from selenium.webdriver.common.by import By

    from tests.helpers.servers import free_port

    browser, stack = logged_in, demo_story["stack"]
    connections = {
        "mlflow_ui_check": ({"host": demo_story["mlflow_uri"]}, "green"),
        "mlflow_ui_down": ({"host": f"http://127.0.0.1:{free_port()}",
                            "extra": json.dumps({"max_retries": 0, "timeout": 5})}, "red"),
    }
    for conn_id, (fields, _colour) in connections.items():
        stack.api("POST", "/connections", {"connection_id": conn_id, "conn_type": "mlflow", **fields})

    browser.get(f"{stack.url}/connections")
    wait(lambda: [b for b in browser.find_elements(By.TAG_NAME, "button") if b.text == "Add Connection"],
         what="the Add Connection button")[0].click()
    dialog = wait(lambda: browser.find_element(By.CSS_SELECTOR, "[role=dialog]"), what="the connection form")
    combo = dialog.find_element(By.CSS_SELECTOR, "input[role=combobox]")
    combo.click()
    combo.send_keys("MLflow")
    wait(lambda: [o for o in browser.find_elements(By.CSS_SELECTOR, "[role=option]") if o.text.strip() == "MLflow"],
         what="the MLflow connection type")[0].click()
    wait(lambda: dialog.find_element(By.NAME, "host"), what="the Tracking URI field")
    assert "Tracking URI" in dialog.text and "Password or token" in dialog.text, dialog.text
    standard = [dialog.text] + [f.get_attribute(a) or "" for f in dialog.find_elements(By.CSS_SELECTOR, "input, textarea")
                                for a in ("placeholder", "value")]
    [b for b in dialog.find_elements(By.TAG_NAME, "button") if b.text == "Extra Fields"][0].click()
    wait(lambda: "Auth mode" in dialog.text, what="the extra fields")
    fields = dialog.find_elements(By.CSS_SELECTOR, "input, textarea")
    shown = standard + [dialog.text] + [f.get_attribute(a) or "" for f in fields for a in ("placeholder", "value")]
    assert not [s for s in shown if "null" in s.lower()], shown
    shot(browser, "ui-connection-form")

    browser.get(f"{stack.url}/connections")
    for conn_id, (_fields, colour) in connections.items():
        row = wait(lambda c=conn_id: [r for r in browser.find_elements(By.CSS_SELECTOR, "tbody tr") if c in r.text],
                   what=f"the row of {conn_id}")[0]
        button = row.find_element(By.CSS_SELECTOR, "button[aria-label='Test Connection']")
        browser.execute_script("arguments[0].click()", button)  # the previous row's tooltip may cover it
        wait(lambda b=button, want=colour: b.find_element(By.TAG_NAME, "svg").get_attribute("color") == want,
             timeout=90, what=f"the Test button of {conn_id} to turn {colour}")
    # the request the button makes (the UI sends the hidden port as 0), and the hook's answers
    for conn_id, (fields, _colour) in connections.items():
        answer = stack.api("POST", "/connections/test", {"connection_id": conn_id, "conn_type": "mlflow", "port": 0,
                                                        "login": "", "password": "", "schema": "", **fields})
        if conn_id == "mlflow_ui_check":
            assert answer == {"status": True, "message": f"Connected to MLflow at {demo_story['mlflow_uri']}"}
        else:
            assert answer["status"] is False and "Cannot reach MLflow tracking server" in answer["message"], answer


def test_drift_and_decay_asset_pages_and_their_producer(logged_in, demo_story):
    """
    Airflow 3.3.2 lists as "Producing Tasks" only tasks that declare the asset as an outlet; the drift and decay
    events are emitted through asset aliases, so the asset pages show none (docs/ui.md).  The producer is in
    each event's extra (dag_id, run_id, task_id, map_index) and names a task instance that exists.
    """
    from urllib.parse import quote

    from selenium.webdriver.common.by import By

    from mlops_provider.operators.drift import drift_asset_uri
    from mlops_provider.operators.performance import performance_decay_uri

    browser, stack = logged_in, demo_story["stack"]
    expected_task = {drift_asset_uri(MODEL): "check_batch.check_drift",
                     performance_decay_uri(MODEL): "check_decay"}
    for uri, task_id in expected_task.items():
        (asset,) = [a for a in stack.api("GET", "/assets?limit=100")["assets"] if a["uri"] == uri]
        assert asset["producing_tasks"] == [], asset["producing_tasks"]  # what the page counts
        events = stack.api("GET", f"/assets/events?asset_id={asset['id']}&limit=100")["asset_events"]
        assert events, f"no event on {uri}"
        for event in events:
            producer = event["extra"]["producer"]
            assert set(producer) == {"dag_id", "run_id", "task_id", "map_index"}, producer
            assert producer["task_id"].endswith(task_id), producer
            assert (producer["dag_id"], producer["task_id"], producer["run_id"], producer["map_index"]) == (
                event["source_dag_id"], event["source_task_id"], event["source_run_id"], event["source_map_index"]), event
            ti = stack.api("GET", f"/dags/{producer['dag_id']}/dagRuns/{quote(producer['run_id'], safe='')}"
                                  f"/taskInstances/{producer['task_id']}/{producer['map_index']}"
                           if producer["map_index"] >= 0 else
                           f"/dags/{producer['dag_id']}/dagRuns/{quote(producer['run_id'], safe='')}"
                           f"/taskInstances/{producer['task_id']}")
            assert ti["state"] == "success", ti
        browser.get(f"{stack.url}/assets/{asset['id']}")
        text = wait(lambda: "Producing Tasks" in browser.find_element(By.TAG_NAME, "body").text
                    and browser.find_element(By.TAG_NAME, "body").text, what=f"the asset page of {uri}")
        assert "Producing Tasks" in text and "0" in text.split("Producing Tasks", 1)[1][:40], text[:1500]
        shot(browser, "ui-asset-" + ("drift" if "drift" in uri else "decay"))
