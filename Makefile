# Two commands on a fresh machine with only Python 3.11 and pip: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test venv clean

venv: $(STAMP)

# Reinstall only when the dependency pins change; -c pins every transitive package.
$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=python3 ...'" >&2; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,litert]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/flaxnets demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -q --durations=25

# The reference checks left out of `make test` (pytest marker `extra`; pyproject.toml says which).
test-extra: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -q -m extra

clean:
	rm -rf $(VENV) runs demo_data
