# Two commands for a fresh machine: `make demo` (set up, then run the demo) and `make test`.
PY ?= python3
PIP = $(PY) -m pip
STAMP = .setup.stamp

.PHONY: setup demo test lint bench bench-quality bench-eval bench-mining bench-mom bench-roul bench-frames bench-surrogate bench-sequences clean

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

# make bench: every benchmark, several hours on 2 cores (the 3-seed quality ablations dominate);
# each target below also runs on its own.
bench: bench-eval bench-quality bench-mining bench-mom bench-roul bench-frames bench-surrogate bench-sequences

bench-eval: $(STAMP)
	$(PY) benchmarks/bench_eval.py

bench-quality: $(STAMP)
	$(PY) benchmarks/bench_quality.py

# MoM Table 1 ablation (seed 002): 3 datasets x 3 starts x 6 rows x 3 seeds, with diffusion rows;
# about 2 h on 2 idle cores (the scratch rows dominate).
bench-mom: $(STAMP)
	$(PY) benchmarks/bench_mom.py --datasets mnist5k,mnist5k-50,digits --rerank --out bench-out/mom.json

# ROUL Table 4 ablation (seed 003): hadsell, MS + memory bank, +ROC, +ROC+MOC x scratch/distill
# x 3 seeds on mnist5k and digits, each plain / + ROUL re-ranking / + diffusion re-ranking.
bench-roul: $(STAMP)
	$(PY) benchmarks/bench_roul.py --datasets mnist5k,digits --out bench-out/roul.json

# Object frames (seed 004) on synthetic faces and the arm, 3 seeds; ~40 min on 2 cores
# (faces 25 min, arm 12 min, measured with another benchmark on the other core).
bench-frames: $(STAMP)
	$(PY) benchmarks/bench_frames.py --out bench-out/frames.json

# CliqueCNN and Posets (seeds 001 Ch.3, 000): hadsell, cliquecnn and its Eq. 3.1 ablation, posets
# Z=1 / Z=2 x scratch/distill x 3 seeds on mnist5k and digits, then grouping 1e5 items.
bench-surrogate: $(STAMP)
	$(PY) benchmarks/bench_surrogate.py --datasets mnist5k,digits
	$(PY) benchmarks/bench_surrogate.py --grouping-scale --n 100000

# Exemplar ROC-AUC (Olympic Sports protocol) on synthetic frame sequences with pose ground truth:
# g(x) with / without local temporal pooling, CliqueCNN (+ LTP), Posets.
bench-sequences: $(STAMP)
	$(PY) benchmarks/bench_sequences.py

bench-mining: $(STAMP)
	$(PY) benchmarks/bench_mining.py --sizes 10000 100000
	$(PY) benchmarks/bench_mining.py --pools

clean:
	rm -rf $(STAMP) demo-run bench-out .pytest_cache
