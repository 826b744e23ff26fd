"""The kernel data path's glue with a fake itm_route client (no root, no module):
routes pushed only when they change, what the kernel saw fed to the path tables,
the choice of the data path, the Router without capture, ``itmroute show``."""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from itmroute import kernelpath
from itmroute.cli import format_table, main
from itmroute.config import Config, ConfigError, parse_config
from itmroute.daemon import Router
from itmroute.kernelpath import DatapathError, KernelPath, KernelPathMissing
from itmroute.paths import DestState
from libitm.control import itm_route_spec as spec
from libitm.control.route import (
    STAT_NAMES,
    ItmRouteError,
    ItmRouteNotLoaded,
    KernelState,
    RouteSpec,
    RouteState,
)
from libitm.genl import family_id
from tests.support.itmroute_offline import DOC as BASE_DOC
from tests.support.itmroute_offline import KEY, Clock, FakeSock, OfflineRouter, path_tables

DOC: dict[str, Any] = BASE_DOC
NET = ipaddress.ip_network("10.77.200.0/24")
NET6 = ipaddress.ip_network("fd77:200::/48")
NET2 = ipaddress.ip_network("10.78.0.0/16")
D1 = ipaddress.ip_address("10.77.200.1")
R1 = ipaddress.ip_address("10.77.1.2")


def config(**extra: Any) -> Config:
    return parse_config({**DOC, **extra})


