"""NewBatchTrigger / BatchArrivalTrigger, the Airflow way: serialize round trip, run() driven with __anext__().

Real temp folders and a real SQLite ledger; a "triggerer restart" is a new trigger instance built from
the serialized kwargs, sharing the ledger file.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
from pathlib import Path

import pytest

from mlops_provider.core.batches import BatchLedger, discover_batches
from mlops_provider.triggers.batch import BatchArrivalTrigger, NewBatchTrigger


def land_file(folder: Path, name: str, text: str = "a,b\n1,2\n") -> Path:
    """Write under a temporary name and rename into place (the atomic-rename convention)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.tmp"
    tmp.write_text(text)
    os.replace(tmp, folder / name)
    return folder / name


def rebuild(trigger):
    classpath, kwargs = trigger.serialize()
    module, name = classpath.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)(**kwargs)


class Driver:
    """Drive ``run()`` with ``__anext__()`` the way the triggerer does, without cancelling it between checks.

    (Cancelling a pending ``__anext__()`` would close the generator, so a pending step is kept and awaited
    again later, as in Airflow's own trigger tests: ``task = create_task(run().__anext__())``.)
    """

    def __init__(self, trigger):
        self.agen = trigger.run()
        self.pending: asyncio.Task | None = None

    def _step(self) -> asyncio.Task:
        if self.pending is None:
            self.pending = asyncio.ensure_future(self.agen.__anext__())
        return self.pending

    async def next_event(self, timeout: float = 3.0):
        task = self._step()
        done, _ = await asyncio.wait({task}, timeout=timeout)
        assert done, f"no event within {timeout}s"
        self.pending = None
        return task.result()

    async def no_event(self, wait: float = 0.4) -> bool:
        done, _ = await asyncio.wait({self._step()}, timeout=wait)
        return not done

    async def close(self):
        if self.pending is not None:
            self.pending.cancel()
            try:
                await self.pending
            except (asyncio.CancelledError, StopAsyncIteration):
                pass
        await self.agen.aclose()


@pytest.mark.parametrize("cls", [NewBatchTrigger, BatchArrivalTrigger])
def test_serialize_round_trip(cls, tmp_path):
    trigger = cls(location=f"{tmp_path}/*.csv", consumer="monitoring", poll_interval=0.05, min_age_seconds=1.5)
    classpath, kwargs = trigger.serialize()
    assert classpath == f"mlops_provider.triggers.batch.{cls.__name__}"
    assert json.loads(json.dumps(kwargs)) == kwargs
    again = rebuild(trigger)
    assert type(again) is cls and again.serialize() == (classpath, kwargs)


def test_event_trigger_hash_is_stable(tmp_path):
    a = NewBatchTrigger(location=f"{tmp_path}/*.csv", consumer="m")
    b = rebuild(a)
    assert NewBatchTrigger.hash(*a.serialize()) == NewBatchTrigger.hash(*b.serialize())


