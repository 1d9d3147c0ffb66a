# One entry point per workflow; the logic lives in baac_severity/ and dvc.yaml, not here.
SHELL := /bin/bash
.DEFAULT_GOAL := help

export DVC_NO_ANALYTICS := 1
export BENTOML_DO_NOT_TRACK := True
export MLFLOW_DISABLE_TELEMETRY := true
export BENTOML_HOME ?= $(CURDIR)/bentoml_home

UV ?= $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
RUN := $(UV) run --frozen
HOST ?= 127.0.0.1
PORT ?= 3000
WORKERS ?= 2
EXP ?=

.PHONY: help install data run test reliability lint typecheck format bench promote rollback mlflow_ui \
	do_etl do_etl_full do_etl_chunked ingest_data_chunked clean_data assign_splits \
	train_model do_ml_pipeline progress features_doc

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-22s %s\n", $$1, $$2}'

# --compile-bytecode: with PYTHONDONTWRITEBYTECODE set (CI, containers) every `dvc` call would
# otherwise recompile ~800 modules: `dvc exp show` with 30 experiments 7.8 s -> 2.7 s (busy host).
install: ## install Python deps from uv.lock (installs uv first if needed)
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install -q uv
	$(UV) sync --frozen --compile-bytecode

data: install ## fetch the embedded raw BAAC dump (data.dvc) from the in-repo DVC remote
	$(RUN) dvc pull -q data.dvc

run: data ## the whole job: install, data, every pipeline stage, promote, show metrics
	$(RUN) dvc repro
	$(RUN) baac promote --if-better
	$(RUN) baac metrics

# Two processes, one test file each at a time (module fixtures such as the real experiment repo
# are built once): 6 min 50 s instead of 9 min 50 s on 2 cores, much of the suite waiting on dvc
# and bentoml subprocesses. The reliability checks run serially: they measure time and memory.
test: data ## the test suite (fast reliability checks included; the long ones: make reliability)
	$(RUN) pytest -n 2 --dist loadfile

reliability: data ## every reliability check: fuzzing, hostile bodies, crashes, load (README)
	$(RUN) pytest -m reliability -v -rP  # -rP: each check prints its figures
	$(RUN) python bench/load.py

lint: install ## ruff lint and format check
	$(RUN) ruff check .
	$(RUN) ruff format --check .

typecheck: install ## mypy on baac_severity/ (settings in pyproject.toml)
	$(RUN) mypy

format: install
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

bench: data ## benchmarks (time per stage, per chunk, training time and memory)
	$(RUN) python bench/stages.py

progress: ## print the ingestion progress
	@$(RUN) baac progress

# --- stages, with the original project's target names ------------------------------
ingest_data_chunked: ## ingest the next chunk of accidents (one more than now)
	$(RUN) dvc exp run ingest-chunk -S ingest.chunks=$$($(RUN) baac progress --next)

do_etl: ## full batch load: every chunk, cleaned and split
	$(RUN) dvc exp run split -S ingest.chunks=all

do_etl_full: do_etl

do_etl_chunked: ingest_data_chunked clean_data assign_splits ## next chunk, then clean and split

clean_data: ## clean-scd2 stage
	$(RUN) dvc repro clean-scd2

assign_splits: ## split stage
	$(RUN) dvc repro split

train_model: ## train stage
	$(RUN) dvc repro train

do_ml_pipeline: ## clean -> split -> train
	$(RUN) dvc repro train

# The gate (docs/experiments.md): promotes only a challenger that beats the champion on the
# validation selection metric and is not significantly worse on the test rows (exit 1 otherwise).
promote: ## promote the workspace model, or EXP=<experiment>, if it passes the gate (FORCE=1 REASON="...")
	$(RUN) baac promote $(if $(EXP),--experiment $(EXP)) \
		$(if $(FORCE),--force --reason "$(REASON)")

rollback: ## make the registry's previous champion the champion again
	$(RUN) baac rollback

mlflow_ui: ## MLflow UI on the local SQLite store
	$(RUN) mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host $(HOST) --port 5000

features_doc: ## regenerate docs/FEATURES.md from baac_severity/features.py
	$(RUN) baac features > docs/FEATURES.md

# --- serving: the BentoML prediction API (issue 4; docs/serving.md) ----------------------
# Serves the champion (models/), put into $(BENTOML_HOME) first if it is not there (baac
# sync-bentoml: one tag per model, the newest BAAC_KEEP_MODELS kept); API_KEY comes from the
# environment or .env (see .env.example); BAAC_MODEL_TAG=<name:version> in the environment
# serves another.
SERVICE ?= baac_severity.serving.service:BAACSeverity

.PHONY: serve api_dev bento serve_requirements bench_serve bench_batching bench_faults bench_scale

