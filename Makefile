# The two commands of the README: `make demo` and `make test`. Both set up .venv first.
# `make test` lints (ruff), checks the layers of docs/architecture.md (lint-imports), then runs pytest.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO := demo

.PHONY: demo test install clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $@

demo: install
	rm -rf $(DEMO)
	$(BIN)/accelstore synth $(DEMO)/raw --participants 3 --days 2 --seed 7
	$(BIN)/accelstore ingest $(DEMO)/raw -o $(DEMO)/store.zarr --workers 2
	$(BIN)/accelstore info $(DEMO)/store.zarr
	$(BIN)/accelstore query $(DEMO)/store.zarr P001 -o $(DEMO)/P001.nc
	$(BIN)/python examples/first_day.py $(DEMO)/store.zarr

test: install
	$(BIN)/ruff check accelstore tests bench examples
	$(BIN)/lint-imports --no-cache
	@# Numba compiles each kernel once into its on-disk cache: here, in one process, rather than in
	@# every test process and every Dask worker they start, all at once.
	$(BIN)/python -c "from accelstore.pipelines import ingest_task, pretext_validation; ingest_task.warm_up(); pretext_validation.warm_up()"
	$(BIN)/python -m pytest -q -n auto --dist worksteal

clean:
	rm -rf $(DEMO) $(VENV)
