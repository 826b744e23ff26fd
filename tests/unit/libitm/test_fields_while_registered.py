"""What a registered application's other fields do when they change.

``priority`` is applied, from the next packet, on every backend: the
dispatcher (offline, nfqueue: the applications sharing a hook's queue) runs
the hook's applications in their new order, and the kernel backend moves the
application in itm_mod's run list (the itm family's ``app-set``, as
``itmtool priority``). With workers it is refused: each worker has its own copy
of the applications. ``label``, ``needs_payload`` and ``hook`` are fixed while
registered, like the interest (test_interest_while_registered.py): what
captures the packets was installed from them, so another value raises
:class:`RuntimeError`, never silently ignored. So is whether ``process_func``
is None (an observer, fed copies) or a function (a decider, queued). On the
kernel backend ``enabled`` reaches itm_mod (``app-set``, as ``itmtool
enable``/``disable``), which then skips a disabled application.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import ClassVar

import pytest

import libitm.backends.kernel as kernel_mod
from libitm import Application, Hook, Interest, ItmInfo, ItmLoop, Packet
from libitm.backends.kernel import NF_REPEAT, KernelBackend
from libitm.backends.nfqueue import NfqueueBackend
from libitm.control.client import ItmControlError
from libitm.transport import QueueTransport
from libitm.transport.nflog import LogTransport
from tests.support.fake_queue import fake_backend, pkt_msg
from tests.support.packets import udp, write_pcap

UDP = Interest(protocol="udp")


def _recorder(label: str, seen: list[str]) -> ItmInfo:
    def class_func(where: Hook, pkt: Packet) -> int:
        seen.append(label)
        return 0

    return ItmInfo(label, UDP, class_func=class_func)


def _order(loop: ItmLoop, hook: Hook = Hook.IP_IN) -> list[str]:
    return [i.label for i in loop.dispatcher.apps(hook)]


# ------------------------------------------------------------------- priority
def test_a_new_priority_reorders_the_hook_from_the_next_packet_offline(tmp_path: Path) -> None:
    """A callback of the first packet gives the second application a lower priority:
    from the second packet on it runs first (ties stay in registration order)."""
    trace = tmp_path / "in.pcap"
    write_pcap(trace, [(1.0 + i, udp("10.0.0.1", "10.0.0.2", 9, 1)) for i in range(3)])
    loop = ItmLoop("offline", pcap=trace)
    seen: list[str] = []
    first = _recorder("first", seen)
    second = _recorder("second", seen)

    def class_func(where: Hook, pkt: Packet) -> int:
        seen.append("first")
        if len(seen) == 1:
            second.priority = -1
        return 0

    first.class_func = class_func
    loop.register_hook(Hook.IP_IN, first)
    loop.register_hook(Hook.IP_IN, second)
    assert _order(loop) == ["first", "second"]
    loop.run()
    assert seen == ["first", "second", "second", "first", "second", "first"]


def test_the_order_follows_the_priority_and_ties_keep_registration_order() -> None:
    loop = ItmLoop("offline")
    a, b, c = (ItmInfo(n, UDP) for n in "abc")
    for info in (a, b, c):
        loop.register_hook(Hook.IP_IN, info)
    c.priority = -5
    assert _order(loop) == ["c", "a", "b"]
    a.priority = 3
    assert _order(loop) == ["c", "b", "a"]
    a.priority = 0  # back to b's priority: a was registered first
    assert _order(loop) == ["c", "a", "b"]
    seen = [lbl for lbl, _ in loop.dispatcher.dispatch(Hook.IP_IN, Packet(_udp())).classes]
    assert seen == ["c", "a", "b"]


def test_the_class_form_applies_a_new_priority_to_its_registration() -> None:
    class App(Application):
        interest = UDP
        hook = Hook.IP_IN

    loop = ItmLoop("offline")
    one, two = App(), App()
    one.label, two.label = "one", "two"
    loop.register_app(one)
    info = loop.register_app(two)
    two.priority = -1
    assert info.priority == -1
    assert _order(loop) == ["two", "one"]
    with pytest.raises(ValueError, match="out of range"):
        two.priority = 2**31
    assert two.priority == -1 and info.priority == -1


def test_the_nfqueue_queue_runs_a_hooks_applications_in_their_new_order() -> None:
    """Two deciders share the hook's queue: the packet loop (both lanes) takes the new
    order from the packet after the one whose callback changed it."""
    seen: list[str] = []
    a = _recorder("a", seen)
    b = _recorder("b", seen)

    def class_func(where: Hook, pkt: Packet) -> int:
        seen.append("a")
        if len(seen) == 1:
            b.priority = -1
        return 0

    a.class_func = class_func
    be, _ = fake_backend([a, b], [pkt_msg(i, 5) for i in range(1, 4)])
    be.transport.process()
    assert seen == ["a", "b", "b", "a", "b", "a"]


def test_nfqueue_workers_refuse_a_new_priority() -> None:
    be = NfqueueBackend(workers=2)
    info = ItmInfo("w", UDP)
    be.change_priority(info, 3)  # not forked yet: the rules do not depend on it
    be._worker = 1
    with pytest.raises(RuntimeError, match=r"'w' cannot change while workers run"):
        be.change_priority(info, 3)


def test_nfqueue_workers_refuse_to_switch_an_application() -> None:
    """Each worker holds its own copy of `enabled`: switching it in the parent (or
    one worker) reached one worker only, silently."""
    be = NfqueueBackend(workers=2)
    info = ItmInfo("w", UDP)
    be.change_enabled(info, False)  # not forked yet: the dispatcher takes it
    be._worker = 1
    with pytest.raises(RuntimeError, match=r"enabled flag of application 'w' cannot change"):
        be.change_enabled(info, False)


class _Reg:
    def __init__(self, queue: int) -> None:
        self.queue_num = queue
        self.queue_count = 1


class _QueueClient:
    """itm_queue's client: records the registrations."""

    registered: ClassVar[list[tuple[str, int]]] = []

    def __init__(self) -> None:
        self.next = 0x7000

    def register(
        self, label: str, hook: Hook, prio: int, kin: object, count: int, observer: bool
    ) -> _Reg:
        self.registered.append((label, prio))
        self.next += 1
        return _Reg(self.next)

    def unregister(self, label: str) -> None:
        pass

    def close(self) -> None:
        pass


