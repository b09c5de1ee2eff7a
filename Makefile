# The README's two commands: `make demo` and `make test`.  Both create .venv on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
KEEP ?= 0
# make demo PIPELINES=path/: run your own folder of pipeline YAMLs instead of the loan story (docs/pipelines.md)
PIPELINES ?=

.PHONY: install demo test lint unit system bench constraints clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev,postgres,celery,openlineage,s3]" -c constraints.txt
	# the editable build leaves a second copy of the metadata on sys.path: Airflow would load the plugin twice
	rm -rf provider/*.egg-info
	$(BIN)/python -m pip check
	touch $(STAMP)

# The project's virtualenv (.venv): what scripts/stack and the demo run with (docs/deployment.md).
install: $(STAMP)

demo: $(STAMP)
ifeq ($(strip $(PIPELINES)),)
	KEEP=$(KEEP) $(BIN)/python scripts/demo.py
else
	$(BIN)/mlops-pipelines run $(PIPELINES) --workdir .demo-pipelines
endif

lint: $(STAMP)
	$(BIN)/ruff check provider dags tests bench scripts

test: $(STAMP) lint
	$(BIN)/python -m pytest -p no:cacheprovider

unit: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider tests/unit

system: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider tests/system

# Re-pin the whole resolved environment (run after changing dependencies in pyproject.toml).
constraints: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e ' | sort -f > constraints.txt

clean:
	rm -rf $(VENV) .demo