class FakeKernel:
    """itm_route as the glue sees it: configuration, routes, and per prefix what the
    test says the kernel saw (ages in seconds, counters)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.configured: dict[str, Any] | None = None
        self.routes: dict[Any, RouteSpec] = {}
        self.seen: dict[Any, dict[str, Any]] = {}
        self.stats = dict.fromkeys(STAT_NAMES, 0)
        self.fail: dict[str, ItmRouteError] = {}
        self.closed = False

    def _call(self, name: str, arg: Any = None) -> None:
        self.calls.append((name, arg))
        err = self.fail.pop(name, None)
        if err is not None:
            raise err

    def config(self, **kw: Any) -> None:
        self._call("config", kw)
        self.configured = kw

    def route_set(self, route: RouteSpec) -> None:
        self._call("route_set", route)
        if self.configured is None:
            raise ItmRouteError(errno.ENOENT, "not configured")
        self.routes[route.prefix] = route

    def route_del(self, prefix: Any) -> None:
        self._call("route_del", prefix)
        del self.routes[prefix]

    def get(self) -> tuple[KernelState | None, list[RouteState]]:
        self._call("get")
        if self.configured is None:
            return None, []
        kw = self.configured
        state = KernelState(
            port=kw["port"],
            mark=kw["mark"],
            addr=kw["addr"],
            family=socket.AF_INET,
            mtu=kw["mtu"],
            pid=1,
            stats=dict(self.stats),
        )
        return state, [
            RouteState(r.prefix, r.target, r.via, r.tag, r.receipt, **self.seen.get(p, {}))
            for p, r in self.routes.items()
        ]

    def unconfig(self) -> None:
        self._call("unconfig")
        self.configured = None
        self.routes.clear()

    def close(self) -> None:
        self.closed = True

    def pushes(self) -> list[RouteSpec]:
        """The routes set since the last call."""
        out = [a for n, a in self.calls if n == "route_set"]
        self.calls = [c for c in self.calls if c[0] != "route_set"]
        return out


def started(clock: Clock | None = None) -> tuple[KernelPath, FakeKernel, DestState, DestState]:
    cfg = config()
    fake = FakeKernel()
    dests = path_tables(cfg)
    kp = KernelPath(fake, cfg, dests, 1434, clock or Clock())
    kp.start()
    return kp, fake, dests[0][1], dests[2][1]


# ------------------------------------------------------------------ routes out
def test_start_configures_the_namespace_and_a_direct_route_per_prefix() -> None:
    kp, fake, _, _ = started()
    cfg = config()
    assert fake.calls[0] == (
        "config",
        {"addr": cfg.address, "port": 7177, "key": cfg.key, "mtu": 1434, "mark": 0x17E0},
    )
    assert fake.pushes() == [
        RouteSpec(NET, D1, None, 0, None),
        RouteSpec(NET6, D1, None, 0, None),
        RouteSpec(NET2, ipaddress.ip_address("10.78.0.1"), None, 0, None),
    ]
    assert kp.push(100.0) == 0  # nothing changed since


def test_a_route_is_pushed_only_when_its_path_or_receipt_changes() -> None:
    kp, fake, st, st2 = started()
    fake.pushes()
    st.current = "r1"  # both prefixes behind 10.77.200.1 move
    assert kp.push(100.0) == 2
    assert fake.pushes() == [RouteSpec(NET, D1, R1, 1, None), RouteSpec(NET6, D1, R1, 1, None)]
    for t in (100.02, 100.04, 100.06):
        assert kp.push(t) == 0
    assert fake.pushes() == []
    # data from 10.77.200.1 came on its path 2: our DATA to it carries the receipt
    st.note_peer_data(2, 100.05)
    kp.push(100.06)
    assert [r.receipt for r in fake.pushes()] == [2, 2]
    assert st.receipt_out < 0  # set, not sent: no receipt recorded as given
    kp.push(100.07)
    assert fake.pushes() == []
    kp.push(100.05 + st.settings.detect_interval + 0.01)  # stale: withdrawn
    assert [r.receipt for r in fake.pushes()] == [None, None]
    # a direct route carries no receipt (nothing tunnelled to carry it): no churn
    st2.note_peer_data(1, 101.0)
    assert kp.push(101.0) == 0
    st2.current = "r2"
    kp.push(101.01)
    assert fake.pushes() == [
        RouteSpec(NET2, ipaddress.ip_address("10.78.0.1"), ipaddress.ip_address("10.77.2.2"), 2, 1)
    ]
    assert kp.pushes == 7  # 2 + 2 + 2 + 1: start-up routes are not counted


def test_a_refused_route_is_set_again_at_the_next_tick(caplog: pytest.LogCaptureFixture) -> None:
    kp, fake, st, _ = started()
    fake.pushes()
    st.current = "r2"
    fake.fail["route_set"] = ItmRouteError(errno.ENOMEM, "no memory")
    with caplog.at_level(logging.WARNING, "itmroute"):
        assert kp.push(100.0) == 1  # the first was refused, the second set
    assert "itm_route route of 10.77.200.0/24 failed: no memory" in caplog.text
    fake.pushes()
    assert kp.push(100.02) == 1
    assert fake.pushes() == [RouteSpec(NET, D1, ipaddress.ip_address("10.77.2.2"), 2, None)]


# ------------------------------------------------------------------ what came in
def test_packets_out_and_in_make_the_destination_active() -> None:
    clock = Clock(100.0)
    kp, fake, st, st2 = started(clock)
    kp.poll()
    assert not st.active and st.last_out < 0  # nothing went out yet (ages: never)
    fake.seen[NET] = {"out_age": 0.005, "direct": 1}
    kp.poll()
    assert st.active and st.last_out == pytest.approx(99.995) and st.activated == st.last_out
    assert not st2.active
    clock.t = 100.02  # the same packet, 20 ms older: not noted again
    fake.seen[NET] = {"out_age": 0.0251, "direct": 1}
    kp.poll()
    assert st.last_out == pytest.approx(99.995)
    fake.seen[NET] = {"out_age": 0.001, "direct": 2, "in_age": 0.003}
    clock.t = 100.04
    kp.poll()
    assert st.last_out == pytest.approx(100.039) and st.last_in == pytest.approx(100.037)
    # the other prefix behind the same ITM: an older packet moves nothing back
    fake.seen[NET6] = {"out_age": 0.5, "tunnelled": 1, "in_age": 0.6}
    kp.poll()
    assert st.last_out == pytest.approx(100.039) and st.last_in == pytest.approx(100.037)
    assert st.sending_since == pytest.approx(99.995)


def test_the_peers_data_feeds_its_pace_path_and_relay() -> None:
    clock = Clock(100.0)
    kp, fake, st, _ = started(clock)
    # a 100 packet/s flow from 10.77.200.0/24 through relay r1, polled every 50 ms
    for i in range(1, 21):
        clock.t = round(100.0 + i * 0.05, 6)
        fake.seen[NET] = {
            "peer_age": 0.004,
            "peer_tag": 1,
            "peer_via": R1,
            "peer_packets": 5 * i,
        }
        kp.poll()
    assert st.peer_tag == 1 and st.peer_via == "10.77.1.2"
    assert st.peer_at == pytest.approx(clock.t - 0.004)
    assert st.peer_gap == pytest.approx(0.01)  # the packets' gap, not the polls'
    # no new packet: nothing noted, though the age is read again
    at = st.peer_at
    clock.t += 0.05
    fake.seen[NET]["peer_age"] = 0.054
    kp.poll()
    assert st.peer_at == at and st.peer_gap == pytest.approx(0.01)
    # its stop is told after 4 gaps of 10 ms, at least watch_min
    owed = st.peer_watch(at + st.settings.watch_min + 0.001)
    assert owed is not None and owed[0] and owed[1] == 1


def test_two_prefixes_behind_one_itm_feed_its_table_in_time_order() -> None:
    clock = Clock(100.0)
    kp, fake, st, _ = started(clock)
    fake.seen[NET] = {"peer_age": 0.030, "peer_tag": 1, "peer_via": R1, "peer_packets": 1}
    kp.poll()
    clock.t = 100.02
    fake.seen[NET] = {"peer_age": 0.001, "peer_tag": 2, "peer_packets": 2}
    fake.seen[NET6] = {"peer_age": 0.011, "peer_tag": 2, "peer_packets": 1}
    kp.poll()
    # 99.97, then 100.009 (NET6) and 100.019 (NET), whatever the order of the dump
    assert st.peer_at == pytest.approx(100.019) and st.peer_tag == 2 and st.peer_via is None
    assert 0 < st.peer_gap < 0.04
    clock.t = 100.04
    fake.seen[NET6] = {"peer_age": 0.035, "peer_tag": 1, "peer_via": R1, "peer_packets": 2}
    kp.poll()  # older than what the table holds: counted, the newer path kept
    assert st.peer_at == pytest.approx(100.019) and st.peer_tag == 2 and st.peer_gap >= 0


def test_a_receipt_is_noted_once_however_often_it_is_read() -> None:
    clock = Clock(100.0)
    kp, fake, st, _ = started(clock)
    r1 = st.path("r1")
    fake.seen[NET] = {"heard_age": 0.010, "heard_receipt": 1}
    kp.poll()
    assert r1.heard == 1 and r1.last_heard == pytest.approx(99.99)
    for i in range(1, 5):  # read again and again, a millisecond of rounding either way
        clock.t = 100.0 + 0.02 * i
        fake.seen[NET] = {"heard_age": 0.010 + 0.02 * i + 0.001 * (-1) ** i, "heard_receipt": 1}
        kp.poll()
    assert r1.heard == 1 and r1.last_heard == pytest.approx(99.99)
    fake.seen[NET] = {"heard_age": 0.002, "heard_receipt": 1}
    kp.poll()
    assert r1.heard == 2 and r1.last_heard == pytest.approx(clock.t - 0.002)
    fake.seen[NET] = {"heard_age": 0.001, "heard_receipt": 9}  # no such path: ignored
    kp.poll()
    assert sum(p.heard for p in st.paths) == 2


def test_a_receipt_counts_as_given_only_when_tunnelled_data_carried_it() -> None:
    clock = Clock(100.0)
    kp, fake, st, _ = started(clock)
    st.current = "r1"
    st.note_peer_data(2, 100.0)
    kp.push(100.0)
    assert fake.routes[NET].receipt == 2
    kp.poll()  # nothing went out: a NOTICE receipt would still be owed
    assert st.receipt_out < 0
    clock.t = 100.02
    fake.seen[NET] = {"out_age": 0.005, "tunnelled": 3}
    kp.poll()
    assert st.receipt_out == pytest.approx(100.015)


def test_a_failed_poll_is_logged_and_the_daemon_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    kp, fake, _, _ = started()
    fake.fail["get"] = ItmRouteError(errno.ENOENT, "No such file or directory")
    with caplog.at_level(logging.WARNING, "itmroute"):
        kp.poll()
        fake.configured = None  # someone unconfigured it
        kp.poll()
    assert "itm_route GET failed: No such file or directory (1 errors)" in caplog.text
    assert "not configured any more (2 errors)" in caplog.text


def test_the_kernels_counters_are_in_the_snapshot() -> None:
    kp, fake, _, _ = started()
    fake.stats.update(tunnelled=7, auth_failed=3, replayed=2)
    kp.poll()
    snap = kp.snapshot()
    assert list(snap) == ["kernel"] and snap["kernel"]["auth_failed"] == 3
    assert list(snap["kernel"]) == list(STAT_NAMES)


def test_close_unconfigures_and_closes_once() -> None:
    kp, fake, _, _ = started()
    kp.close()
    kp.close()
    assert [n for n, _ in fake.calls].count("unconfig") == 1 and fake.closed
    kp, fake, _, _ = started()
    fake.fail["unconfig"] = ItmRouteError(errno.EBUSY, "x")  # the socket's close does it
    kp.close()
    assert fake.closed


# ------------------------------------------------------------------ which data path
def _connect(fake: FakeKernel | Exception) -> Callable[[], kernelpath.RouteClient]:
    def connect() -> kernelpath.RouteClient:
        if isinstance(fake, Exception):
            raise fake
        return fake

    return connect


def test_the_data_path_is_chosen_from_the_setting(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeKernel()
    missing = ItmRouteNotLoaded(errno.ENOENT, "not loaded")
    with caplog.at_level(logging.INFO, "itmroute"):
        assert kernelpath.choose("python", connect=_connect(AssertionError())) is None
        assert "data path: python (datapath: python)" in caplog.text
        assert kernelpath.choose("auto", connect=_connect(fake)) is fake
        assert "data path: kernel" in caplog.text
        assert kernelpath.choose("kernel", connect=_connect(fake)) is fake
        caplog.clear()
        assert kernelpath.choose("auto", connect=_connect(missing)) is None
        assert "data path: python (the itm_route module is not loaded)" in caplog.text
        # without a connect: the family is looked up first, pyroute2 only if it exists
        assert kernelpath.choose("auto", exists=lambda: False) is None
    with pytest.raises(KernelPathMissing) as exc:
        kernelpath.choose("kernel", connect=_connect(missing))
    assert isinstance(exc.value, ConfigError)  # itmroute exits 2, one line
    assert str(exc.value).startswith("datapath: kernel, but the itm_route module is not loaded")
    with pytest.raises(KernelPathMissing):
        kernelpath.choose("kernel", exists=lambda: False)
    with pytest.raises(ConfigError, match="'ebpf' is not one of auto, kernel, python"):
        kernelpath.choose("ebpf")
    denied = ItmRouteError(errno.EPERM, "Operation not permitted")
    with pytest.raises(DatapathError, match="Operation not permitted \\(needs CAP_NET_ADMIN\\)"):
        kernelpath.choose("auto", connect=_connect(denied))


def test_the_kernel_path_needs_itm_mod_in_this_namespace(caplog: pytest.LogCaptureFixture) -> None:
    """itm_route's applications run where itm_mod's hooks run: without them ``kernel`` is
    refused with the command that attaches them, ``auto`` takes the daemon's own path."""
    off = FakeKernel()
    with caplog.at_level(logging.INFO, "itmroute"):
        assert kernelpath.choose("auto", connect=_connect(off), itm_active=lambda: False) is None
    assert off.closed and "itm_mod's hooks do not run in this network namespace" in caplog.text
    with pytest.raises(KernelPathMissing, match="itmtool netns on"):
        kernelpath.choose("kernel", connect=_connect(FakeKernel()), itm_active=lambda: False)
    # cannot tell (no answer): the kernel path is tried
    on = FakeKernel()
    assert kernelpath.choose("kernel", connect=_connect(on), itm_active=lambda: None) is on


