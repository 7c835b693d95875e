# Two commands for a fresh machine: `make demo` (set up, then run the demo) and `make test`.
PY ?= python3
PIP = $(PY) -m pip
STAMP = .setup.stamp

.PHONY: setup demo test lint bench bench-quality bench-eval clean

# torch is pinned to 2.13.0, whose CPU wheel the project machines hold locally: an unpinned
# torch would pull several GB of CUDA packages.
$(STAMP): pyproject.toml
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) -m labelfree.cli demo

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks

test: lint
	$(PY) -m pytest

bench: bench-eval bench-quality

bench-eval: $(STAMP)
	$(PY) benchmarks/bench_eval.py

bench-quality: $(STAMP)
	$(PY) benchmarks/bench_quality.py

clean:
	rm -rf $(STAMP) demo-run bench-out .pytest_cache
