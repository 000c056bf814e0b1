# Two commands do all set-up on a fresh machine:
#   make demo   create .venv, install zoo, train SimCLR on Fashion-MNIST for 2 epochs (CPU, ~10 min), evaluate, export, reload
#   make test   create .venv, install zoo with its test extras, run the test suite (~4 min; ~6 min with the install)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FASHION_MNIST_DIR ?= /usr/share/datasets/fashion-mnist
DEMO_RUN := runs/simclr-fashion-mnist

.PHONY: demo weights test install fashion-mnist clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# reinstall when the dependency list changes
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Fashion-MNIST ships as a Debian package here (no internet needed); elsewhere, point FASHION_MNIST_DIR at a folder
# holding the four IDX .gz files from https://github.com/zalandoresearch/fashion-mnist
fashion-mnist:
	@if [ -f "$(FASHION_MNIST_DIR)/train-images-idx3-ubyte.gz" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian package dataset-fashion-mnist"; \
		apt-get install -y -qq dataset-fashion-mnist >/dev/null || { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null; }; \
	else \
		echo "Fashion-MNIST not found in $(FASHION_MNIST_DIR): run 'sudo apt-get install dataset-fashion-mnist', or download the four IDX .gz files and run 'make demo FASHION_MNIST_DIR=/path/to/them'"; exit 1; \
	fi

demo: $(STAMP) fashion-mnist
	$(BIN)/zoo fit --config configs/simclr/fashion_mnist.yaml --config configs/trainer/cpu.yaml \
		--trainer.max_epochs 2 --model.init_args.warmup_epochs 0.2 \
		--data.init_args.data_dir $(FASHION_MNIST_DIR) --trainer.default_root_dir $(DEMO_RUN) --overwrite
	$(BIN)/zoo evaluate $(DEMO_RUN)/checkpoints/last.ckpt --baselines random,raw --data-dir $(FASHION_MNIST_DIR) \
		--export $(DEMO_RUN)/export --output $(DEMO_RUN)/results.json

# Rebuild the shipped checkpoints from their recipes (configs/weights.yaml): every one, or WEIGHTS="name ...", two at
# a time with half the cores each (WEIGHTS_JOBS). Hours on a 2-core CPU (README.md, "Rebuilding the weights"); an
# interrupted one continues with   make weights WEIGHTS=name WEIGHTS_ARGS=--resume
WEIGHTS ?=
WEIGHTS_JOBS ?= 2
WEIGHTS_ARGS ?=
weights: $(STAMP) fashion-mnist
	$(BIN)/zoo weights --jobs $(WEIGHTS_JOBS) --data-dir fashion_mnist=$(FASHION_MNIST_DIR) $(WEIGHTS_ARGS) $(WEIGHTS)

test: $(STAMP)
	$(BIN)/ruff check zoo tests benchmarks examples
	$(BIN)/python -m pytest -q

clean:
	rm -rf runs lightning_logs .pytest_cache

# ---- one prepared GPU run (issue 21; benchmarks/gpu_check.py) ---------------------------------------------------------
# The GPU machine has its own CUDA torch stack (torch, lightning, timm, torchvision, ...) but no network: what zoo's
# benchmark needs beyond it (lightly, pure Python; the parts the benchmark imports need none of its optional
# dependencies) travels as a wheel in .whl/ (git-ignored, ~1 MB;
# the device tool's working-tree limit is 64 MiB). Here: `make gpu-wheels`; there: run with carry [".whl"]
#     bash benchmarks/gpu_check.sh        (report.md + results.json in $OUT; ≤ 8 min)
# and `make gpu-check GPU_CHECK_ARGS=--dry-run` exercises the same script on this CPU.
GPU_WHEELS := lightly==1.6.0
GPU_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
GPU_CHECK_ARGS ?=

.PHONY: gpu-check gpu-wheels

gpu-wheels:
	mkdir -p .whl
	$(GPU_PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --dest .whl $(GPU_WHEELS)
	@ls -la .whl

gpu-check:
	PYTHON=$(GPU_PYTHON) bash benchmarks/gpu_check.sh $(GPU_CHECK_ARGS)