serve: ## prediction API on http://$(HOST):$(PORT) (promoted model; needs API_KEY)
	@tag=$${BAAC_MODEL_TAG:-$$($(RUN) baac sync-bentoml)} && BAAC_MODEL_TAG=$$tag \
		$(RUN) bentoml serve $(SERVICE) --host $(HOST) --port $(PORT)

api_dev: ## the prediction API, reloading on code changes
	@tag=$${BAAC_MODEL_TAG:-$$($(RUN) baac sync-bentoml)} && BAAC_MODEL_TAG=$$tag \
		$(RUN) bentoml serve $(SERVICE) --host $(HOST) --port $(PORT) --reload

bento: ## package the API and the promoted model into a bento (offline)
	@tag=$${BAAC_MODEL_TAG:-$$($(RUN) baac sync-bentoml)} && BAAC_MODEL_TAG=$$tag \
		$(RUN) bentoml build .

serve_requirements: ## regenerate requirements-serve.txt (the bento's pins: the serve group) from uv.lock
	$(UV) export --frozen --no-hashes --only-group serve --prune bentoml --no-emit-project \
		-o requirements-serve.txt

bench_serve: ## benchmark the prediction API against a plain Starlette baseline
	$(RUN) python bench/serve.py

bench_batching: ## adaptive batching against the unbatched service, 1 and 16 clients
	$(RUN) python bench/load.py --compare --seconds 20

bench_faults: ## 1 and 2 workers: memory, a worker killed under load, /metrics after random paths
	$(RUN) python bench/faults.py

bench_scale: data ## the whole pipeline on SYNTHETIC 1x, 2x, 5x, 10x copies of the bundle (docs/scale.md)
	$(RUN) python bench/scale.py

# --- experiments: dashboard, review, sweep (issue 5; docs/experiments.md) ----------------
DASHBOARD_PORT ?= 8501
BASELINE ?= main
EXPS ?=
# The default sweep: 2 x 3 random forests, each on the full 2018 data (all its chunks).
# Override: make sweep SWEEP="-S 'model=random_forest,hist_gradient_boosting'".
SWEEP ?= -S 'data.years=[2018]' -S 'ingest.chunks=all' -S 'model=random_forest' \
	-S 'model.n_estimators=100,200' -S 'model.min_samples_leaf=5,10,20'

.PHONY: dashboard review sweep exps bench_dashboard

# `dvc exp show` keeps the columns that fit from the left (metrics, then params, then deps);
# this keeps the selection and test ROC-AUC, the model size, the mean out-of-time ROC-AUC and
# the params that changed.
exps: ## experiments at a glance: validation/test ROC-AUC, model size, changed params
	$(RUN) dvc exp show --no-pager --only-changed \
		--drop 'Created|chunks_|rows|data_as_of|out_of_time\.(?!mean_roc_auc)|drift\.'

bench_dashboard: ## dashboard in headless chromium, 30 experiments: cold and warm page loads
	$(RUN) python bench/dashboard_browser.py

dashboard: ## experiments dashboard (Streamlit) on http://$(HOST):$(DASHBOARD_PORT)
	$(RUN) streamlit run baac_severity/dashboard/app.py --server.headless true \
		--server.address $(HOST) --server.port $(DASHBOARD_PORT) --browser.gatherUsageStats false

review: ## ranking on validation, best or "no experiment beats main", intervals -> reports/
	$(RUN) baac review --baseline $(BASELINE) $(EXPS)

sweep: ## queue a sweep (default: 6 forests on the full 2018 data), run WORKERS at a time
	$(RUN) dvc exp run --queue $(SWEEP)
	$(RUN) dvc queue start -j $(WORKERS)
	@echo "follow with: dvc queue status; dvc exp show; make dashboard"

# --- monitoring: drift, live log, retraining (issue 12; docs/monitoring.md) ----------------
N ?= 500
SHIFT ?=

.PHONY: monitor replay retrain

SINCE ?=
# make turns any failing recipe into its own exit 2: the message says which of the CLI's
# codes it was (0 no drift, 1 drift, 2 nothing to compare; docs/monitoring.md).
monitor: ## drift of the service's log vs the promoted model's training rows; fails on drift (SINCE=2026-12-01T08:00)
	@$(RUN) baac monitor $(if $(SINCE),--since '$(SINCE)'); status=$$?; \
	case $$status in \
		0) ;; \
		1) echo "make monitor: DRIFT: the features above drifted beyond monitor.max_share_drifted (monitor exit 1)" >&2 ;; \
		*) echo "make monitor: nothing to compare (monitor exit $$status)" >&2 ;; \
	esac; exit $$status

replay: ## send N held-out test accidents to the service (SHIFT=night,rain,rural to shift them)
	$(RUN) baac replay --split test --n $(N) $(if $(SHIFT),--shift $(SHIFT))

retrain: ## next chunk: ingest, dvc exp run, promotion gate, what to commit
	$(RUN) baac retrain
