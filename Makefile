# Two commands: `make demo` runs the pipeline on the embedded demo, `make test` runs the tests.
# Both create .venv from requirements.txt when it is missing or out of date.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.requirements-installed
TEST_STAMP := $(VENV)/.test-requirements-installed

.PHONY: demo test bench venv clean-venv

venv: $(STAMP)

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements.txt
	$(BIN)/python -m pip check
	cp requirements.txt $(STAMP)

$(TEST_STAMP): $(STAMP) requirements-test.txt
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements-test.txt
	$(BIN)/python -m pip check
	cp requirements-test.txt $(TEST_STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" dvc repro
	@cat reports/summary.md

# Lint (ruff check + ruff format --check), then the test suite.
test: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

# Every CPU benchmark, figures to reports/benchmarks/ (about 2 hours on 2 cores; needs ../shared/data
# and, for mtcnn_torch, separate_vocals, embed, embed_images, audio_emodb, long_video,
# fusion_ablation and predict, the data and models of `make demo`). The GPU one:
# python -m tests.benchmarks.bench_gpu
BENCHES := detect_faces mtcnn_torch face_memory separate_vocals embed embed_images enhance audio_emodb raw_audio_emodb windows fusion kelm predict long_video fusion_ablation h5_reads train_precision
bench: $(TEST_STAMP)
	for b in $(BENCHES); do $(BIN)/python -m tests.benchmarks.bench_$$b --out reports/benchmarks/$$b.json || exit 1; done

clean-venv:
	rm -rf $(VENV)
