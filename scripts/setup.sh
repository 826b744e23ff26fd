#!/usr/bin/env bash
# Install what itmBench needs, when it is missing: Debian packages (as root),
# the kernels of the matrix (kernels.txt) and a project virtualenv; then check
# the machine with `itmtool doctor` (one OK/MISSING line per prerequisite, with
# the command that fixes it) and fail (exit 6) when something needed is missing.
# Quick when everything is there.
#
#   scripts/setup.sh          what the tests and the demo need; checks `--for user`
#   scripts/setup.sh demo     the same; checks what `make demo` needs (the VM path)
#   scripts/setup.sh test     the same; checks what `make test` needs (the VM path,
#                             the host's netfilter, dkms, CAP_NET_ADMIN, ...)
#   scripts/setup.sh bench    that, plus the benchmarks' anchors: Debian's
#                             libnetfilter-queue-dev (the C consumer) and
#                             python-netfilterqueue 1.1.0 built from source
#                             into .venv (pyproject extra "bench")
set -euo pipefail
cd "$(dirname "$0")/.."
bench=0
purpose=user
case ${1:-} in
	'') ;;
	demo | test | user) purpose=$1 ;;
	bench) bench=1 purpose=test ;;
	*) echo "usage: scripts/setup.sh [demo|test|user|bench]" >&2; exit 2 ;;
esac

# busybox-static: virtme-ng builds the VM's initramfs with it (a fresh machine has none);
# perl, sparse, linux-source: checkpatch.pl and sparse for `make style`/`make check`
pkgs=(make gcc perl python3-venv kmod iproute2 iptables nftables tcpdump ethtool
      iperf3 socat iputils-ping qemu-system-x86 busybox-static sparse linux-source-6.12
      xz-utils dkms flex bison bc libelf-dev libssl-dev cpio patch)
# Debian's kernels of the matrix; rows "build:<flavour>" are built below
while read -r name image headers; do
	pkgs+=("$image" "$headers")
done < <(sed 's/#.*//' kernels.txt | awk 'NF == 3 && $2 !~ /^build:/')
((bench)) && pkgs+=(libnetfilter-queue-dev)

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		missing+=("$p")
done
if ((${#missing[@]})); then
	if [[ $(id -u) != 0 ]]; then
		echo "setup: these Debian packages are missing and installing them needs root:" >&2
		echo "  ${missing[*]}" >&2
		exit 1
	fi
	echo "setup: installing ${missing[*]}"
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

py=${PYTHON:-python3}
stamp=.venv/.itmbench-installed
if [[ ! -x .venv/bin/python || ! -e $stamp || pyproject.toml -nt $stamp || setup.py -nt $stamp ]]; then
	echo "setup: creating the virtualenv in .venv"
	"$py" -m venv .venv
	.venv/bin/pip install -q --upgrade pip
	.venv/bin/pip install -q -e '.[dev]'
	touch "$stamp"
fi

if ((bench)); then
	bstamp=.venv/.itmbench-bench-installed
	if [[ ! -e $bstamp || pyproject.toml -nt $bstamp ]]; then
		echo "setup: installing the benchmark extras (NetfilterQueue from source)"
		.venv/bin/pip install -q --no-binary NetfilterQueue -e '.[dev,bench]'
		touch "$bstamp"
	fi
fi

# the kernels of ours (debug kernel, User-Mode Linux with and without the detectors)
# for the test tiers: built once per machine into ~/.cache/itmbench/kernels, with
# progress (on 2 idle cores: debug about 13 min, each UML about 12 min); quick when
# the cache holds them
if [[ $purpose == test ]]; then
	# only the rows $ITM_KERNELS selects, when it is set (make test sets it)
	for row in $(sed 's/#.*//' kernels.txt | awk 'NF == 3 && $2 ~ /^build:/ { sub("build:", "", $2); print $1 ":" $2 }'); do
		if [[ -n ${ITM_KERNELS:-} && ,$ITM_KERNELS, != *,${row%%:*},* ]]; then
			continue
		fi
		.venv/bin/python -m itmtool.kernelcache build "${row#*:}"
	done
fi

# prove it: every prerequisite of $purpose, and the command that fixes a missing one
.venv/bin/python -m itmtool.cli doctor --for "$purpose" --quiet
