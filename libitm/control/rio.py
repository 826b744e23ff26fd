"""Configure and read the ``rio`` queueing discipline (kernel/sch_rio) over rtnetlink.

Stock ``tc`` has no parser for a new qdisc kind, so this module builds the
RTM_NEWQDISC message itself: a ``tcmsg`` whose TCA_OPTIONS nest carries the
TCA_RIO_* attributes of kernel/include/uapi/linux/sch_rio.h.  The qdisc's
dump is read back the same way: its parameters from TCA_OPTIONS, the generic
counters from TCA_STATS and its own (``struct tc_rio_xstats``) from TCA_XSTATS.
See docs/sch_rio.md.
"""

from __future__ import annotations

import errno
import math
import os
import socket
import struct
from dataclasses import asdict, dataclass, field
from typing import Any

from libitm.control import lazy_pyroute2

lazy_pyroute2.install()

from pyroute2.netlink import (  # noqa: E402
    NETLINK_ROUTE,
    NLA_F_NESTED,
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    nla,
    nlmsg,
)
from pyroute2.netlink.exceptions import NetlinkError  # noqa: E402
from pyroute2.netlink.nlsocket import NetlinkSocket  # noqa: E402

KIND = "rio"
RTM_NEWQDISC, RTM_DELQDISC, RTM_GETQDISC = 36, 37, 38
TC_H_ROOT = 0xFFFFFFFF
TC_RIO_ECN = 0x1
#: TCA_RIO_CLEAR: what a change takes back to its default
TC_RIO_CLEAR_DSCP = 0x1
TC_RIO_CLEAR_STAB = 0x2
STAB_SIZE = 256
#: the smallest max_p the kernel can hold: it takes max_p as a fraction of 2^32
MAX_P_MIN = 2**-32
#: struct tc_rio_xstats: eight __u64 counters, four __u32 gauges
XSTATS = struct.Struct("=8Q4I")
XSTATS_FIELDS = (
    "in_enqueued",
    "out_enqueued",
    "in_early",
    "out_early",
    "in_forced",
    "out_forced",
    "ecn_marked",
    "limit_drops",
    "qavg_in",
    "qavg_all",
    "in_qlen",
    "qlen",
)


