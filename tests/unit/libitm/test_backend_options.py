"""ItmLoop checks its backend options when it is made, as the backend would."""

from __future__ import annotations

from typing import Any

import pytest

import libitm.backends as backends
from libitm import ItmLoop
from libitm.backends.kernel import KernelBackend


@pytest.mark.parametrize("name", ["nfqueue", "kernel", "offline"])
def test_an_unknown_option_is_refused_when_the_loop_is_made(name: str) -> None:
    with pytest.raises(TypeError, match=f"unknown {name} backend options: zzz$"):
        ItmLoop(name, zzz=2)


def test_a_misspelt_option_names_the_one_it_probably_is() -> None:
    with pytest.raises(TypeError, match=r"options: copyrange \(did you mean copy_range\?\)$"):
        ItmLoop("kernel", copyrange=5)
    with pytest.raises(TypeError, match=r"options: worker \(did you mean workers\?\), zzz$"):
        ItmLoop("nfqueue", worker=2, zzz=1)


@pytest.mark.parametrize(
    ("name", "options", "said"),
    [
        ("nfqueue", {"copy_range": 5}, "copy_range must be in 20..65535, not 5"),
        ("kernel", {"copy_range": 5}, "copy_range must be in 20..65535, not 5"),
        ("nfqueue", {"workers": 0}, "workers must be in 1..64, not 0"),
        ("kernel", {"workers": 65}, "workers must be in 1..64, not 65"),
        ("nfqueue", {"queue_base": -1}, "queue_base must be in 0..65535, not -1"),
        ("kernel", {"observer_batch": 0}, "observer_batch must be in 1..1024, not 0"),
        ("kernel", {"fail_open": False}, "for fail_open=False use the nfqueue backend"),
    ],
)
def test_a_bad_value_is_refused_when_the_loop_is_made(
    name: str, options: dict[str, Any], said: str
) -> None:
    with pytest.raises(ValueError, match=said):
        ItmLoop(name, **options)
    loop = ItmLoop("offline")
    with pytest.raises(ValueError, match=said):
        loop.set_backend(name, **options)


def test_a_bool_is_not_an_int_option() -> None:
    with pytest.raises(TypeError, match="batch must be an int"):
        ItmLoop("nfqueue", batch=True)


def test_the_kernel_backend_takes_the_nfqueue_backend_s_options_it_has_no_use_for() -> None:
    """A program written for a stock kernel runs where itm_queue is loaded ('auto')."""
    nf_only: dict[str, Any] = {
        "queue_base": 5000,
        "iptables": "iptables-legacy",
        "ip6tables": "x",
        "fanout": True,
    }
    KernelBackend.check_options({**nf_only, "fail_open": True, "use_recvmmsg": False})
    ItmLoop("kernel", **nf_only)


def test_auto_says_which_backend_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "kernel_available", lambda: True)
    with pytest.raises(ValueError, match=r"\(backend 'auto' chose kernel: itm_queue is loaded\)"):
        ItmLoop(fail_open=False)
    monkeypatch.setattr(backends, "kernel_available", lambda: False)
    ItmLoop(fail_open=False)  # nfqueue takes it
    with pytest.raises(TypeError, match=r"chose nfqueue: itm_queue is not loaded\)"):
        ItmLoop(pcapp="x.pcap")


def test_the_options_of_each_backend_are_its_constructor_s() -> None:
    """OPTIONS, which the early check reads, names what __init__ takes."""
    import inspect

    from libitm.backends.nfqueue import NfqueueBackend
    from libitm.backends.offline import OfflineBackend

    for kind in (NfqueueBackend, KernelBackend, OfflineBackend):
        params = {
            n
            for n, p in inspect.signature(kind.__init__).parameters.items()
            if n != "self" and p.kind is not p.VAR_KEYWORD
        }
        assert params <= set(kind.OPTIONS), (kind.name, params - set(kind.OPTIONS))
    assert set(NfqueueBackend.OPTIONS) <= set(KernelBackend.OPTIONS)