def test_new_batch_trigger_fires_once_per_batch_and_survives_restart(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()  # a landing folder that is missing fails visibly (test_missing_location_fails_visibly)

    async def scenario():
        trigger = NewBatchTrigger(location=f"{landing}/*.csv", consumer="monitoring", poll_interval=0.05)
        run = Driver(trigger)
        assert await run.no_event()
        land_file(landing, "b1.csv")
        event = await run.next_event()
        assert event.payload["status"] == "success"
        assert event.payload["batch_uri"] == str(landing / "b1.csv")
        assert json.loads(json.dumps(event.payload)) == event.payload
        assert await run.no_event()  # the same batch never fires again in this instance
        await run.close()

        # "triggerer restart": a fresh instance from the serialized kwargs, same ledger file
        run2 = Driver(rebuild(trigger))
        assert await run2.no_event()
        land_file(landing, "b2.csv")
        event2 = await run2.next_event()
        assert event2.payload["batch_uri"] == str(landing / "b2.csv")
        assert await run2.no_event()
        await run2.close()

        # another consumer of the same landing folder sees both batches, once each
        other = Driver(NewBatchTrigger(location=f"{landing}/*.csv", consumer="audit", poll_interval=0.05))
        uris = [(await other.next_event()).payload["batch_uri"] for _ in range(2)]
        assert sorted(uris) == [str(landing / "b1.csv"), str(landing / "b2.csv")]
        assert await other.no_event()
        await other.close()

    asyncio.run(scenario())


def test_restart_in_the_middle_of_a_burst_loses_and_doubles_nothing(tmp_path):
    landing = tmp_path / "landing"
    for i in range(5):
        land_file(landing, f"b{i}.csv")

    async def scenario():
        trigger = NewBatchTrigger(location=f"{landing}/*.csv", consumer="m", poll_interval=0.05)
        first = Driver(trigger)
        got = [(await first.next_event()).payload["batch_id"] for _ in range(2)]
        await first.close()  # triggerer stops after two events of the burst
        second = Driver(rebuild(trigger))
        got += [(await second.next_event()).payload["batch_id"] for _ in range(3)]
        assert await second.no_event()
        await second.close()
        return got

    got = asyncio.run(scenario())
    assert len(got) == 5 and len(set(got)) == 5


def test_partial_batches_are_not_picked_up(tmp_path):
    landing = tmp_path / "landing"
    part_dir = landing / "batch=1"
    part_dir.mkdir(parents=True)
    (part_dir / "part-0.csv").write_text("a\n1\n")
    (landing / ".batch-2.csv.tmp").write_text("a\n1\n")  # still being written
    (landing / "batch-3.csv.part").write_text("a\n1\n")

    async def scenario():
        run = Driver(NewBatchTrigger(location=str(landing), consumer="m", poll_interval=0.05))
        assert await run.no_event()
        (part_dir / "_SUCCESS").write_text("")
        event = await run.next_event()
        assert event.payload["batch_uri"] == str(part_dir)
        assert event.payload["files"] == [str(part_dir / "part-0.csv")]
        assert await run.no_event()
        await run.close()

    asyncio.run(scenario())


def test_rewritten_file_is_a_new_batch(tmp_path):
    landing = tmp_path / "landing"
    path = land_file(landing, "b.csv", "a\n1\n")
    ledger = BatchLedger(str(landing / ".mlops_batch_ledger.sqlite3"))
    (first,) = discover_batches(str(landing))
    assert ledger.claim("m", first) and not ledger.claim("m", first)
    os.utime(path, ns=(1, 1))
    land_file(landing, "b.csv", "a\n1\n2\n")
    (second,) = discover_batches(str(landing))
    assert second.batch_id != first.batch_id and ledger.claim("m", second)


def test_run_does_not_block_the_event_loop(tmp_path):
    """The scan runs in a thread: a concurrent coroutine keeps ticking while the trigger lists 200 files."""
    for i in range(200):
        land_file(tmp_path / "landing", f"b{i:03}.csv")

    async def scenario():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        task = asyncio.create_task(ticker())
        run = Driver(NewBatchTrigger(location=f"{tmp_path}/landing/*.csv", consumer="m", poll_interval=0.05))
        uris = [(await run.next_event(10)).payload["batch_uri"] for _ in range(200)]
        task.cancel()
        await run.close()
        return uris, ticks

    uris, ticks = asyncio.run(scenario())
    assert len(set(uris)) == 200
    assert ticks > 0


def test_arrival_trigger_fires_once_and_does_not_claim(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()  # a missing folder is an error event (test_arrival_trigger_on_a_missing_folder_fails_visibly)

    async def scenario():
        trigger = BatchArrivalTrigger(location=f"{landing}/*.csv", consumer="sensor", poll_interval=0.05)
        run = Driver(trigger)
        assert await run.no_event()
        land_file(landing, "b1.csv")
        event = await run.next_event()
        assert event.payload["status"] == "success" and event.payload["batch_uri"] == str(landing / "b1.csv")
        with pytest.raises(StopAsyncIteration):
            await run.agen.__anext__()
        # not claimed by the trigger: a re-deferral (or a retry) still sees it until the sensor claims it
        again = await Driver(rebuild(trigger)).next_event()
        assert again.payload["batch_id"] == event.payload["batch_id"]

    asyncio.run(scenario())


def test_arrival_trigger_reports_misconfiguration():
    async def scenario():
        # an object-store location without a ledger path is a configuration error -> error event
        run = Driver(BatchArrivalTrigger(location="memory://landing/*.csv", consumer="s", poll_interval=0.05))
        return await run.next_event()

    event = asyncio.run(scenario())
    assert event.payload["status"] == "error" and "ledger_path" in event.payload["message"]


def test_object_store_location_with_fsspec_memory(tmp_path):
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/obj-landing/b1.csv", b"a\n1\n")
    fs.pipe("/obj-landing/b2/part-0.csv", b"a\n1\n")  # no _SUCCESS yet

    async def scenario():
        trigger = NewBatchTrigger(
            location="memory://obj-landing/*",
            consumer="m",
            ledger_path=str(tmp_path / "ledger.sqlite3"),
            poll_interval=0.05,
        )
        run = Driver(trigger)
        first = await run.next_event()
        assert await run.no_event()
        fs.pipe("/obj-landing/b2/_SUCCESS", b"")
        second = await run.next_event()
        await run.close()
        return first.payload["batch_uri"], second.payload["batch_uri"]

    first, second = asyncio.run(scenario())
    assert first.endswith("obj-landing/b1.csv") and second.endswith("obj-landing/b2")


def test_arrival_trigger_waits_until_not_before(tmp_path):
    """The batch is already there, but the trigger fires only after ``not_before`` (defer/resume race guard)."""
    import time

    land_file(tmp_path / "landing", "b1.csv")

    async def scenario():
        trigger = BatchArrivalTrigger(
            location=f"{tmp_path}/landing/*.csv", consumer="s", poll_interval=0.05, not_before=time.time() + 1.0
        )
        assert rebuild(trigger).not_before == trigger.not_before
        run = Driver(trigger)
        assert await run.no_event(0.6)
        event = await run.next_event(3)
        assert event.payload["status"] == "success"

    asyncio.run(scenario())


def test_file_location_fires_once_per_new_content(tmp_path):
    """A location naming one file watches that file (level 2's proposed pipeline YAML): each content, once."""
    proposed = tmp_path / "proposed" / "model.yaml"
    proposed.parent.mkdir()

    async def scenario():
        trigger = NewBatchTrigger(location=str(proposed), consumer="cicd", poll_interval=0.05)
        run = Driver(trigger)
        assert await run.no_event()  # not written yet: waits in its existing folder
        land_file(proposed.parent, "model.yaml", "name: model\nversion: 1\n")
        event = await run.next_event()
        assert event.payload["batch_uri"] == str(proposed) and event.payload["n_files"] == 1
        assert await run.no_event()  # same content: no second event
        land_file(proposed.parent, "model.yaml", "name: model\nversion: 2\n")
        assert (await run.next_event()).payload["batch_uri"] == str(proposed)
        land_file(proposed.parent, "other.yaml")  # a sibling is not the watched file
        assert await run.no_event()
        await run.close()
        # the ledger sits beside the file, and a restarted trigger does not fire the same content again
        assert (proposed.parent / ".mlops_batch_ledger.sqlite3").is_file()
        run2 = Driver(rebuild(trigger))
        assert await run2.no_event()
        await run2.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "location",
    [
        "{tmp}/no_such_folder/*.csv",  # a glob whose folder is missing
        "{tmp}/no_such_folder/batches",  # a file or folder whose folder is missing
        "{tmp}/a_file.csv/*.csv",  # a glob whose "folder" is a file
        "{tmp}/fifo",  # neither a file nor a folder
        "{tmp}/landnig",  # a typo of an existing folder's name: a missing folder, not a file to come
        "{tmp}/landing_new/",  # a trailing slash names a folder
    ],
)
def test_missing_location_fails_visibly(tmp_path, location):
    from mlops_provider.core.batches import LocationError

    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "a_file.csv").write_text("a\n1\n")
    location = location.format(tmp=tmp_path)

    async def scenario():
        run = Driver(NewBatchTrigger(location=location, consumer="m", poll_interval=0.05))
        with pytest.raises(LocationError, match="does not exist|neither a file nor a folder|is not a folder"):
            await run.next_event()

    asyncio.run(scenario())


