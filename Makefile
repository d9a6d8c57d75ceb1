# Two commands on a fresh machine: `make demo` (the main job end to end) and `make test` (the test suite).
# Both create the virtualenv and install graphrec when needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.graphrec-installed

.PHONY: install demo test lint format bench evaluate system-test clean

# pip's own output (and the build backend's notes on editable installs) goes to a log, shown only on failure.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing graphrec and its pinned dependencies into $(VENV) (log: $(VENV)/install.log)"
	@# torch first, pinned: the CPU wheel on local disk; letting pip choose would pull a multi-GB CUDA build.
	@{ $(PY) -m pip install --upgrade pip \
	  && $(PY) -m pip install torch==2.13.0 \
	  && $(PY) -m pip install -e '.[test,postgres]'; } > $(VENV)/install.log 2>&1 \
	  || { tail -n 60 $(VENV)/install.log; echo "install failed: see $(VENV)/install.log" >&2; exit 1; }
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/graphrec demo

# The import contracts (pyproject.toml [tool.importlinter]) run first: a broken layer fails the tests.
test: install
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q

# Lint and format check (ruff) plus the import contracts; .ci/run runs it before the tests.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

# Apply ruff's formatting and safe fixes.
format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Benchmarks print their own tables; BENCHMARKS.md records them. Run as modules so bench/serving.py
# cannot shadow the serving package.
bench: install
	$(PY) -m pip install --quiet -e '.[test,postgres,bench]'
	$(PY) -m bench.synth
	$(PY) -m bench.transh
	$(PY) -m bench.materialize
	$(PY) -m bench.train_speed --epochs 5 --threads 1
	$(PY) -m bench.sparse_adam
	$(PY) -m bench.serving_synthetic
	@# the served champions: bench/serving.py reads the demo's state in ./work (made here when missing)
	test -f work/mlflow.db || $(VENV)/bin/graphrec demo
	$(PY) -m bench.serving
	$(PY) -W ignore -m bench.ray_features --users 2000 100000
	$(PY) -W ignore -m bench.two_hop_reach --users 100000

# The comparisons (too slow for CI, about an hour each on 2 cores; --resume continues an interrupted one):
# RESULTS.md: every registered model in both regimes (bce: labelled rows; bpr: sampled negatives; each regime with
# its equal-budget tuned config from training/models/tuned/), 3 seeds, on Last.FM.
# results/kg-synthetic.md: the same models in both regimes on the seeded KG-driven synthetic set, with KCAN's
# ablations (the set is generated first: seconds, byte-identical); results/kg-synthetic-selecting.md: the same in bpr
# with KCAN's switch set chosen on that set's validation split (results/kg-synthetic-configs/kcan.yaml), 5 seeds.
# results/kg-synthetic-cold.md: KCAN (that switch set), its ablations, BPR-MF and popularity on the same kind of set
# with a 10x catalogue (5,000 items: a median 5 clicks each), where co-clicks alone link few items. One job, about
# 3 h: a no-distillation run takes about 45 min there, and two at once beside other work ran 23 GiB out of memory.
# results/kg-synthetic-cold-tuned.md: the same after an equal-budget study per model on that set (12 Optuna trials
# each on validation AUC, epochs <= 50, patience 5; trial 0 is the starting config: BPR-MF's defaults, KCAN's switch
# set), the winners in results/kg-synthetic-cold-tuned/ (about 1 h of tuning, 2 h of evaluation).
# results/intent-side-feature.md: BPR-MF and KCAN with and without the intent topics as a user side feature.
# results/lastfm-topk.md: every model under the top-K protocol (per-user 8:1:1, full-catalogue ranking).
# results/crossdomain.synthetic.md: CD-GNN and its baselines at 10/30/100% of target labels (7 min; the two-domain
# set is generated under the work dir; the run is also logged to MLflow with its AUC-vs-sparsity plot).
SYNTH_KG := work/synthetic-kg0.7
SYNTH_KG_COLD := work/synthetic-kg0.7-items5000
COLD_STUDY := --trials 12 --epochs 50 --patience 5 --regime bpr --tuned-dir results/kg-synthetic-cold-tuned --threads 1
evaluate: install
	$(VENV)/bin/graphrec evaluate --models all --seeds 3 --regimes bce,bpr --jobs 2 --threads 1 --out RESULTS.md
	$(VENV)/bin/graphrec data synth --users 5000 --seed 0 --kg-driven-share 0.7 --out $(SYNTH_KG)
	$(VENV)/bin/graphrec evaluate --models all --seeds 3 --regimes bce,bpr --datasets $(SYNTH_KG) --ablations all \
	  --jobs 2 --threads 1 --out results/kg-synthetic.md
	$(VENV)/bin/graphrec evaluate --models all --seeds 5 --regimes bpr --datasets $(SYNTH_KG) --ablations all \
	  --config-dir results/kg-synthetic-configs --jobs 2 --threads 1 --out results/kg-synthetic-selecting.md
	$(VENV)/bin/graphrec data synth --users 5000 --seed 0 --kg-driven-share 0.7 --items 5000 --out $(SYNTH_KG_COLD)
	$(VENV)/bin/graphrec evaluate --models kcan,bpr_mf,popularity --seeds 3 --regimes bpr --datasets $(SYNTH_KG_COLD) \
	  --ablations all --config-dir results/kg-synthetic-configs --jobs 1 --threads 1 --out results/kg-synthetic-cold.md
	$(VENV)/bin/graphrec --dataset $(SYNTH_KG_COLD) --work-dir work/tune-cold tune --model bpr_mf $(COLD_STUDY)
	$(VENV)/bin/graphrec --dataset $(SYNTH_KG_COLD) --work-dir work/tune-cold tune --model cke $(COLD_STUDY)
	$(VENV)/bin/graphrec --dataset $(SYNTH_KG_COLD) --work-dir work/tune-cold tune --model nfm $(COLD_STUDY)
	$(VENV)/bin/graphrec --dataset $(SYNTH_KG_COLD) --work-dir work/tune-cold tune --model kcan $(COLD_STUDY) \
	  --config results/kg-synthetic-configs/kcan.yaml
	$(VENV)/bin/graphrec evaluate --models kcan,bpr_mf,cke,nfm,popularity --seeds 3 --regimes bpr --datasets $(SYNTH_KG_COLD) \
	  --ablations all --tuned-dir results/kg-synthetic-cold-tuned --jobs 1 --threads 1 --out results/kg-synthetic-cold-tuned.md
	$(VENV)/bin/graphrec evaluate --models bpr_mf,kcan --seeds 3 --regimes bpr --extensions all --jobs 2 --threads 1 \
	  --out results/intent-side-feature.md
	$(VENV)/bin/graphrec evaluate --models all --seeds 3 --regimes bpr --protocol topk --jobs 2 --threads 1 \
	  --out results/lastfm-topk.md
	$(VENV)/bin/graphrec --work-dir work/crossdomain crossdomain evaluate --data synth:4000:2000:0 --direction fund-coupon \
	  --keep 0.1,0.3,1.0 --seeds 3 --epochs 10 --negatives 99 --batch-size 1024 --out results/crossdomain.synthetic.md

# Reliability tier of the serving service (saturation, hot swap under load, Redis outage, schemathesis).
system-test: install
	$(PY) -m pytest -q -m system tests/system

clean:
	rm -rf work .pytest_cache
