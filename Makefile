# Two commands for a fresh machine: `make demo` (set up, then run the demo) and `make test`.
#
# Set-up installs exactly the versions in requirements.lock (every runtime and dev dependency,
# pinned with hashes, resolved by pip-tools from pyproject.toml) into a project-local virtual
# environment, $(VENV), so every fresh clone gets the same packages. torch is the local CPU wheel
# 2.13.0 the project machines hold (pip finds it through their pip configuration; an unpinned
# torch would pull several GB of CUDA packages). `make lock` re-resolves after a change to
# pyproject.toml; `make lock-upgrade` moves every pin to the newest version pyproject.toml
# allows and runs the tests on them, so drift is seen on purpose.
PYTHON ?= python3
VENV ?= .venv
PY = $(VENV)/bin/python
LOCK = requirements.lock
STAMP = $(VENV)/.labelfree-setup
PIP_TOOLS = pip-tools==7.7.0
LOCK_FLAGS = --extra=dev --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links --quiet

.PHONY: setup demo test lint lock lock-upgrade bench bench-quality bench-eval bench-mining bench-mom bench-roul bench-frames bench-surrogate bench-sequences bench-augment bench-search bench-stream bench-selection bench-baselines bench-dnc bench-flow bench-frame-defaults gpu-check clean

$(STAMP): $(LOCK) pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes --no-deps -r $(LOCK)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) -m labelfree.cli demo

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks

test: lint
	$(PY) -m pytest

# pip-tools runs from its own small environment, so re-locking never changes $(VENV) by hand.
$(VENV)-tools/bin/pip-compile:
	$(PYTHON) -m venv $(VENV)-tools
	$(VENV)-tools/bin/pip install -q $(PIP_TOOLS)

lock: $(VENV)-tools/bin/pip-compile
	$(VENV)-tools/bin/pip-compile $(LOCK_FLAGS) --output-file=$(LOCK) pyproject.toml

lock-upgrade: $(VENV)-tools/bin/pip-compile
	$(VENV)-tools/bin/pip-compile $(LOCK_FLAGS) --upgrade --output-file=$(LOCK) pyproject.toml
	git --no-pager diff --stat -- $(LOCK) || true
	$(MAKE) test

# make bench: every benchmark, several hours on 2 cores (the 3-seed quality ablations dominate);
# each target below also runs on its own.
bench: bench-eval bench-quality bench-mining bench-mom bench-roul bench-frames bench-surrogate bench-sequences bench-augment bench-search bench-stream bench-selection bench-baselines bench-dnc bench-flow

bench-eval: $(STAMP)
	$(PY) benchmarks/bench_eval.py

# The default method and its contenders with their own defaults (+ the consistency ablation and
# diffusion re-ranking), distilled start, 3 seeds, mnist5k at 500 and 50 per class and digits;
# then the Hadsell baseline from all three starts. About 40 min per dataset on 2 idle cores.
bench-quality: $(STAMP)
	$(PY) benchmarks/bench_quality.py --rows defaults --starts distill --rerank --gx pixels,hog,hog-lda,lite0 --out bench-out/quality-defaults.json
	$(PY) benchmarks/bench_quality.py --rows baselines

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

# Motion chapters of seed 004 on synthetic-sprites, 3 seeds: CPFS losses vs direct flow
# classification vs a random network; Trainable DeepMatching's Table 1 grid; step / matching cost.
bench-flow: $(STAMP)
	$(PY) benchmarks/bench_flow.py --out bench-out/flow.json

# Every pixel-level method with its defaults through the CLI, wall seconds beside 10 minutes.
bench-frame-defaults: $(STAMP)
	$(PY) benchmarks/bench_frame_defaults.py

# CliqueCNN and Posets (seeds 001 Ch.3, 000): hadsell, cliquecnn and its Eq. 3.1 ablation, posets
# Z=1 / Z=2 x scratch/distill x 3 seeds on mnist5k and digits, then grouping 1e5 items.
bench-surrogate: $(STAMP)
	$(PY) benchmarks/bench_surrogate.py --datasets mnist5k,digits
	$(PY) benchmarks/bench_surrogate.py --grouping-scale --n 100000

# Exemplar ROC-AUC (Olympic Sports protocol) on synthetic frame sequences with pose ground truth:
# g(x) with / without local temporal pooling, CliqueCNN (+ LTP), Posets.
bench-sequences: $(STAMP)
	$(PY) benchmarks/bench_sequences.py

# On a machine with CUDA: CPU/GPU agreement on a tiny input and bf16 training throughput beside a
# plain pytorch-metric-learning loop (not part of the tests; CI has no GPU). ~3 min.
gpu-check: $(STAMP)
	$(PY) benchmarks/gpu_check.py --device cuda

# Augmentation throughput (images/s) beside a plain kornia pipeline of the same ops.
bench-augment: $(STAMP)
	$(PY) benchmarks/bench_augment.py

bench-stream: $(STAMP)
	$(PY) benchmarks/bench_stream.py
	$(PY) benchmarks/bench_stream.py --memory

# Search index build / query time and recall@k of hnsw and ivf against the exact flat index.
bench-search: $(STAMP)
	$(PY) benchmarks/bench_search.py

# Per-epoch held-out MAP@R beside label-free selection criteria, and the label-target ceiling
# (about 6 min on 2 idle cores).
bench-selection: $(STAMP)
	$(PY) benchmarks/bench_selection.py --methods mom,hadsell,diffusion --epochs 6 --oracle

# Every method beside g(x), its start and the baselines (instance discrimination, Exemplar-CNN,
# DeepCluster, STML, D&C): 4 datasets incl. the many-class mnist-numbers, 3 seeds, with
# diffusion re-ranking; ~3 h on 2 cores.
bench-baselines: $(STAMP)
	$(PY) benchmarks/bench_baselines.py --rerank

# Divide & Conquer's ablation (seed 001 Table 2.6), supervised and on pseudo-classes, on
# mnist-numbers, 3 seeds, with the reclustering's share of an epoch.
bench-dnc: $(STAMP)
	$(PY) benchmarks/bench_dnc.py

bench-mining: $(STAMP)
	$(PY) benchmarks/bench_mining.py --sizes 10000 100000
	$(PY) benchmarks/bench_mining.py --pools

clean:
	rm -rf $(VENV) $(VENV)-tools demo-run bench-out .pytest_cache
