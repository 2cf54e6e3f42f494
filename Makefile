# Fresh-machine entry points: `make demo` and `make test` (see README). Each sets itself up.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.swiftdeck-installed

.PHONY: demo test setup bench swift3

setup: $(STAMP)

# torch first: with an NVIDIA driver the regular (CUDA) build, otherwise the CPU build
# (`torch==2.13.0` is a local CPU wheel on our dev/CI machines). Installing it before
# ms-swift stops pip from resolving a multi-GB CUDA build through peft/accelerate.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	if command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install -q torch; \
	else $(PY) -m pip install -q torch==2.13.0; fi
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/swiftdeck demo

# The tmux test drives the dashboard in a real terminal, the browser test `swiftdeck serve` in Chromium (through
# Playwright, a test extra); install tmux and Chromium where they are missing.
test: $(STAMP)
	command -v tmux >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq tmux)
	command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		(apt-get update -qq && apt-get install -y -qq chromium)
	$(PY) -m pytest -q -p no:cacheprovider tests

bench: $(STAMP)
	$(PY) -m bench

# Opt-in, not part of `make test`: a real ms-swift 3.12.6 environment beside swiftdeck's own (outside the repo),
# for tests/test_swift3_env.py, which skip without it. About 1.5 min on the dev machine (torch is the local CPU
# wheel; without a driver, never an unpinned torch: that pulls multi-GB CUDA builds).
SWIFT3_VENV ?= $(HOME)/.cache/swiftdeck/venv-swift3
swift3: $(SWIFT3_VENV)/bin/swift

$(SWIFT3_VENV)/bin/swift:
	test -x $(SWIFT3_VENV)/bin/python || python3 -m venv $(SWIFT3_VENV)
	$(SWIFT3_VENV)/bin/python -m pip install -q torch==2.13.0
	$(SWIFT3_VENV)/bin/python -m pip install -q 'ms-swift==3.12.6'
