"""Backends: ``kernel`` (itm_queue loaded), ``nfqueue`` (stock kernel), ``offline`` (pcap)."""

from __future__ import annotations

from typing import Any

from .base import Backend, BackendUnavailable, LabelInUse

BACKENDS = ("auto", "kernel", "nfqueue", "offline")


def kernel_available() -> bool:
    """True when the itm_queue kernel module's generic netlink family exists."""
    from ..genl import family_id

    try:
        return family_id("itm_queue") is not None
    except OSError:
        return False


def _kind(name: str, options: dict[str, Any]) -> type[Backend]:
    """The class of backend ``name`` (``auto``: offline with a ``pcap``, else kernel
    if itm_queue is loaded, else nfqueue)."""
    if name == "auto":
        name = "offline" if "pcap" in options else "kernel" if kernel_available() else "nfqueue"
    if name == "offline":
        from .offline import OfflineBackend

        return OfflineBackend
    if name == "nfqueue":
        from .nfqueue import NfqueueBackend

        return NfqueueBackend
    if name == "kernel":
        from .kernel import KernelBackend

        return KernelBackend
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


def _said_auto(name: str, kind: type[Backend], e: Exception) -> Exception:
    """``e`` from the backend that ``auto`` chose, saying so."""
    if name != "auto":
        return e
    why = {"kernel": "itm_queue is loaded", "nfqueue": "itm_queue is not loaded"}
    return type(e)(f"{e} (backend 'auto' chose {kind.name}: {why.get(kind.name, 'a pcap')})")


def _checked(name: str, options: dict[str, Any]) -> type[Backend]:
    """The class of backend ``name``, its options checked."""
    kind = _kind(name, options)
    try:
        kind.check_options(options)
    except (TypeError, ValueError) as e:
        raise _said_auto(name, kind, e) from None
    return kind


def check_options(name: str, options: dict[str, Any]) -> None:
    """Refuse the options that backend ``name`` (as ``auto`` would choose it now)
    would refuse, without opening anything (:meth:`Backend.check_options`)."""
    _checked(name, options)


def make_backend(name: str, **options: Any) -> Backend:
    """Build a backend by name (``auto``: kernel if itm_queue is loaded, else nfqueue)."""
    return _checked(name, options)(**options)


__all__ = [
    "BACKENDS",
    "Backend",
    "BackendUnavailable",
    "LabelInUse",
    "check_options",
    "kernel_available",
    "make_backend",
]
