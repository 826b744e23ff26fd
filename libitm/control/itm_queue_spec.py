"""Constants and pyroute2 message classes of the itm_queue generic netlink family.

Do not edit directly: generated from spec/itm_queue.yaml by tools/itmtool/nlgen.py.
"""

# mypy: disable-error-code="misc"

from pyroute2.netlink import NLA_F_NESTED, genlmsg, nla

FAMILY_NAME = "itm_queue"
FAMILY_VERSION = 1
ITMQ_QUEUE_DEFAULT_BASE = 28672

ITMQ_CMD_REGISTER = 1
ITMQ_CMD_UNREGISTER = 2

ITMQ_A_LABEL = 1
ITMQ_A_HOOK = 2
ITMQ_A_PRIORITY = 3
ITMQ_A_INTEREST = 4
ITMQ_A_QUEUE_NUM = 5
ITMQ_A_PID = 6
ITMQ_A_QUEUE_COUNT = 7
ITMQ_A_OBSERVER = 8
ITMQ_A_NAMES = (
    "ITMQ_A_UNSPEC",
    "ITMQ_A_LABEL",
    "ITMQ_A_HOOK",
    "ITMQ_A_PRIORITY",
    "ITMQ_A_INTEREST",
    "ITMQ_A_QUEUE_NUM",
    "ITMQ_A_PID",
    "ITMQ_A_QUEUE_COUNT",
    "ITMQ_A_OBSERVER",
)

ITMQ_A_INTEREST_FAMILY = 1
ITMQ_A_INTEREST_PROTOCOL = 2
ITMQ_A_INTEREST_SADDR = 3
ITMQ_A_INTEREST_SMASK = 4
ITMQ_A_INTEREST_DADDR = 5
ITMQ_A_INTEREST_DMASK = 6
ITMQ_A_INTEREST_SPORT_MIN = 7
ITMQ_A_INTEREST_SPORT_MAX = 8
ITMQ_A_INTEREST_DPORT_MIN = 9
ITMQ_A_INTEREST_DPORT_MAX = 10
ITMQ_A_INTEREST_NAMES = (
    "ITMQ_A_INTEREST_UNSPEC",
    "ITMQ_A_INTEREST_FAMILY",
    "ITMQ_A_INTEREST_PROTOCOL",
    "ITMQ_A_INTEREST_SADDR",
    "ITMQ_A_INTEREST_SMASK",
    "ITMQ_A_INTEREST_DADDR",
    "ITMQ_A_INTEREST_DMASK",
    "ITMQ_A_INTEREST_SPORT_MIN",
    "ITMQ_A_INTEREST_SPORT_MAX",
    "ITMQ_A_INTEREST_DPORT_MIN",
    "ITMQ_A_INTEREST_DPORT_MAX",
)


class interest(nla):
    """which packets the application wants (the layout of itm's interest)"""

    nla_flags = NLA_F_NESTED  # the kernel's strict validation wants the flag
    nla_map = (
        ("ITMQ_A_INTEREST_UNSPEC", "none"),
        ("ITMQ_A_INTEREST_FAMILY", "uint8"),
        ("ITMQ_A_INTEREST_PROTOCOL", "uint8"),
        ("ITMQ_A_INTEREST_SADDR", "cdata"),
        ("ITMQ_A_INTEREST_SMASK", "cdata"),
        ("ITMQ_A_INTEREST_DADDR", "cdata"),
        ("ITMQ_A_INTEREST_DMASK", "cdata"),
        ("ITMQ_A_INTEREST_SPORT_MIN", "uint16"),
        ("ITMQ_A_INTEREST_SPORT_MAX", "uint16"),
        ("ITMQ_A_INTEREST_DPORT_MIN", "uint16"),
        ("ITMQ_A_INTEREST_DPORT_MAX", "uint16"),
    )


class itm_queuemsg(genlmsg):
    """The message of every itm_queue command (the family's top-level attributes)."""

    nla_map = (
        ("ITMQ_A_UNSPEC", "none"),
        ("ITMQ_A_LABEL", "asciiz"),
        ("ITMQ_A_HOOK", "uint8"),
        ("ITMQ_A_PRIORITY", "int32"),
        ("ITMQ_A_INTEREST", "interest"),
        ("ITMQ_A_QUEUE_NUM", "uint16"),
        ("ITMQ_A_PID", "uint32"),
        ("ITMQ_A_QUEUE_COUNT", "uint16"),
        ("ITMQ_A_OBSERVER", "uint8"),
    )
    interest = interest
