# `make run` and `make test` create .venv on first use; nothing else is needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.stamp-run
TEST_STAMP := $(VENV)/.stamp-test
ARGS ?=

.PHONY: run test chaos netlab bench lint clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "lbconsole needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(RUN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/lbconsole $(ARGS)

# The netns suite (tests/netlab) runs as part of `make test` when it can (root, `ip netns`
# works, `nft` installed); otherwise it is skipped with one line saying why.
test: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q $(ARGS)

chaos: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -m chaos -s $(ARGS)

# Only the netns suite, with its reports; here a lab that cannot run is an error.
netlab: $(TEST_STAMP)
	LBNETLAB_REQUIRE=1 $(BIN)/python -m pytest -q -s -m netns tests/netlab $(ARGS)

bench: $(RUN_STAMP)
	$(BIN)/lbconsole bench $(ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis .import_linter_cache