class _Control:
    """itm_mod's client: records app-set requests, or refuses them."""

    calls: ClassVar[list[tuple[str, int | None]]] = []
    #: the enabled flags sent, in order
    enables: ClassVar[list[tuple[str, bool]]] = []
    refuse: int = 0

    def set_app(
        self, label: str, *, enabled: bool | None = None, priority: int | None = None
    ) -> None:
        if self.refuse:
            raise ItmControlError(self.refuse, "out of memory for the run list")
        if priority is not None:
            self.calls.append((label, priority))
        if enabled is not None:
            self.enables.append((label, enabled))

    def close(self) -> None:
        pass


def _kernel_loop(monkeypatch: pytest.MonkeyPatch) -> tuple[ItmLoop, KernelBackend]:
    """A loop on a kernel backend whose itm_queue, itm_mod and queue socket are fakes."""
    _QueueClient.registered = []
    _Control.calls, _Control.enables, _Control.refuse = [], [], 0
    monkeypatch.setattr(kernel_mod, "ItmQueueClient", _QueueClient)
    monkeypatch.setattr(kernel_mod, "ItmControl", _Control)
    be = KernelBackend.__new__(KernelBackend)
    be.copy_range = 128
    be.transport = QueueTransport(be._route, NF_REPEAT)
    be._closed = False
    be._client = None
    be._strict = False
    be._apps, be._queue_of = {}, {}
    be.workers, be._pool, be._worker, be._host = 1, None, None, None
    be._forked_client = None
    be.observers, be._groups, be._epoll = True, {}, None
    be.log = LogTransport(be._log_route)
    monkeypatch.setattr(be.transport, "open", lambda: None)
    monkeypatch.setattr(be.transport, "bind", lambda q, rng=None: 0)
    return ItmLoop(be), be


def _decider(label: str, priority: int = 0) -> ItmInfo:
    return ItmInfo(label, UDP, process_func=lambda w, c, p: None, priority=priority)


def test_the_kernel_backend_moves_the_application_in_itm_mods_run_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop, _ = _kernel_loop(monkeypatch)
    a, b = _decider("a"), _decider("b", 5)
    loop.register_hook(Hook.IP_IN, a)
    loop.register_hook(Hook.IP_IN, b)
    b.priority = 4  # before the loop starts: registered with it
    assert _Control.calls == []
    loop.start()
    assert _QueueClient.registered == [("a", 0), ("b", 4)]
    b.priority = -1
    assert _Control.calls == [("b", -1)], "itm_mod's app-set, as itmtool priority sends"
    assert _order(loop) == ["b", "a"]
    b.priority = -1  # the same priority: nothing to send
    assert _Control.calls == [("b", -1)]
    loop.close()
    assert not b.registered
    b.priority = 9  # the loop let it go: nothing to send
    assert _Control.calls == [("b", -1)]


