# The two commands a newcomer needs: `make demo` and `make test`. Everything installs into .venv.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
CODE := services gateway tests bench scripts

.PHONY: install demo test test-fast lint protos bench browser clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

demo: install
	$(VENV)/bin/onestop demo

browser:
	bash scripts/install-browser.sh

test: install browser
	$(VENV)/bin/pytest -q -p no:cacheprovider

test-fast: install
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/unit

lint: install
	$(PY) scripts/gen_protos.py --check
	$(VENV)/bin/ruff check $(CODE)
	$(VENV)/bin/ruff format --check $(CODE)
	$(VENV)/bin/mypy services gateway

protos: install
	$(PY) scripts/gen_protos.py

bench: install
	$(PY) bench/run_all.py --json bench/results.json

clean:
	rm -rf $(VENV) .onestop test-artifacts