BUSY = "another socket owns this namespace's itmRoute data path (see its pid in the dump)"


def test_a_second_daemon_is_told_who_owns_the_kernel_data_path() -> None:
    cfg = config()
    first = FakeKernel()
    KernelPath(first, cfg, path_tables(cfg), 1434, Clock()).start()
    fake = FakeKernel()
    fake.configured = first.configured  # the same namespace: the first one's
    fake.fail["config"] = ItmRouteError(errno.EBUSY, BUSY)
    kp = KernelPath(fake, cfg, path_tables(cfg), 1434, Clock())
    with pytest.raises(DatapathError) as exc:
        kp.start()
    assert str(exc.value) == (
        f"kernel data path: {BUSY} (pid 1, another itmroute daemon, owns this network"
        " namespace's kernel data path; stop it, or run this one with --datapath python)"
    )
    assert fake.closed


def test_more_prefixes_than_the_kernel_takes_are_refused() -> None:
    doc = dict(DOC)
    doc["destinations"] = [{"prefix": f"10.{i}.0.0/16"} for i in range(kernelpath.MAX_ROUTES + 1)]
    cfg = parse_config(doc)
    fake = FakeKernel()
    with pytest.raises(DatapathError, match="65 destination prefixes; itm_route takes 64"):
        KernelPath(fake, cfg, path_tables(cfg), 1434, Clock()).start()
    assert fake.closed and fake.configured is None
    assert kernelpath.MAX_ROUTES == spec.ITMR_MAX_ROUTES
    assert kernelpath.FAMILY == spec.FAMILY_NAME


