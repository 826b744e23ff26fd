# SPDX-License-Identifier: GPL-2.0
#
# itmBench.  `make` builds every kernel module against KDIR (default: the
# running kernel's headers).  The two set-up commands of the README:
#   make demo    the main job: itm_mod (and qos_mod) at work in a VM
#   make test    every test tier: unit, host (netns on this kernel), VM kernels
#                (Debian's, the debug kernel) and User-Mode Linux
# Both install what they need first (scripts/setup.sh), then check it with
# `itmtool doctor --for demo|test`: a missing prerequisite stops them in their
# first seconds, with the command that fixes it.

KDIR ?= /lib/modules/$(shell uname -r)/build
PY := .venv/bin/python
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: all modules clean setup test test-fast test-debug demo doctor kernels style check gen lint bench bench-libitm

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

# make test's kernels: Debian's two (the whole guest suite each), uml-debug (the
# whole guest suite under KASAN, lockdep, kmemleak, UBSAN at native speed, beside
# them) and the SMP debug kernel (the same detectors on 2 vCPUs: its concurrency
# files, tests/vm/guest.py DEBUG_SMP_SUITE, its kmemleak scan and the detectors'
# self-test); docs/testing.md says where the time goes.
TEST_KERNELS ?= 6.1,6.12,uml-debug,debug
test:
	@ITM_KERNELS=$(TEST_KERNELS) bash scripts/setup.sh test
	ITM_KERNELS=$(TEST_KERNELS) $(PY) -m pytest tests/unit tests/host tests/vm

# the whole guest suite, kmemleak scan and self-test on the SMP debug kernel
# (KASAN, lockdep... under the emulator: hours on 2 cores)
test-debug:
	@ITM_KERNELS=debug bash scripts/setup.sh test
	ITM_KERNELS=debug ITM_DEBUG_SUITE=all $(PY) -m pytest tests/vm

# the developer's quick loop: the whole guest suite in User-Mode Linux, at native
# speed (built once into ~/.cache/itmbench/kernels; docs/testing.md)
test-fast:
	@bash scripts/setup.sh
	$(PY) -m itmtool.kernelcache build uml
	ITM_KERNELS=uml $(PY) -m pytest tests/vm

demo:
	@bash scripts/setup.sh demo
	$(PY) -m itmtool.demo

# is this machine ready? (FOR=user|demo|test)
doctor: setup
	$(PY) -m itmtool.cli doctor --for $(or $(FOR),user)

# every benchmark (bench/run_all.py lists them); results and tables land in docs/benchmarks.md
bench:
	@bash scripts/setup.sh bench
	$(PY) -m bench.run_all

# libitm's nfqueue path against python-netfilterqueue and C libnetfilter_queue
# (root; network namespaces on this kernel; about 7 minutes)
bench-libitm:
	@bash scripts/setup.sh bench
	$(PY) -m bench.libitm_queue --write