class RioError(Exception):
    """A request about a rio qdisc failed; ``code`` is the errno (0 if none)."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class RedProfile:
    """One RED drop profile: thresholds in packets, the max probability in [0, 1]."""

    min: int
    max: int
    max_p: float

    def check(self, name: str) -> None:
        """Raise ValueError, naming the profile, when the values cannot be sent."""
        if not 0 <= self.min <= self.max < 2**32:
            raise ValueError(f"{name}: need 0 <= min <= max, not min {self.min} max {self.max}")
        if not (math.isfinite(self.max_p) and 0 < self.max_p <= 1):
            raise ValueError(f"{name}: max_p must be in (0, 1], not {self.max_p}")
        if self.max_p < MAX_P_MIN:
            raise ValueError(
                f"{name}: max_p {self.max_p:g} is below the kernel's resolution: "
                "the smallest accepted is 2^-32 (2.33e-10)"
            )

    @property
    def max_p_fixed(self) -> int:
        """max_p as the kernel takes it: a fraction of 2^32 (1.0 is 2^32 - 1)."""
        return min(round(self.max_p * 2**32), 2**32 - 1)


#: Clark and Fang's shape: "out" packets start dropping earlier and harder (docs/sch_rio.md)
DEFAULT_IN = RedProfile(40, 70, 0.02)
DEFAULT_OUT = RedProfile(10, 30, 0.1)


def idle_damping(wlog: int, avpkt: int, rate_bps: int) -> tuple[int, bytes]:
    """(scell_log, stab) so that the averages decay over an idle queue as RED's do.

    The same table ``tc qdisc add ... red`` computes (iproute2's
    ``tc_red_eval_idle_damping``), in microseconds: an idle time of ``i << scell_log``
    microseconds shifts the average right by ``stab[i]`` -- as many packets of
    ``avpkt`` bytes as the link sends at ``rate_bps`` in that time, each weighing
    ``2**-wlog``.
    """
    if avpkt <= 0 or rate_bps <= 0:
        raise ValueError("avpkt and rate must be > 0")
    xmit_us = avpkt * 8 * 1e6 / rate_bps
    decay = -math.log(1.0 - 1.0 / (1 << wlog)) / xmit_us
    maxtime = 31 / decay
    for cell_log in range(32):
        if maxtime / (1 << cell_log) < 512:
            break
    else:
        raise ValueError("the link is too slow for an idle-damping table")
    table = [0] + [min(int((i << cell_log) * decay), 31) for i in range(1, 255)] + [31]
    return cell_log, bytes(table)


@dataclass(frozen=True)
class RioConfig:
    """The parameters of one rio qdisc (defaults: docs/sch_rio.md)."""

    limit: int = 1000
    wlog: int = 9
    in_profile: RedProfile = DEFAULT_IN
    out_profile: RedProfile = DEFAULT_OUT
    #: the DSCP of "in" packets; None: the TOS Minimize-Delay bit (0x10), as qos_mod sets it
    dscp: int | None = None
    ecn: bool = False
    scell_log: int | None = None
    #: the idle damping table (`idle_damping`); None: none
    stab: bytes | None = field(default=None, repr=False)

    def check(self) -> None:
        """Raise ValueError with a one-line reason when the kernel would refuse these."""
        if not 1 <= self.limit < 2**32:
            raise ValueError(f"limit must be >= 1 packet, not {self.limit}")
        if not 0 <= self.wlog <= 31:
            raise ValueError(f"wlog must be in 0..31, not {self.wlog}")
        if self.dscp is not None and not 0 <= self.dscp <= 63:
            raise ValueError(f"dscp must be in 0..63, not {self.dscp}")
        if self.scell_log is not None and not 0 <= self.scell_log <= 31:
            raise ValueError(f"scell_log must be in 0..31, not {self.scell_log}")
        if self.stab is not None and len(self.stab) != STAB_SIZE:
            raise ValueError(f"stab must be {STAB_SIZE} bytes, not {len(self.stab)}")
        if self.stab is not None and max(self.stab) >= 32:
            raise ValueError("stab entries are shifts of a 32-bit average: each must be < 32")
        self.in_profile.check("in")
        self.out_profile.check("out")
        for name, prof in (("in", self.in_profile), ("out", self.out_profile)):
            if prof.max and prof.max.bit_length() + self.wlog >= 32:
                raise ValueError(f"{name}: max {prof.max} is too large for wlog {self.wlog}")


def encode_options(
    cfg: RioConfig, *, clear_dscp: bool = False, clear_stab: bool = False
) -> list[tuple[str, Any]]:
    """The TCA_RIO_* attributes of `cfg`, in the kernel's order (after checking it).

    A change of a qdisc keeps the DSCP and the idle damping table that `cfg` does
    not give; `clear_dscp` takes "in" back to the TOS bit 0x10, `clear_stab` drops
    the table (and scell_log goes back to its default) -- not together with a
    `cfg.dscp` or `cfg.stab` (ValueError).
    """
    cfg.check()
    if clear_dscp and cfg.dscp is not None:
        raise ValueError(f"dscp {cfg.dscp} given and cleared at once")
    if clear_stab and cfg.stab is not None:
        raise ValueError("an idle damping table given and cleared at once")
    attrs: list[tuple[str, Any]] = [
        ("TCA_RIO_LIMIT", cfg.limit),
        ("TCA_RIO_WLOG", cfg.wlog),
        ("TCA_RIO_IN_MIN", cfg.in_profile.min),
        ("TCA_RIO_IN_MAX", cfg.in_profile.max),
        ("TCA_RIO_IN_MAX_P", cfg.in_profile.max_p_fixed),
        ("TCA_RIO_OUT_MIN", cfg.out_profile.min),
        ("TCA_RIO_OUT_MAX", cfg.out_profile.max),
        ("TCA_RIO_OUT_MAX_P", cfg.out_profile.max_p_fixed),
    ]
    if cfg.dscp is not None:
        attrs.append(("TCA_RIO_DSCP", cfg.dscp))
    attrs.append(("TCA_RIO_FLAGS", TC_RIO_ECN if cfg.ecn else 0))
    if cfg.scell_log is not None:
        attrs.append(("TCA_RIO_SCELL_LOG", cfg.scell_log))
    if cfg.stab is not None:
        attrs.append(("TCA_RIO_STAB", cfg.stab))
    clear = (TC_RIO_CLEAR_DSCP if clear_dscp else 0) | (TC_RIO_CLEAR_STAB if clear_stab else 0)
    if clear:
        attrs.append(("TCA_RIO_CLEAR", clear))
    return attrs


class rio_options(nla):  # type: ignore[misc]  # pyroute2 is untyped
    """TCA_OPTIONS of a rio qdisc (uapi/linux/sch_rio.h), flagged nested: the kernel's
    strict parser requires NLA_F_NESTED."""

    nla_flags = NLA_F_NESTED

    nla_map = (
        ("TCA_RIO_UNSPEC", "none"),
        ("TCA_RIO_LIMIT", "uint32"),
        ("TCA_RIO_WLOG", "uint8"),
        ("TCA_RIO_IN_MIN", "uint32"),
        ("TCA_RIO_IN_MAX", "uint32"),
        ("TCA_RIO_IN_MAX_P", "uint32"),
        ("TCA_RIO_OUT_MIN", "uint32"),
        ("TCA_RIO_OUT_MAX", "uint32"),
        ("TCA_RIO_OUT_MAX_P", "uint32"),
        ("TCA_RIO_DSCP", "uint8"),
        ("TCA_RIO_FLAGS", "uint32"),
        ("TCA_RIO_SCELL_LOG", "uint8"),
        ("TCA_RIO_STAB", "cdata"),
        ("TCA_RIO_CLEAR", "uint32"),
    )


class rio_tcmsg(nlmsg):  # type: ignore[misc]  # pyroute2 is untyped
    """A tcmsg (RTM_*QDISC) whose TCA_OPTIONS are rio's; other kinds' options stay raw."""

    prefix = "TCA_"
    fields = (
        ("family", "B"),
        ("pad1", "B"),
        ("pad2", "H"),
        ("index", "i"),
        ("handle", "I"),
        ("parent", "I"),
        ("info", "I"),
    )
    nla_map = (
        ("TCA_UNSPEC", "none"),
        ("TCA_KIND", "asciiz"),
        ("TCA_OPTIONS", "get_options"),
        ("TCA_STATS", "stats"),
        ("TCA_XSTATS", "cdata"),
        ("TCA_RATE", "hex"),
        ("TCA_FCNT", "hex"),
        ("TCA_STATS2", "hex"),
        ("TCA_STAB", "hex"),
    )

    class stats(nla):  # type: ignore[misc]
        """struct tc_stats: the generic counters `tc -s qdisc` shows."""

        fields = (
            ("bytes", "Q"),
            ("packets", "I"),
            ("drop", "I"),
            ("overlimits", "I"),
            ("bps", "I"),
            ("pps", "I"),
            ("qlen", "I"),
            ("backlog", "I"),
        )

    @staticmethod
    def get_options(self: nlmsg, *argv: Any, **kwarg: Any) -> type[nla]:
        """rio's options for kind "rio"; raw bytes for any other kind."""
        return rio_options if self.get_attr("TCA_KIND") == KIND else nla.cdata


