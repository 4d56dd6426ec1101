# Two commands set up a fresh machine: `make test` and `make demo`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: test demo venv lint bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e '.[test,export,wandb]'
	touch $@

venv: $(VENV)/.installed

test: $(VENV)/.installed
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m pytest -q

demo: $(VENV)/.installed
	$(VENV)/bin/ccl demo --out demo_runs

bench: $(VENV)/.installed
	$(PY) benchmarks/train_step.py

clean:
	rm -rf $(VENV) demo_runs runs