# ------------------------------------------------------------------ the Router
def test_a_router_on_the_kernel_data_path_captures_nothing() -> None:
    fake = FakeKernel()
    clock = Clock(100.0)
    r = OfflineRouter(config(), clock=clock, datapath="kernel", kernel_client=_connect(fake))
    try:
        assert r.datapath == "kernel" and r.loop.applications == []
        assert fake.configured is not None and fake.configured["mtu"] == r.tunnel_mtu == 1434
        assert len(fake.routes) == 3
        fake.pushes()
        fake.seen[NET] = {"out_age": 0.001, "direct": 1}
        r.tick()  # polled: the destination is active and probed
        st = r.dest_for(bytes([10, 77, 200, 5]))
        assert st is not None and st.active and st.probes_sent > 0
        udp = cast(FakeSock, r.udp)
        assert len(udp.sent) == st.probes_sent
        assert fake.pushes() == []  # still direct: nothing to set
        st.current = "r1"
        r.tick()
        assert [x.via for x in fake.pushes()] == [R1, R1]
        fake.stats.update(auth_failed=5, replayed=1, tunnelled=9)
        r.tick()
        snap = r.snapshot()
        assert snap["datapath"] == "kernel" and snap["kernel"]["auth_failed"] == 5
        assert "data path: kernel" in format_table(json.loads(json.dumps(snap)))
    finally:
        r.close()
    assert fake.configured is None and fake.closed


