# `make demo` and `make test` do all set-up on a fresh machine (Python 3.11 with pip).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test install bench clean

# the runtime (enough for `make demo`); `make test` adds the test extra on top
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -c constraints.txt -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(TEST_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/convsight demo -o demo

test: $(TEST_STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

bench: $(TEST_STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test,bench]'
	for b in bench/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf demo build src/*.egg-info
