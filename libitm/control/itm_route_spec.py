"""Constants and pyroute2 message classes of the itm_route generic netlink family.

Do not edit directly: generated from spec/itm_route.yaml by tools/itmtool/nlgen.py.
"""

# mypy: disable-error-code="misc"

from pyroute2.netlink import NLA_F_NESTED, genlmsg, nla

FAMILY_NAME = "itm_route"
FAMILY_VERSION = 1
ITMR_MAX_ROUTES = 64
ITMR_KEY_MIN = 16
ITMR_KEY_MAX = 32
ITMR_NEVER = 4294967295

ITMR_CMD_CONFIG = 1
ITMR_CMD_ROUTE_SET = 2
ITMR_CMD_ROUTE_DEL = 3
ITMR_CMD_GET = 4
ITMR_CMD_UNCONFIG = 5

ITMR_A_PORT = 1
ITMR_A_MARK = 2
ITMR_A_KEY = 3
ITMR_A_ADDR = 4
ITMR_A_FAMILY = 5
ITMR_A_MTU = 6
ITMR_A_ROUTE = 7
ITMR_A_STATS = 8
ITMR_A_PID = 9
ITMR_A_PAD = 10
ITMR_A_NAMES = (
    "ITMR_A_UNSPEC",
    "ITMR_A_PORT",
    "ITMR_A_MARK",
    "ITMR_A_KEY",
    "ITMR_A_ADDR",
    "ITMR_A_FAMILY",
    "ITMR_A_MTU",
    "ITMR_A_ROUTE",
    "ITMR_A_STATS",
    "ITMR_A_PID",
    "ITMR_A_PAD",
)

ITMR_A_ROUTE_FAMILY = 1
ITMR_A_ROUTE_PREFIX = 2
ITMR_A_ROUTE_PREFIX_LEN = 3
ITMR_A_ROUTE_VIA = 4
ITMR_A_ROUTE_TARGET = 5
ITMR_A_ROUTE_TAG = 6
ITMR_A_ROUTE_RECEIPT = 7
ITMR_A_ROUTE_OUT_AGE = 8
ITMR_A_ROUTE_IN_AGE = 9
ITMR_A_ROUTE_PEER_AGE = 10
ITMR_A_ROUTE_PEER_TAG = 11
ITMR_A_ROUTE_PEER_VIA = 12
ITMR_A_ROUTE_HEARD_AGE = 13
ITMR_A_ROUTE_HEARD_RECEIPT = 14
ITMR_A_ROUTE_TUNNELLED = 15
ITMR_A_ROUTE_DIRECT = 16
ITMR_A_ROUTE_PEER_PACKETS = 17
ITMR_A_ROUTE_PAD = 18
ITMR_A_ROUTE_NAMES = (
    "ITMR_A_ROUTE_UNSPEC",
    "ITMR_A_ROUTE_FAMILY",
    "ITMR_A_ROUTE_PREFIX",
    "ITMR_A_ROUTE_PREFIX_LEN",
    "ITMR_A_ROUTE_VIA",
    "ITMR_A_ROUTE_TARGET",
    "ITMR_A_ROUTE_TAG",
    "ITMR_A_ROUTE_RECEIPT",
    "ITMR_A_ROUTE_OUT_AGE",
    "ITMR_A_ROUTE_IN_AGE",
    "ITMR_A_ROUTE_PEER_AGE",
    "ITMR_A_ROUTE_PEER_TAG",
    "ITMR_A_ROUTE_PEER_VIA",
    "ITMR_A_ROUTE_HEARD_AGE",
    "ITMR_A_ROUTE_HEARD_RECEIPT",
    "ITMR_A_ROUTE_TUNNELLED",
    "ITMR_A_ROUTE_DIRECT",
    "ITMR_A_ROUTE_PEER_PACKETS",
    "ITMR_A_ROUTE_PAD",
)

