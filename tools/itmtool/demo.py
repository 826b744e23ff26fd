"""`make demo`: itm_mod at work in a VM, since this machine's kernel cannot load modules.

On the host it builds the modules for a kernel of the matrix and boots that kernel
with virtme-ng; in the guest (``--guest``) it builds a client -- ITM -- server
topology of network namespaces, loads itm_mod and a few applications, sends real
traffic through the ITM and prints what `itmtool status` shows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import itmlab as lab
from itmtool import buildmods, demo_qos, vm
from itmtool.errors import ToolError
from itmtool.matrix import newest_debian, read_matrix

APPS = (
    "label=count-tcp,hook=fwd,prio=10,proto=tcp;"
    "label=count-udp,hook=fwd,prio=10,proto=udp;"
    "label=block-discard,hook=fwd,prio=0,proto=udp,dport=9,verdict=drop;"
    "label=ipv6-out,hook=post,family=6;"
    "label=local-in,hook=in,proto=icmp,class=0"
)


def _step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def guest(moddir: Path, out: Path) -> int:
    """The part that runs in the VM: act 1 (itm_mod), then act 2 (qos_mod) if it is built."""
    rc = act_itm(moddir)
    qos = sorted(moddir.rglob("qos_mod.ko"))
    if rc or not qos:
        return rc
    _step("act 2: qos_mod — short flows behind long ones, without and with marking")
    lab.sh("insmod", str(next(moddir.rglob("itm_mod.ko"))))
    try:
        doc = demo_qos.run(qos[0])
    finally:
        lab.sh("rmmod", "itm_mod", check=False)
    (out / "qos_demo.json").write_text(json.dumps(doc, indent=1))
    return 0


def act_itm(moddir: Path) -> int:
    """Act 1: itm_mod with five small applications, and itmtool status."""
    itm = next(moddir.rglob("itm_mod.ko"))
    app = next(moddir.rglob("itm_test_app.ko"))
    itmtool = [sys.executable, "-m", "itmtool.cli"]
    with lab.topology() as t:
        try:
            _step(f"act 1, kernel {lab.sh('uname', '-r').strip()}: itm_mod and five applications")
            lab.sh("insmod", str(itm))
            lab.sh("insmod", str(app), f"apps={APPS}")
            subprocess.run(["ip", "netns", "exec", t.router, *itmtool, "netns", "on"], check=True)
            _step(f"traffic through the ITM ({t.client} -> {t.router} -> {t.server})")
            sent, got = lab.tcp(t, 2_000_000, 6000)
            print(f"TCP 2 MB: {'delivered intact' if sent == got else 'NOT DELIVERED'}")
            print(f"UDP to port 5000: {lab.udp(t, 100, 5000)}/100 delivered")
            print(f"UDP to port 9 (block-discard drops it): {lab.udp(t, 20, 9)}/20 delivered")
            print(f"UDP over IPv6: {lab.udp(t, 30, 5000, v6=True)}/30 delivered")
            print(f"ping the ITM: {'ok' if lab.ping(t.client, t.router4, 3) else 'FAILED'}")
            _step("itmtool status (in the ITM's namespace)")
            subprocess.run(["ip", "netns", "exec", t.router, *itmtool, "status"], check=True)
            _step("itmtool disable block-discard; port 9 passes again")
            subprocess.run([*itmtool, "disable", "block-discard"], check=True)
            print(f"UDP to port 9: {lab.udp(t, 20, 9)}/20 delivered")
            return 0
        finally:
            lab.sh("rmmod", "itm_test_app", check=False)
            lab.sh("rmmod", "itm_mod", check=False)


def host(kernel_name: str | None) -> int:
    """Build, boot the VM and run the guest part in it, streaming its output."""
    kernels = read_matrix()
    kernel = next((k for k in kernels if k.name == kernel_name), newest_debian(kernels))
    print(f"==> building the modules for {kernel.release}", flush=True)
    res = buildmods.build(kernel, dest=buildmods.BUILD_ROOT / kernel.release / "demo-src")
    if not res.ok:
        print("\n".join(res.diagnostics or res.log.splitlines()[-30:]), file=sys.stderr)
        return 1
    how = (
        "User-Mode Linux: a second or two" if kernel.is_uml else "QEMU without KVM: about a minute"
    )
    print(f"==> booting {kernel.release} in a VM ({how})", flush=True)
    out = buildmods.BUILD_ROOT / "demo"
    out.mkdir(parents=True, exist_ok=True)
    (out / "qos_demo.json").unlink(missing_ok=True)
    result = vm.run(
        kernel,
        f"python -m itmtool.demo --guest {res.moddir} --out {out}",
        rwdirs=[out],
        append=(),
        stream=True,
        timeout=900,
    )
    if result.returncode:
        return result.returncode
    qos = out / "qos_demo.json"
    if not qos.exists():
        print("\n(qos_mod is not built: act 2 skipped)")
        return 0
    doc = json.loads(qos.read_text())
    print("\n==> results of act 2\n" + demo_qos.summary(doc))
    png = out / "qos_demo.png"
    try:
        demo_qos.plot(doc, png)
    except ToolError as err:
        print(f"\n(no plot: {err.message}; {err.hint})")
        return 0
    print(f"\nplot of the short-flow completion times: {png}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line of the demo."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guest", metavar="MODDIR", help="run the in-VM part (internal)")
    parser.add_argument("--out", type=Path, help="where the guest writes its results (internal)")
    parser.add_argument("--kernel", help="kernel of the matrix to boot (default: the newest)")
    args = parser.parse_args(argv)
    if args.guest:
        return guest(Path(args.guest), args.out)
    return host(args.kernel)


if __name__ == "__main__":
    sys.exit(main())
