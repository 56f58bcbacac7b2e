# The two set-up commands (see README): `make demo` and `make test`. Both create .venv and install
# everything they need on a fresh machine; re-running them skips the install when nothing changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.medal-installed

.PHONY: install demo test clean

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/medal demo

# pytest exits 5 when it collected no test; that is not a failure of the suite.
test: $(STAMP)
	$(BIN)/python -m pytest tests -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