ITMR_A_STATS_TUNNELLED = 1
ITMR_A_STATS_DIRECT = 2
ITMR_A_STATS_DECAPSULATED = 3
ITMR_A_STATS_RELAYED = 4
ITMR_A_STATS_AUTH_FAILED = 5
ITMR_A_STATS_REPLAYED = 6
ITMR_A_STATS_BAD = 7
ITMR_A_STATS_TO_DAEMON = 8
ITMR_A_STATS_TOO_BIG = 9
ITMR_A_STATS_MSS_CLAMPED = 10
ITMR_A_STATS_SEND_ERRORS = 11
ITMR_A_STATS_NO_ROUTE = 12
ITMR_A_STATS_PAD = 13
ITMR_A_STATS_NAMES = (
    "ITMR_A_STATS_UNSPEC",
    "ITMR_A_STATS_TUNNELLED",
    "ITMR_A_STATS_DIRECT",
    "ITMR_A_STATS_DECAPSULATED",
    "ITMR_A_STATS_RELAYED",
    "ITMR_A_STATS_AUTH_FAILED",
    "ITMR_A_STATS_REPLAYED",
    "ITMR_A_STATS_BAD",
    "ITMR_A_STATS_TO_DAEMON",
    "ITMR_A_STATS_TOO_BIG",
    "ITMR_A_STATS_MSS_CLAMPED",
    "ITMR_A_STATS_SEND_ERRORS",
    "ITMR_A_STATS_NO_ROUTE",
    "ITMR_A_STATS_PAD",
)


class stats(nla):
    """the namespace's counters"""

    nla_flags = NLA_F_NESTED  # the kernel's strict validation wants the flag
    nla_map = (
        ("ITMR_A_STATS_UNSPEC", "none"),
        ("ITMR_A_STATS_TUNNELLED", "uint64"),
        ("ITMR_A_STATS_DIRECT", "uint64"),
        ("ITMR_A_STATS_DECAPSULATED", "uint64"),
        ("ITMR_A_STATS_RELAYED", "uint64"),
        ("ITMR_A_STATS_AUTH_FAILED", "uint64"),
        ("ITMR_A_STATS_REPLAYED", "uint64"),
        ("ITMR_A_STATS_BAD", "uint64"),
        ("ITMR_A_STATS_TO_DAEMON", "uint64"),
        ("ITMR_A_STATS_TOO_BIG", "uint64"),
        ("ITMR_A_STATS_MSS_CLAMPED", "uint64"),
        ("ITMR_A_STATS_SEND_ERRORS", "uint64"),
        ("ITMR_A_STATS_NO_ROUTE", "uint64"),
        ("ITMR_A_STATS_PAD", "none"),
    )


class route(nla):
    """one overlay prefix and the path its packets take"""

    nla_flags = NLA_F_NESTED  # the kernel's strict validation wants the flag
    nla_map = (
        ("ITMR_A_ROUTE_UNSPEC", "none"),
        ("ITMR_A_ROUTE_FAMILY", "uint8"),
        ("ITMR_A_ROUTE_PREFIX", "cdata"),
        ("ITMR_A_ROUTE_PREFIX_LEN", "uint8"),
        ("ITMR_A_ROUTE_VIA", "cdata"),
        ("ITMR_A_ROUTE_TARGET", "cdata"),
        ("ITMR_A_ROUTE_TAG", "uint8"),
        ("ITMR_A_ROUTE_RECEIPT", "uint8"),
        ("ITMR_A_ROUTE_OUT_AGE", "uint32"),
        ("ITMR_A_ROUTE_IN_AGE", "uint32"),
        ("ITMR_A_ROUTE_PEER_AGE", "uint32"),
        ("ITMR_A_ROUTE_PEER_TAG", "uint8"),
        ("ITMR_A_ROUTE_PEER_VIA", "cdata"),
        ("ITMR_A_ROUTE_HEARD_AGE", "uint32"),
        ("ITMR_A_ROUTE_HEARD_RECEIPT", "uint8"),
        ("ITMR_A_ROUTE_TUNNELLED", "uint64"),
        ("ITMR_A_ROUTE_DIRECT", "uint64"),
        ("ITMR_A_ROUTE_PEER_PACKETS", "uint64"),
        ("ITMR_A_ROUTE_PAD", "none"),
    )


class itm_routemsg(genlmsg):
    """The message of every itm_route command (the family's top-level attributes)."""

    nla_map = (
        ("ITMR_A_UNSPEC", "none"),
        ("ITMR_A_PORT", "uint16"),
        ("ITMR_A_MARK", "uint32"),
        ("ITMR_A_KEY", "cdata"),
        ("ITMR_A_ADDR", "cdata"),
        ("ITMR_A_FAMILY", "uint8"),
        ("ITMR_A_MTU", "uint16"),
        ("ITMR_A_ROUTE", "route"),
        ("ITMR_A_STATS", "stats"),
        ("ITMR_A_PID", "uint32"),
        ("ITMR_A_PAD", "none"),
    )
    route = route
    stats = stats
