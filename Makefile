# One entry point per workflow; the logic lives in pipeline/ and dvc.yaml, not here.
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

.PHONY: help install data run test lint format bench promote mlflow_ui \
	do_etl do_etl_full do_etl_chunked ingest_data_chunked clean_data assign_splits \
	train_model do_ml_pipeline progress features_doc

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-22s %s\n", $$1, $$2}'

install: ## install Python deps from uv.lock (installs uv first if needed)
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install -q uv
	$(UV) sync --frozen

data: install ## fetch the embedded raw BAAC dump (data.dvc) from the in-repo DVC remote
	$(RUN) dvc pull -q data.dvc

run: data ## the whole job: install, data, every pipeline stage, promote, show metrics
	$(RUN) dvc repro
	$(RUN) python -m pipeline.promote
	$(RUN) dvc metrics show

test: data ## the whole test suite
	$(RUN) pytest

lint: install ## ruff lint and format check
	$(RUN) ruff check .
	$(RUN) ruff format --check .

format: install
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

bench: data ## benchmarks (time per stage, per chunk, training time and memory)
	$(RUN) python bench/pipeline.py

progress: ## print the ingestion progress
	@$(RUN) python -m pipeline.progress

# --- stages, with the original project's target names ------------------------------
ingest_data_chunked: ## ingest the next chunk of accidents (one more than now)
	$(RUN) dvc exp run ingest-chunk -S ingest.chunks=$$($(RUN) python -m pipeline.progress --next)

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

promote: ## promote the workspace model, or EXP=<experiment name>
	$(RUN) python -m pipeline.promote $(if $(EXP),--experiment $(EXP))

mlflow_ui: ## MLflow UI on the local SQLite store
	$(RUN) mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host $(HOST) --port 5000

features_doc: ## regenerate docs/FEATURES.md from pipeline/features.py
	$(RUN) python -m pipeline.features --markdown > docs/FEATURES.md
