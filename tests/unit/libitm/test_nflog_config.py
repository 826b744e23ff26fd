"""The NFLOG group configuration that libitm's observers get: one copy per message
by default, ``observer_batch`` copies per message (flushed within 10 ms) on request."""

from __future__ import annotations

import struct

import pytest

from libitm.backends.nfqueue import NfqueueBackend
from libitm.transport import codec as nfq
from libitm.transport import nflog
from libitm.transport.nflog import MAX_OBSERVER_BATCH


def _attrs(msg: bytes) -> dict[int, bytes]:
    """The attributes of the one config message in ``msg`` (after nfgenmsg)."""
    ((mtype, _, off, length),) = list(nfq.messages(msg, len(msg)))
    assert mtype == nflog.MSG_CONFIG
    out = {}
    pos = off + 20
    while pos + 4 <= off + length:
        alen, atype = struct.unpack_from("=HH", msg, pos)
        out[atype & 0x3FFF] = msg[pos + 4 : pos + alen]
        pos += (alen + 3) & ~3
    return out


def test_each_copy_is_sent_at_once_by_default() -> None:
    a = _attrs(nflog.config_mode(4100, 128, seq=1))
    assert a[nflog.NFULA_CFG_MODE] == struct.pack(">IBx", 128, nflog.NFULNL_COPY_PACKET)
    assert a[nflog.NFULA_CFG_QTHRESH] == struct.pack(">I", 1)
    assert nflog.NFULA_CFG_TIMEOUT not in a


def test_batched_copies_have_a_flush_timeout() -> None:
    a = _attrs(nflog.config_mode(4100, 128, seq=1, batch=64))
    assert a[nflog.NFULA_CFG_QTHRESH] == struct.pack(">I", 64)
    assert a[nflog.NFULA_CFG_TIMEOUT] == struct.pack(">I", nflog.FLUSH_CS)


def test_the_backend_option_reaches_the_log_transport() -> None:
    assert NfqueueBackend().log.batch == 1
    assert NfqueueBackend(observer_batch=64).log.batch == 64
    for bad in (0, MAX_OBSERVER_BATCH + 1):
        with pytest.raises(ValueError, match=r"observer_batch must be in 1\.\.1024"):
            NfqueueBackend(observer_batch=bad)