def test_a_priority_itm_mod_refuses_is_an_error_and_stays_unchanged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop, be = _kernel_loop(monkeypatch)
    a, b = _decider("a"), _decider("b", 5)
    loop.register_hook(Hook.IP_IN, a)
    loop.register_hook(Hook.IP_IN, b)
    loop.start()
    _Control.refuse = errno.ENOMEM
    with pytest.raises(RuntimeError, match=r"itm_mod refused priority -1 for application 'b'"):
        b.priority = -1
    assert b.priority == 5 and _order(loop) == ["a", "b"]
    _Control.refuse = 0
    be._pool = object()  # type: ignore[assignment]  # as after the workers were forked
    with pytest.raises(RuntimeError, match=r"'b' cannot change while workers run.*itmtool"):
        b.priority = -1
    assert b.priority == 5 and _Control.calls == []
    be._pool = None
    loop.close()


# ------------------------------------------- label, needs_payload, hook: fixed
@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("label", "renamed", "itm_queue registration"),
        ("needs_payload", True, "copy range"),
        ("hook", Hook.IP_OUT, "register it at the other hook"),
    ],
)
def test_a_fixed_field_of_a_registered_application_raises(
    name: str, value: object, why: str
) -> None:
    info = ItmInfo("fixed", UDP)
    loop = ItmLoop("offline")
    loop.register_hook(Hook.IP_IN, info)
    before = getattr(info, name)
    with pytest.raises(RuntimeError, match=rf"the {name} of application 'fixed'") as e:
        setattr(info, name, value)
    assert "unregister it (unregister_hook)" in str(e.value) and why in str(e.value)
    assert getattr(info, name) == before, "the refused value is not kept"
    setattr(info, name, before)  # the same value: allowed, nothing changes
    loop.unregister_hook(info)
    setattr(info, name, value)
    assert getattr(info, name) == value


def test_renaming_by_registering_again_takes_the_new_label(tmp_path: Path) -> None:
    trace = tmp_path / "in.pcap"
    write_pcap(trace, [(1.0 + i, udp("10.0.0.1", "10.0.0.2", 9, 1)) for i in range(3)])
    loop = ItmLoop("offline", pcap=trace, log=tmp_path / "v.log")

    def class_func(where: Hook, pkt: Packet) -> int:
        if info.label == "old":
            loop.unregister_hook(info)
            info.label = "new"
            loop.register_hook(Hook.IP_IN, info)
        return 1

    info = ItmInfo("old", UDP, class_func=class_func)
    loop.register_hook(Hook.IP_IN, info)
    loop.run()
    assert [ln.split()[-1] for ln in (tmp_path / "v.log").read_text().splitlines()] == [
        "1",
        "1",
        "1",
    ]
    assert loop.counters()["apps"].keys() == {"new"}


def test_the_class_form_refuses_a_fixed_field_too() -> None:
    class App(Application):
        label = "cls"
        interest = UDP
        hook: Hook | str = Hook.IP_IN

    app = App()
    loop = ItmLoop("offline")
    info = loop.register_app(app)
    for name, value in (("label", "other"), ("needs_payload", True), ("hook", "ip_out")):
        with pytest.raises(RuntimeError, match=rf"the {name} of application 'cls'"):
            setattr(app, name, value)
    assert (app.label, app.needs_payload, app.hook) == ("cls", False, Hook.IP_IN)
    app.hook = "ip_in"  # the same hook, spelt otherwise
    loop.unregister_hook(info)
    app.label, app.needs_payload = "other", True
    assert loop.register_app(app).label == "other"


def _udp() -> bytes:
    return udp("10.0.0.1", "10.0.0.2", 9, 1)


# ------------------------------------------- process_func: observer or decider
def _decide(where: Hook, cls: int, pkt: Packet) -> None:
    return None


def _decide_too(where: Hook, cls: int, pkt: Packet) -> None:
    return None