@pytest.mark.parametrize("cls", [NewBatchTrigger, BatchArrivalTrigger])
@pytest.mark.parametrize(("field", "value"), [("location", ""), ("location", "  "), ("consumer", "")])
def test_empty_location_or_consumer_is_refused_at_parse_time(cls, field, value, tmp_path):
    """An empty location would list the file system's root: refused when the DAG is parsed."""
    from mlops_provider.exceptions import MlopsConfigurationError

    kwargs = {"location": str(tmp_path), "consumer": "m", field: value}
    with pytest.raises(MlopsConfigurationError, match=f"{field} must be a non-empty string"):
        cls(**kwargs)


def test_arrival_trigger_on_a_missing_folder_fails_visibly(tmp_path):
    """The DriftSensor's trigger too: a typo in its folder is an error event, not an endless wait."""

    async def scenario():
        run = Driver(BatchArrivalTrigger(location=str(tmp_path / "landnig"), consumer="m", poll_interval=0.05))
        event = await run.next_event()
        assert event.payload["status"] == "error" and event.payload["retryable"] is False
        assert "does not exist" in event.payload["message"]

    asyncio.run(scenario())


@pytest.mark.parametrize("cls", [NewBatchTrigger, BatchArrivalTrigger])
def test_object_store_scheme_without_its_package_names_the_package(cls):
    """gcsfs is not installed here (checked): the error names the package instead of a bare ImportError."""
    assert importlib.util.find_spec("gcsfs") is None

    async def scenario():
        run = Driver(cls(location="gs://bucket/landing/*.parquet", consumer="m", poll_interval=0.05))
        if cls is NewBatchTrigger:
            with pytest.raises(ValueError, match=r"no file system for gs:// is installed.*gcsfs"):
                await run.next_event()
        else:
            event = await run.next_event()
            assert event.payload["status"] == "error" and event.payload["retryable"] is False
            assert "gcsfs" in event.payload["message"]

    asyncio.run(scenario())
