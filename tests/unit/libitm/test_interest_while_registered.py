"""A registered application's interest cannot change under it.

What captures its packets (the nfqueue backend's rules, the kernel backend's
itm_queue registration) and the dispatcher's compiled test were made from
its interest when it was registered: assigning another one then raises, it is
not silently ignored. Unregistering, changing it and registering again works,
also from inside a callback, from the next packet on.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from libitm import Application, Hook, Interest, ItmInfo, ItmLoop, Packet
from tests.support.packets import udp, write_pcap

UDP = Interest(protocol="udp")
PORT_2 = Interest(protocol="udp", dport=2)


def test_assigning_another_interest_to_a_registered_application_raises() -> None:
    info = ItmInfo("fixed", UDP)
    loop = ItmLoop("offline")
    loop.register_hook(Hook.IP_IN, info)
    assert info.registered
    with pytest.raises(RuntimeError, match=r"unregister.*register it again") as e:
        info.interest = PORT_2
    assert "'fixed'" in str(e.value)
    assert info.interest is UDP, "the refused interest is not kept"
    info.interest = Interest(protocol="udp")  # the same interest: nothing changes
    loop.unregister_hook(info)
    assert not info.registered
    info.interest = PORT_2
    assert info.interest == PORT_2


def test_the_type_is_checked_when_the_interest_is_set_too() -> None:
    info = ItmInfo("typed")
    with pytest.raises(TypeError, match=r"libitm\.Interest"):
        info.interest = "udp"  # type: ignore[assignment]
    assert info.interest == Interest()


def test_an_application_of_a_loop_that_ran_is_no_longer_registered(tmp_path: Path) -> None:
    trace = tmp_path / "in.pcap"
    write_pcap(trace, [(1.0, udp("10.0.0.1", "10.0.0.2", 9, 1))])
    info = ItmInfo("closed", UDP)
    loop = ItmLoop("offline", pcap=trace)
    loop.register_hook(Hook.IP_IN, info)
    loop.run()
    assert loop.closed
    assert not info.registered
    info.interest = PORT_2
    assert info.interest == PORT_2


def test_a_copy_of_a_registered_application_is_not_registered() -> None:
    info = ItmInfo("orig", UDP)
    loop = ItmLoop("offline")
    loop.register_hook(Hook.IP_IN, info)
    twin = copy.copy(info)
    assert info.registered and not twin.registered
    twin.interest = PORT_2
    assert info.interest == UDP


def test_the_class_form_refuses_too() -> None:
    class App(Application):
        label = "cls"
        interest = UDP
        hook = Hook.IP_IN

    app = App()
    app.interest = PORT_2  # not registered: fine
    loop = ItmLoop("offline")
    info = loop.register_app(app)
    assert info.interest == PORT_2
    with pytest.raises(RuntimeError, match="register it again"):
        app.interest = UDP
    assert app.interest == PORT_2 and info.interest == PORT_2
    loop.unregister_hook(info)
    app.interest = UDP
    assert loop.register_app(app).interest == UDP


def test_changing_it_from_a_callback_by_registering_again_applies_from_the_next_packet(
    tmp_path: Path,
) -> None:
    """The supported way, offline: the callback unregisters its application, sets
    the interest and registers it again; a direct assignment there is a callback
    error (logged and counted) that changes nothing."""
    trace = tmp_path / "in.pcap"
    ports = [1, 1, 2, 1, 2]
    write_pcap(trace, [(1.0 + i, udp("10.0.0.1", "10.0.0.2", 9, d)) for i, d in enumerate(ports)])
    loop = ItmLoop("offline", pcap=trace)
    seen: list[int] = []
    refused: list[str] = []

    def class_func(where: Hook, pkt: Packet) -> int:
        seen.append(pkt.dport or 0)
        if len(seen) == 1:
            try:
                info.interest = PORT_2
            except RuntimeError as e:
                refused.append(str(e))
        if len(seen) == 2:
            loop.unregister_hook(info)
            info.interest = PORT_2
            loop.register_hook(Hook.IP_IN, info)
        return 0

    info = ItmInfo("again", UDP, class_func=class_func)
    loop.register_hook(Hook.IP_IN, info)
    loop.run()
    assert len(refused) == 1
    assert seen == [1, 1, 2, 2], "from the third packet on: dport 2 only"
