# Two commands for a fresh machine: `make demo` (set up, then run the demo) and `make test`.
PY ?= python3
PIP = $(PY) -m pip
STAMP = .setup.stamp

.PHONY: setup demo test lint bench bench-quality bench-eval bench-mining bench-mom clean

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

# make bench: about 45 min on 2 idle cores (quality over 3 seeds dominates).
bench: bench-eval bench-quality bench-mining bench-mom

bench-eval: $(STAMP)
	$(PY) benchmarks/bench_eval.py

bench-quality: $(STAMP)
	$(PY) benchmarks/bench_quality.py

# MoM Table 1 ablation (seed 002): 3 datasets x 3 starts x 6 rows x 3 seeds, with diffusion rows;
# about 2 h on 2 idle cores (the scratch rows dominate).
bench-mom: $(STAMP)
	$(PY) benchmarks/bench_mom.py --datasets mnist5k,mnist5k-50,digits --rerank --out bench-out/mom.json

bench-mining: $(STAMP)
	$(PY) benchmarks/bench_mining.py --sizes 10000 100000
	$(PY) benchmarks/bench_mining.py --pools

clean:
	rm -rf $(STAMP) demo-run bench-out .pytest_cache
