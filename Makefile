# td3-drive: the two commands a fresh machine needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.td3_drive_installed

.PHONY: setup ros2-tools demo shipped-policy test lint bench clean

# Virtual environment with pinned wheels, the generated interface packages, and this package.
$(STAMP): requirements.txt setup.py CMakeLists.txt package.xml tools/build_interfaces.sh $(wildcard msg/*.msg srv/*.srv interfaces/*/msg/*.msg)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	tools/build_interfaces.sh $(VENV)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

# Simulator + trainer (short run), then the driver on the shipped policy for a lap, then the
# report with its pictures and recordings (runs/demo-*/).
demo: $(STAMP)
	$(BIN)/td3-demo

# Re-make the shipped policy models/shipped/td3_policy.pth (models/README.md).
shipped-policy: $(STAMP)
	nice -n 10 tools/train_shipped_policy.sh $(VENV)

# ros2 (launch, run, param, ...) and colcon for tests/test_ros2_tools.py, from the wheels beside
# the clone (CI has them there); without that folder those tests skip, saying what is missing.
ROS2_TOOLS ?= ../shared/ros2-tools
ROS2_STAMP := $(VENV)/.ros2_tools_installed
$(ROS2_STAMP): $(STAMP) $(wildcard $(ROS2_TOOLS)/install.sh $(ROS2_TOOLS)/wheels/*.whl)
	$(ROS2_TOOLS)/install.sh $(VENV)
	touch $@

ros2-tools: $(if $(wildcard $(ROS2_TOOLS)/install.sh),$(ROS2_STAMP))

test: $(STAMP) ros2-tools
	$(BIN)/ruff check src tests bench tools launch setup.py
	@# Fast DDS shared-memory segments of processes that died (the fault tests SIGKILL nodes) are
	@# reclaimed first, so that one run does not inherit another's; the tool needs psutil (ros2-tools).
	-@$(BIN)/fastdds shm clean >/dev/null 2>&1
	$(BIN)/python -m pytest -q

# Every benchmark in its quick setting (README "Measured"); SB3 is a benchmark-only dependency.
$(VENV)/.bench_installed: $(STAMP) requirements-bench.txt
	$(BIN)/python -m pip install --quiet -r requirements-bench.txt
	touch $@

bench: $(VENV)/.bench_installed
	$(BIN)/python -m bench.run_all --out bench-results.json

clean:
	rm -rf build install log $(VENV) .pytest_cache .ruff_cache
