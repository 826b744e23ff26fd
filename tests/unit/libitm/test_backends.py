"""Backend selection and the kernel backend's honest refusal."""

from __future__ import annotations

import pytest

import libitm
from libitm import ItmLoop
from libitm.backends import make_backend
from libitm.backends.kernel import NOT_LOADED
from libitm.genl import family_id


def test_controller_family_is_found() -> None:
    assert family_id("nlctrl") == 0x10


def test_kernel_backend_refuses_without_itm_queue() -> None:
    if libitm.kernel_available():
        pytest.skip("itm_queue is loaded on this machine")
    with pytest.raises(libitm.BackendUnavailable) as e:
        make_backend("kernel")
    assert str(e.value) == NOT_LOADED
    assert "itmtool load itm_queue" in NOT_LOADED and "--backend nfqueue" in NOT_LOADED


def test_auto_and_unknown() -> None:
    assert make_backend("auto", pcap="x.pcap").name == "offline"
    if not libitm.kernel_available():
        assert make_backend("auto").name == "nfqueue"
    with pytest.raises(ValueError, match="unknown backend"):
        make_backend("carrier-pigeon")
    with pytest.raises(TypeError, match="unknown nfqueue backend options"):
        make_backend("nfqueue", bogus=1)


def test_loop_fileno_for_offline_is_an_error(tmp_path: object) -> None:
    loop = ItmLoop("offline", pcap="x.pcap")
    with pytest.raises(libitm.BackendUnavailable):
        loop.fileno()
