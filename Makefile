# The README's commands. Every target is idempotent: a second run only re-checks.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch/torchvision are pinned here (and installed before the package) so pip never
# pulls a different build as a dependency of something else.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
STAMP  := $(VENV)/.setup-done

FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: setup data run test test-slow notebook notebook-outputs clean

setup: $(STAMP) data

# Fashion-MNIST from Debian's package where apt is there; elsewhere resnetlab downloads it
# from the official mirror on first use.
data:
	@test -f $(FASHION_MNIST) || { \
	  command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  { apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	    { apt-get update -qq >/dev/null && apt-get install -y -qq dataset-fashion-mnist >/dev/null; }; } ; } || \
	  echo "apt-get unavailable: Fashion-MNIST will be downloaded on first use"

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PINS)
	$(BIN)/python -m pip install -q -e '.[dev]' $(TORCH_PINS)
	touch $(STAMP)

run: setup
	$(BIN)/resnetlab train

test: setup
	$(BIN)/ruff check src tests bench examples notebooks hubconf.py
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

# The learner's walkthrough in JupyterLab (the notebook extra adds Jupyter to the set-up).
notebook: setup
	$(BIN)/python -m pip install -q -e '.[notebook]' $(TORCH_PINS)
	$(BIN)/jupyter lab notebooks/resnet_from_scratch.ipynb

# Regenerate the walkthrough's .ipynb, outputs included, from its source notebooks/resnet_from_scratch.py.
notebook-outputs: setup
	$(BIN)/python notebooks/build.py

clean:
	rm -rf $(VENV) build src/*.egg-info
