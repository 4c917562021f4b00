# The README's commands. Each installs what it needs into .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: setup demo test lint bench bench-quick clean

$(VENV)/.installed: pyproject.toml scripts/system-libs.sh
	./scripts/system-libs.sh
	$(PYTHON) -m venv $(VENV)
	# The pinned CPU build of torch first, so nothing pulls a multi-GB CUDA build.
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[test]'
	touch $@

setup: $(VENV)/.installed

# A sample clip (a real face photo with known motion and a tone) through the
# default filter into demo/styled.mp4 (both replaced on every run: demo/ is henshin's own output).
demo: setup
	mkdir -p demo
	$(VENV)/bin/henshin sample demo/sample.mp4 --width 960 --height 540 --frames 96 --overwrite
	$(VENV)/bin/henshin convert demo/sample.mp4 demo/styled.mp4 --overwrite --stats demo/stats.json

test: setup
	$(VENV)/bin/ruff check henshin tests bench
	$(VENV)/bin/lint-imports --no-logo
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check henshin tests bench
	$(VENV)/bin/lint-imports --no-logo
	$(VENV)/bin/ruff format --check henshin tests bench

# Every scenario, warm-up and 3 repeats each; figures into bench/results/
# (bench.json, bench.md, bench.png). bench-quick: short clips, one run, minutes.
bench: setup
	$(PY) -m bench

bench-quick: setup
	$(PY) -m bench --quick

clean:
	rm -rf $(VENV) demo bench/results