def test_the_loop_of_a_kernel_data_path_router_runs_without_applications() -> None:
    fake = FakeKernel()
    r = OfflineRouter(config(), datapath="auto", kernel_client=_connect(fake))
    r.run(duration=1.0)  # the UDP reader and the tick only; then everything is closed
    assert r.loop._backend is None  # no libitm backend was ever built
    gets = [n for n, _ in fake.calls].count("get")
    assert gets >= 3, gets  # the tick ran (every 20 ms: 50 a second on an idle machine)
    assert fake.configured is None and fake.closed


def test_a_router_without_the_module_captures_on_auto_and_fails_on_kernel() -> None:
    missing = _connect(ItmRouteNotLoaded(errno.ENOENT, "not loaded"))
    r = OfflineRouter(config(), datapath="auto", kernel_client=missing)
    try:
        assert r.datapath == "python" and r.kernel is None
        assert len(r.loop.applications) == 2 * 3  # ip_out and ip_in per prefix
        snap = r.snapshot()
        assert snap["datapath"] == "python" and "kernel" not in snap
    finally:
        r.close()
    opened = OfflineRouter.opened
    with pytest.raises(KernelPathMissing):
        OfflineRouter(config(datapath="kernel"), kernel_client=missing)
    assert OfflineRouter.opened == opened  # refused before a socket was opened
    # the command line's --datapath wins over the file
    r = OfflineRouter(config(datapath="kernel"), datapath="python", kernel_client=missing)
    r.close()