@pytest.mark.parametrize(
    ("before", "after", "words"),
    [(None, _decide, "from None"), (_decide, None, "to None")],
    ids=["observer-to-decider", "decider-to-observer"],
)
def test_a_registered_application_cannot_switch_between_observer_and_decider(
    before: object, after: object, words: str
) -> None:
    info = ItmInfo("kind", UDP, process_func=before)  # type: ignore[arg-type]
    loop = ItmLoop("offline")
    loop.register_hook(Hook.IP_IN, info)
    with pytest.raises(
        RuntimeError, match=rf"the process_func of application 'kind'.*{words}"
    ) as e:
        info.process_func = after  # type: ignore[assignment]
    assert "unregister it (unregister_hook)" in str(e.value)
    assert info.process_func is before and info.wf_process_func is before, "nothing kept"
    loop.unregister_hook(info)
    info.process_func = after  # type: ignore[assignment]
    assert info.process_func is after
    loop.register_hook(Hook.IP_IN, info)
    assert info.registered


def test_one_process_func_may_replace_another_while_registered() -> None:
    info = ItmInfo("swap", UDP, process_func=_decide)
    loop = ItmLoop("offline")
    loop.register_hook(Hook.IP_IN, info)
    info.process_func = _decide_too
    assert info.process_func is _decide_too
    observer = ItmInfo("watch", UDP)
    loop.register_hook(Hook.IP_IN, observer)
    observer.process_func = None  # None again: allowed
    loop.unregister_hook(observer)
    observer.process_func = _decide  # no longer registered
    assert observer.process_func is _decide


def test_the_nfqueue_backend_keeps_an_observer_an_observer() -> None:
    """Before: the observer's rule (NFLOG) stayed while its process_func made it a
    decider, whose verdicts never applied to a packet."""
    watch = ItmInfo("watch", UDP, class_func=lambda w, p: 1)
    loop = ItmLoop(NfqueueBackend())
    loop.register_hook(Hook.IP_FORWARD, watch)
    with pytest.raises(RuntimeError, match="an observer"):
        watch.process_func = _decide
    assert watch.process_func is None


# ---------------------------------------------- enabled: reaches itm_mod
def test_the_kernel_backend_passes_enabled_on_to_itm_mod(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before: itm_mod kept queueing a disabled application's packets to user space,
    where the dispatcher accepted them past it (a round trip for nothing)."""
    loop, _ = _kernel_loop(monkeypatch)
    a, b = _decider("a"), _decider("b")
    b.enabled = False  # registered disabled: itm_mod starts it enabled, so it is told
    loop.register_hook(Hook.IP_IN, a)
    loop.register_hook(Hook.IP_IN, b)
    a.enabled = False  # not started yet: sent at registration
    a.enabled = True
    assert _Control.enables == []
    loop.start()
    assert [label for label, _ in _QueueClient.registered] == ["a", "b"]
    assert _Control.enables == [("b", False)]
    a.enabled = False
    assert _Control.enables == [("b", False), ("a", False)], "itmtool disable's app-set"
    a.enabled = False  # the same value: nothing to send
    b.enabled = True
    assert _Control.enables == [("b", False), ("a", False), ("b", True)]
    assert _Control.calls == [], "no priority sent with it"
    loop.close()
    a.enabled = True  # the loop let it go: nothing to send
    assert _Control.enables == [("b", False), ("a", False), ("b", True)]


def test_enabled_itm_mod_refuses_is_an_error_and_stays(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop, be = _kernel_loop(monkeypatch)
    a = _decider("a")
    loop.register_hook(Hook.IP_IN, a)
    loop.start()
    _Control.refuse = errno.EPERM
    with pytest.raises(RuntimeError, match=r"itm_mod refused to disable application 'a'"):
        a.enabled = False
    assert a.enabled is True
    _Control.refuse = 0
    be._pool = object()  # type: ignore[assignment]  # as after the workers were forked
    with pytest.raises(RuntimeError, match=r"enabled flag of application 'a' cannot change"):
        a.enabled = False
    assert a.enabled is True and _Control.enables == []
    be._pool = None
    loop.close()


def test_a_disabled_registration_itm_mod_refuses_to_disable_fails_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop, be = _kernel_loop(monkeypatch)
    loop.start()
    off = _decider("off")
    off.enabled = False
    _Control.refuse = errno.EPERM
    with pytest.raises(RuntimeError, match=r"itm_mod refused to disable application 'off'"):
        loop.register_hook(Hook.IP_IN, off)
    assert not off.registered and be._queue_of == {}
    loop.close()
