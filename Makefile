# Two commands on a fresh machine: `make run` and `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
WAREHOUSE ?= $(or $(EVALLIB_WAREHOUSE),warehouse)
PORT   ?= 8501

.PHONY: install run demo test lint bench screenshot clean

install: $(STAMP)

# Installs once; reinstalls only when pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv==0.13.8
	$(VENV)/bin/uv pip install --quiet --python $(PY) -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	@$(PY) -c "import sys; from evallib.warehouse import tables_present; sys.exit(0 if tables_present('$(WAREHOUSE)') else 1)" \
		|| $(VENV)/bin/evallib demo --warehouse '$(WAREHOUSE)'

run: demo
	$(VENV)/bin/evallib dashboard --warehouse '$(WAREHOUSE)' --port $(PORT)

test: $(STAMP)
	$(VENV)/bin/pytest -n 2

# Style, the layers contract (pyproject.toml [tool.importlinter]) and types: all offline.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache --no-logo
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) bench/run.py

# The README's picture: the Compare page of the demo `make run` serves, every page in the sidebar.
screenshot: demo
	EVALLIB_SCREENSHOT=$(CURDIR)/docs/dashboard.png EVALLIB_BROWSER_WAREHOUSE='$(WAREHOUSE)' \
		$(VENV)/bin/pytest -q tests/pages/test_browser.py -k every_page_answers_first

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