# ------------------------------------------------------------------ the command line
def _yaml(tmp_path: Path, extra: str = "") -> Path:
    f = tmp_path / "a.yaml"
    f.write_text(f"address: 10.77.100.1\nkey: '{KEY}'\nport: 17177\n{extra}")
    return f


def test_run_with_the_kernel_data_path_and_no_module_is_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(kernelpath, "_family_exists", lambda: False)
    for f, extra in (
        (_yaml(tmp_path), ["--datapath", "kernel"]),
        (_yaml(tmp_path, "datapath: kernel\n"), []),
    ):
        argv = ["run", "-c", str(f), "--state", str(tmp_path / "s.json"), "--duration", "1"]
        assert main(argv + extra) == 2
        err = capsys.readouterr().err
        assert err.startswith("itmroute: datapath: kernel, but the itm_route module is not loaded")
        assert len(err.splitlines()) == 1


def test_run_that_finds_the_data_path_taken_is_one_line_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeKernel()
    fake.fail["config"] = ItmRouteError(errno.EBUSY, BUSY)
    monkeypatch.setattr(kernelpath, "_connect", lambda: fake)
    monkeypatch.setattr(kernelpath, "_family_exists", lambda: True)
    monkeypatch.setattr(Router, "_open_sockets", OfflineRouter._open_sockets)
    f = _yaml(tmp_path)
    argv = ["run", "-c", str(f), "--state", str(tmp_path / "s.json"), "--duration", "1"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"itmroute: kernel data path: {BUSY} (another itmroute daemon owns")
    assert len(err.splitlines()) == 1 and fake.closed


