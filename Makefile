# Two commands from nothing (only python3 and make are assumed):
#   make demo   set up, then verify the bundled model against TensorFlow Lite Micro and
#               prove its generated hardware bit-exact in Verilator
#   make test   set up, then run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/tfl2rtl inspect tests/models/mlp_uint8.tflite
	$(BIN)/tfl2rtl verify tests/models/mlp_uint8.tflite --samples 100
	$(BIN)/tfl2rtl sim tests/models/mlp_uint8.tflite --inputs 50 --max-multipliers 256 --lanes 2

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
