# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv from pyproject.toml (everything comes from PyPI).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NET    ?= examples/digits.yaml
JOBS   ?= 2

.PHONY: demo test test-slow venv bench bench-perf bench-rules clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(JOBS) -m "not slow" tests

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -n $(JOBS) -m slow tests

OUT    ?= build/demo

demo: $(STAMP)
	$(BIN)/sigprop-fpga doctor
	$(BIN)/sigprop-fpga check $(NET) --json $(OUT)/check.json
	$(BIN)/sigprop-fpga train $(NET) --model float --json $(OUT)/train-float.json
	$(BIN)/sigprop-fpga train $(NET) --model golden --json $(OUT)/train-golden.json
	$(BIN)/sigprop-fpga sim $(NET) --check-every 250 --json $(OUT)/sim.json
	$(BIN)/sigprop-fpga sim $(NET) --engine serial --lanes 4 --check-every 250 --json $(OUT)/sim-serial.json
	$(BIN)/sigprop-fpga build $(NET) --board ulx3s-85f --json $(OUT)/build.json
	$(BIN)/sigprop-fpga build $(NET) --board icebreaker --json $(OUT)/build-icebreaker.json
	$(BIN)/sigprop-fpga report $(OUT)

bench: $(STAMP)
	$(BIN)/python bench/train_speed.py
	$(BIN)/python bench/sim_speed.py
	$(BIN)/python bench/accuracy.py

bench-perf: $(STAMP)
	$(BIN)/python bench/perf.py

# the learning rules side by side (build/bench/rules.json, rules.png); SYNTH=ecp5 ice40 adds the
# engines' synthesized cells (minutes each)
SYNTH  ?=
bench-rules: $(STAMP)
	$(BIN)/python bench/rules.py $(NET) $(if $(SYNTH),--synth $(SYNTH)) $(if $(BUILD),--build $(BUILD))

clean:
	rm -rf build .pytest_cache