def test_run_without_the_module_really(tmp_path: Path) -> None:
    """The real lookup of the family, in a process of its own: no traceback."""
    if family_id(spec.FAMILY_NAME) is not None:
        pytest.skip("the itm_route module is loaded here")
    f = _yaml(tmp_path)
    argv = ["run", "-c", str(f), "--datapath", "kernel", "--state", str(tmp_path / "s.json")]
    res = subprocess.run(
        [sys.executable, "-m", "itmroute", *argv, "--duration", "1"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("itmroute: datapath: kernel, but the itm_route module")
    assert len(res.stderr.splitlines()) == 1 and "Traceback" not in res.stderr


STATE: dict[str, Any] = {
    "name": "r1",
    "address": "10.77.1.2",
    "pid": 1,
    "tunnel_mtu": 1434,
    "datapath": "kernel",
    "kernel": {**dict.fromkeys(STAT_NAMES, 0), "relayed": 812, "auth_failed": 40, "replayed": 15},
    "counters": {"probes_relayed": 30, "auth_failed": 2, "replayed": 1},
    "destinations": [],
}


def test_show_prints_the_kernels_counters_and_what_it_dropped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "r1.json"
    f.write_text(json.dumps(STATE))
    assert main(["show", "--state", str(f)]) == 0
    out = capsys.readouterr().out
    assert out == format_table(STATE) + "\n"
    lines = out.splitlines()
    assert lines[1] == (
        "data path: kernel (itm_route carries the tunnelled packets;"
        " this daemon probes and chooses the paths)"
    )
    auth = next(line for line in lines if line.startswith("authentication:"))
    assert auth.endswith(
        "dropped: 42 failed the check, 16 replayed or stale"
        " (DATA in the kernel: 40 failed, 15 replayed; the daemon: 2 failed, 1 replayed)"
    )
    kernel = next(line for line in lines if line.startswith("kernel: "))
    assert kernel.split()[1:] == [f"{k}={v}" for k, v in STATE["kernel"].items()]
    assert "auth_failed=40" in kernel and "replayed=15" in kernel
    assert main(["show", "--state", str(f), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kernel"]["auth_failed"] == 40


# ------------------------------------------------------------------ the state file
def _offline_run(monkeypatch: pytest.MonkeyPatch) -> FakeKernel:
    """``itmroute run`` in this process: a fake itm_route, fake sockets (no root)."""
    fake = FakeKernel()
    monkeypatch.setattr(kernelpath, "_connect", lambda: fake)
    monkeypatch.setattr(kernelpath, "_family_exists", lambda: True)
    monkeypatch.setattr(Router, "_open_sockets", OfflineRouter._open_sockets)
    return fake


def test_run_writes_its_state_file_beside_the_users_files_and_removes_only_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon replaced a dead daemon's state file, and at exit removed it and
    ``s.tmp`` beside it (its temporary file was ``with_suffix('.tmp')``): now its
    temporary file is a hidden one of its own, and only the state file goes."""
    fake = _offline_run(monkeypatch)
    f = _yaml(tmp_path)
    st = tmp_path / "s.json"
    st.write_text(json.dumps({**STATE, "pid": 2**22 + 1}))  # a daemon that is gone
    (tmp_path / "s.tmp").write_text("mine\n")
    seen: list[list[str]] = []
    write = Router.write_state

    def write_and_look(self: Router) -> None:
        write(self)
        seen.append(sorted(p.name for p in tmp_path.iterdir()))
        assert json.loads(st.read_text())["pid"] == os.getpid()

    monkeypatch.setattr(Router, "write_state", write_and_look)
    argv = ["run", "-c", str(f), "--state", str(st), "--datapath", "kernel", "--duration", "0.3"]
    assert main(argv) == 0 and fake.closed
    assert seen and all(names == ["a.yaml", "s.json", "s.tmp"] for names in seen), seen
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.yaml", "s.tmp"]
    assert (tmp_path / "s.tmp").read_text() == "mine\n"


@pytest.fixture
def stateful(tmp_path: Path) -> Iterator[OfflineRouter]:
    """A router on the kernel data path (faked) whose state file is tmp_path/s.json."""
    fake = _connect(FakeKernel())
    st = tmp_path / "s.json"
    r = OfflineRouter(config(), datapath="kernel", kernel_client=fake, state_file=st)
    try:
        yield r
    finally:
        r.close()


def test_a_state_write_that_keeps_failing_is_said_once_per_cause(
    stateful: OfflineRouter, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    r, st = stateful, tmp_path / "s.json"
    st.mkdir()  # every write fails the same way (the temporary file's name changes)
    with caplog.at_level(logging.INFO, "itmroute"):
        for _ in range(5):
            r.write_state()
        assert caplog.text.count("cannot write") == 1
        st.rmdir()
        r.state_file = tmp_path / "gone" / "s.json"  # another cause: said too
        r.write_state()
        r.write_state()
        assert caplog.text.count("cannot write") == 2
        r.state_file = st
        r.write_state()  # works again: said, and the next failure is news
        assert f"{st} is written again" in caplog.text


def test_a_failed_state_write_leaves_nothing_and_a_replaced_file_stays(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    st = tmp_path / "s.json"
    fake = _connect(FakeKernel())
    r = OfflineRouter(config(), datapath="kernel", kernel_client=fake, state_file=st)
    try:
        st.mkdir()  # the rename fails: the temporary file is removed
        with caplog.at_level(logging.WARNING, "itmroute"):
            r.write_state()
        assert f"cannot write {st}: [Errno 21] Is a directory" in caplog.text
        assert [p.name for p in tmp_path.iterdir()] == ["s.json"]
        r.remove_state()  # never written: nothing of this daemon's to remove
        assert st.is_dir()
        st.rmdir()
        r.state_file = tmp_path / "gone" / "s.json"  # the directory is not created
        r.write_state()
        assert not (tmp_path / "gone").exists()
        r.state_file = st
        r.write_state()
        assert json.loads(st.read_text())["pid"] == os.getpid()
        st.unlink()
        st.write_text("someone else's\n")  # took its place: left alone at exit
        caplog.clear()
        with caplog.at_level(logging.WARNING, "itmroute"):
            r.remove_state()
        assert st.read_text() == "someone else's\n"
        assert f"not removing {st}: another file took its place" in caplog.text
        r.write_state()
    finally:
        r.close()
    assert not st.exists() and list(tmp_path.iterdir()) == []
