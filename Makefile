# Two entry points: `make demo` and `make test`. Both create .venv and install
# exactly the versions in requirements.lock first.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
# Test processes (pytest-xdist, one file per worker): CI has 2 cores.
WORKERS ?= 2
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow lint bench notebook clean

$(STAMP): requirements.lock pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/hplan demo

test: $(STAMP)
	HPLAN_QUICK=1 $(BIN)/python -m pytest -q -n $(WORKERS) --dist loadfile --nbmake tests notebooks/quickstart.ipynb

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python bench/env_steps.py && $(BIN)/python bench/train_wm.py && $(BIN)/python bench/planners.py

notebook: $(STAMP)
	$(BIN)/python -m pip install -q notebook==7.6.5
	$(BIN)/python -m jupyter notebook notebooks/

clean:
	rm -rf $(VENV) out
