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


def make_backend(name: str, **options: Any) -> Backend:
    """Build a backend by name (``auto``: kernel if itm_queue is loaded, else nfqueue)."""
    if name == "auto":
        name = "offline" if "pcap" in options else "kernel" if kernel_available() else "nfqueue"
    if name == "offline":
        from .offline import OfflineBackend

        return OfflineBackend(**options)
    if name == "nfqueue":
        from .nfqueue import NfqueueBackend

        return NfqueueBackend(**options)
    if name == "kernel":
        from .kernel import KernelBackend

        return KernelBackend(**options)
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


__all__ = [
    "BACKENDS",
    "Backend",
    "BackendUnavailable",
    "LabelInUse",
    "kernel_available",
    "make_backend",
]