@dataclass
class RioStatus:
    """One rio qdisc as its dump shows it."""

    dev: str
    handle: str
    parent: str
    config: RioConfig
    #: the generic counters (sent bytes and packets, drops, overlimits, qlen, backlog)
    counters: dict[str, int]
    #: struct tc_rio_xstats
    xstats: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (`idle_table`: whether there is an idle damping table)."""
        doc = asdict(self)
        doc["config"]["idle_table"] = doc["config"].pop("stab", None) is not None
        return doc


def decode_xstats(data: bytes) -> dict[str, int]:
    """struct tc_rio_xstats as a dictionary (a longer struct from a newer module: its head)."""
    if len(data) < XSTATS.size:
        raise RioError(f"tc_rio_xstats is {XSTATS.size} bytes, the kernel sent {len(data)}")
    return dict(zip(XSTATS_FIELDS, XSTATS.unpack_from(data), strict=True))


def decode_options(opts: nla) -> RioConfig:
    """A RioConfig from the TCA_OPTIONS of a rio dump."""

    def get(name: str) -> int:
        value = opts.get_attr(name)
        if value is None:
            raise RioError(f"the rio dump has no {name}")
        return int(value)

    def profile(which: str) -> RedProfile:
        return RedProfile(
            get(f"TCA_RIO_{which}_MIN"),
            get(f"TCA_RIO_{which}_MAX"),
            get(f"TCA_RIO_{which}_MAX_P") / 2**32,
        )

    dscp = opts.get_attr("TCA_RIO_DSCP")
    stab = opts.get_attr("TCA_RIO_STAB")  # dumped when there is one
    return RioConfig(
        limit=get("TCA_RIO_LIMIT"),
        wlog=get("TCA_RIO_WLOG"),
        in_profile=profile("IN"),
        out_profile=profile("OUT"),
        dscp=None if dscp is None else int(dscp),
        ecn=bool(get("TCA_RIO_FLAGS") & TC_RIO_ECN),
        scell_log=get("TCA_RIO_SCELL_LOG"),
        stab=None if stab is None else bytes(stab),
    )


def _handle(value: int) -> str:
    if value == TC_H_ROOT:
        return "root"
    return f"{value >> 16:x}:{value & 0xFFFF:x}"


def parse_handle(text: str) -> int:
    """``root``, ``1:``, ``1:0`` or ``10:1`` (hex, as tc writes them) as a 32-bit handle."""
    if text == "root":
        return TC_H_ROOT
    major, sep, minor = text.partition(":")
    try:
        if not sep:
            raise ValueError
        value = (int(major, 16) << 16) | (int(minor or "0", 16))
    except ValueError:
        raise ValueError(f"not a tc handle: {text!r} (e.g. root, 1:, 10:1)") from None
    if not 0 <= value < 2**32:
        raise ValueError(f"not a tc handle: {text!r}")
    return value


def _ifindex(dev: str) -> int:
    try:
        return socket.if_nametoindex(dev)
    except OSError:
        raise RioError(f"no network device {dev!r} here", errno.ENODEV) from None


class RioControl:
    """An rtnetlink socket for rio qdiscs (use as a context manager)."""

    def __init__(self) -> None:
        self.sock = NetlinkSocket(family=NETLINK_ROUTE, ext_ack=True)
        self.sock.marshal.msg_map[RTM_NEWQDISC] = rio_tcmsg
        self.sock.bind()

    def __enter__(self) -> RioControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()

    def _request(self, msg: nlmsg, msg_type: int, flags: int) -> list[nlmsg]:
        try:
            return list(self.sock.nlm_request(msg, msg_type=msg_type, msg_flags=flags))
        except NetlinkError as err:
            raise RioError(_netlink_message(err), err.code) from None

    def set(
        self,
        dev: str,
        cfg: RioConfig,
        *,
        parent: str = "root",
        handle: str = "",
        replace: bool = True,
        clear_dscp: bool = False,
        clear_stab: bool = False,
    ) -> None:
        """Add (or with `replace`, add or change) a rio qdisc on `dev` at `parent`.

        A change keeps the qdisc's DSCP and idle damping table unless `cfg` gives
        them; `clear_dscp` and `clear_stab` take them back to the defaults
        (`encode_options`).
        """
        attrs = encode_options(cfg, clear_dscp=clear_dscp, clear_stab=clear_stab)
        msg = rio_tcmsg()
        msg["family"] = socket.AF_UNSPEC
        msg["index"] = _ifindex(dev)
        msg["parent"] = parse_handle(parent)
        msg["handle"] = parse_handle(handle) if handle else 0
        msg["attrs"] = [("TCA_KIND", KIND), ("TCA_OPTIONS", {"attrs": attrs})]
        flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE
        flags |= NLM_F_REPLACE if replace else NLM_F_EXCL
        self._request(msg, RTM_NEWQDISC, flags)

    def delete(self, dev: str, *, parent: str = "root") -> None:
        """Delete the rio qdisc at `parent` of `dev` (the device gets its default back)."""
        for status in self.show(dev):
            if status.parent == parent:
                msg = rio_tcmsg()
                msg["family"] = socket.AF_UNSPEC
                msg["index"] = _ifindex(dev)
                msg["parent"] = parse_handle(parent)
                msg["attrs"] = [("TCA_KIND", KIND)]
                self._request(msg, RTM_DELQDISC, NLM_F_REQUEST | NLM_F_ACK)
                return
        raise RioError(f"no rio qdisc at {parent} of {dev}", errno.ENOENT)

    def show(self, dev: str | None = None) -> list[RioStatus]:
        """Every rio qdisc (on `dev` only, when given), with its parameters and counters."""
        index = _ifindex(dev) if dev else 0
        msg = rio_tcmsg()
        msg["family"] = socket.AF_UNSPEC
        msg["index"] = index
        found = []
        for reply in self._request(msg, RTM_GETQDISC, NLM_F_REQUEST | NLM_F_DUMP):
            if reply.get_attr("TCA_KIND") != KIND or (index and reply["index"] != index):
                continue
            found.append(_status(reply))
        return found


def _netlink_message(err: NetlinkError) -> str:
    """The kernel's extack message if it gave one, else the errno's text."""
    text = str(err.args[1]) if len(err.args) > 1 and err.args[1] else ""
    plain = os.strerror(err.code) if err.code else "failed"
    return text if text and text != plain else plain


def _status(reply: nlmsg) -> RioStatus:
    stats = reply.get_attr("TCA_STATS")
    counters = {
        k: int(stats[k])
        for k in ("bytes", "packets", "drop", "overlimits", "qlen", "backlog")
        if stats is not None
    }
    xstats = reply.get_attr("TCA_XSTATS")
    try:
        dev = socket.if_indextoname(reply["index"])
    except OSError:
        dev = str(reply["index"])
    return RioStatus(
        dev=dev,
        handle=_handle(reply["handle"]),
        parent=_handle(reply["parent"]),
        config=decode_options(reply.get_attr("TCA_OPTIONS")),
        counters=counters,
        xstats=decode_xstats(xstats) if xstats is not None else {},
    )
