# Two commands from nothing (only python3 and make are assumed):
#   make demo   set up, then verify the bundled model against TensorFlow Lite Micro,
#               prove its generated hardware bit-exact in Verilator, and build an
#               iCEBreaker bitstream (at its PLL clock) for a model the UP5K holds
#   make test   set up, then run the whole test suite
#   make long   set up, then run the long proofs the suite leaves out (README, "Long runs")
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test long lint clean

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
	$(BIN)/tfl2rtl build tests/models/zoo/tflite_micro/hello_world_int8.tflite --board icebreaker -o build/demo-icebreaker

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder --durations=25

long: $(STAMP)
	TFL2RTL_LONG=1 $(BIN)/python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder -m long --durations=25

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
