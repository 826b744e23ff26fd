# SPDX-License-Identifier: GPL-2.0
#
# itmBench.  `make` builds every kernel module against KDIR (default: the
# running kernel's headers).  The two set-up commands of the README:
#   make demo    the main job: itm_mod (and qos_mod) at work in a VM
#   make test    every test tier: unit, host (netns on this kernel), VM kernels
# Both install what they need first (`make setup`).

KDIR ?= /lib/modules/$(shell uname -r)/build
PY := .venv/bin/python
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: all modules clean setup test demo kernels style check gen lint bench bench-libitm

all: modules

modules:
	$(MAKE) -C $(KDIR) M=$(CURDIR) modules

clean:
	$(MAKE) -C $(KDIR) M=$(CURDIR) clean 2>/dev/null || true
	rm -rf build

setup:
	@bash scripts/setup.sh

# Build every module for every kernel of the matrix, W=1, in build/<release>/.
kernels: setup
	$(PY) -m itmtool.buildmods --all

# checkpatch.pl --strict on every C source and header
style: setup
	$(PY) -m itmtool.buildmods --style

# sparse (C=2) on every module for every kernel of the matrix
check: setup
	$(PY) -m itmtool.buildmods --sparse

# regenerate the netlink protocol files from spec/
gen: setup
	$(PY) -m itmtool.nlgen

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

test: setup
	$(PY) -m pytest tests/unit tests/host tests/vm

demo: setup
	$(PY) -m itmtool.demo

# every benchmark (bench/run_all.py lists them); results and tables land in docs/benchmarks.md
bench: setup
	@bash scripts/setup.sh bench
	$(PY) -m bench.run_all

# libitm's nfqueue path against python-netfilterqueue and C libnetfilter_queue
# (root; network namespaces on this kernel; about 7 minutes)
bench-libitm: setup
	@bash scripts/setup.sh bench
	$(PY) -m bench.libitm_queue --write
