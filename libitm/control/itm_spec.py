"""Constants and pyroute2 message classes of the itm generic netlink family.

Do not edit directly: generated from spec/itm.yaml by tools/itmtool/nlgen.py.
"""

# mypy: disable-error-code="misc"

from pyroute2.netlink import NLA_F_NESTED, genlmsg, nla

FAMILY_NAME = "itm"
FAMILY_VERSION = 1
ITM_LABEL_MAX = 32

ITM_HOOK_PRE_ROUTING = 0
ITM_HOOK_IP_IN = 1
ITM_HOOK_IP_FORWARD = 2
ITM_HOOK_IP_OUT = 3
ITM_HOOK_POST_ROUTING = 4
ITM_HOOK_NAMES = ("pre_routing", "ip_in", "ip_forward", "ip_out", "post_routing")

ITM_VERDICT_DROP = 0
ITM_VERDICT_ACCEPT = 1
ITM_VERDICT_STOLEN = 2
ITM_VERDICT_QUEUE = 3
ITM_VERDICT_NAMES = ("drop", "accept", "stolen", "queue")

ITM_TYPE_KERNEL = 0
ITM_TYPE_USER = 1
ITM_TYPE_NAMES = ("kernel", "user")

ITM_CMD_APP_GET = 1
ITM_CMD_APP_SET = 2
ITM_CMD_NETNS_GET = 3
ITM_CMD_NETNS_SET = 4

ITM_A_LABEL = 1
ITM_A_TYPE = 2
ITM_A_HOOK = 3
ITM_A_PRIORITY = 4
ITM_A_ENABLED = 5
ITM_A_PID = 6
ITM_A_OWNER = 7
ITM_A_QUEUE_NUM = 8
ITM_A_ORDER = 9
ITM_A_INTEREST = 10
ITM_A_STATS = 11
ITM_A_PAD = 12
ITM_A_NETNS_ACTIVE = 13
ITM_A_QUEUE_COUNT = 14
ITM_A_NETNS_HOOKS = 15
ITM_A_NAMES = (
    "ITM_A_UNSPEC",
    "ITM_A_LABEL",
    "ITM_A_TYPE",
    "ITM_A_HOOK",
    "ITM_A_PRIORITY",
    "ITM_A_ENABLED",
    "ITM_A_PID",
    "ITM_A_OWNER",
    "ITM_A_QUEUE_NUM",
    "ITM_A_ORDER",
    "ITM_A_INTEREST",
    "ITM_A_STATS",
    "ITM_A_PAD",
    "ITM_A_NETNS_ACTIVE",
    "ITM_A_QUEUE_COUNT",
    "ITM_A_NETNS_HOOKS",
)

ITM_A_INTEREST_FAMILY = 1
ITM_A_INTEREST_PROTOCOL = 2
ITM_A_INTEREST_SADDR = 3
ITM_A_INTEREST_SMASK = 4
ITM_A_INTEREST_DADDR = 5
ITM_A_INTEREST_DMASK = 6
ITM_A_INTEREST_SPORT_MIN = 7
ITM_A_INTEREST_SPORT_MAX = 8
ITM_A_INTEREST_DPORT_MIN = 9
ITM_A_INTEREST_DPORT_MAX = 10
ITM_A_INTEREST_NAMES = (
    "ITM_A_INTEREST_UNSPEC",
    "ITM_A_INTEREST_FAMILY",
    "ITM_A_INTEREST_PROTOCOL",
    "ITM_A_INTEREST_SADDR",
    "ITM_A_INTEREST_SMASK",
    "ITM_A_INTEREST_DADDR",
    "ITM_A_INTEREST_DMASK",
    "ITM_A_INTEREST_SPORT_MIN",
    "ITM_A_INTEREST_SPORT_MAX",
    "ITM_A_INTEREST_DPORT_MIN",
    "ITM_A_INTEREST_DPORT_MAX",
)

ITM_A_STATS_SEEN = 1
ITM_A_STATS_MATCHED = 2
ITM_A_STATS_CLASSIFIED = 3
ITM_A_STATS_ACCEPT = 4
ITM_A_STATS_DROP = 5
ITM_A_STATS_STOLEN = 6
ITM_A_STATS_QUEUE = 7
ITM_A_STATS_BYTES = 8
ITM_A_STATS_TIME_NS = 9
ITM_A_STATS_PAD = 10
ITM_A_STATS_NAMES = (
    "ITM_A_STATS_UNSPEC",
    "ITM_A_STATS_SEEN",
    "ITM_A_STATS_MATCHED",
    "ITM_A_STATS_CLASSIFIED",
    "ITM_A_STATS_ACCEPT",
    "ITM_A_STATS_DROP",
    "ITM_A_STATS_STOLEN",
    "ITM_A_STATS_QUEUE",
    "ITM_A_STATS_BYTES",
    "ITM_A_STATS_TIME_NS",
    "ITM_A_STATS_PAD",
)


class stats(nla):
    """per-application counters, summed over CPUs"""

    nla_flags = NLA_F_NESTED  # the kernel's strict validation wants the flag
    nla_map = (
        ("ITM_A_STATS_UNSPEC", "none"),
        ("ITM_A_STATS_SEEN", "uint64"),
        ("ITM_A_STATS_MATCHED", "uint64"),
        ("ITM_A_STATS_CLASSIFIED", "uint64"),
        ("ITM_A_STATS_ACCEPT", "uint64"),
        ("ITM_A_STATS_DROP", "uint64"),
        ("ITM_A_STATS_STOLEN", "uint64"),
        ("ITM_A_STATS_QUEUE", "uint64"),
        ("ITM_A_STATS_BYTES", "uint64"),
        ("ITM_A_STATS_TIME_NS", "uint64"),
        ("ITM_A_STATS_PAD", "none"),
    )


class interest(nla):
    """which packets an application wants"""

    nla_flags = NLA_F_NESTED  # the kernel's strict validation wants the flag
    nla_map = (
        ("ITM_A_INTEREST_UNSPEC", "none"),
        ("ITM_A_INTEREST_FAMILY", "uint8"),
        ("ITM_A_INTEREST_PROTOCOL", "uint8"),
        ("ITM_A_INTEREST_SADDR", "cdata"),
        ("ITM_A_INTEREST_SMASK", "cdata"),
        ("ITM_A_INTEREST_DADDR", "cdata"),
        ("ITM_A_INTEREST_DMASK", "cdata"),
        ("ITM_A_INTEREST_SPORT_MIN", "uint16"),
        ("ITM_A_INTEREST_SPORT_MAX", "uint16"),
        ("ITM_A_INTEREST_DPORT_MIN", "uint16"),
        ("ITM_A_INTEREST_DPORT_MAX", "uint16"),
    )


class itmmsg(genlmsg):
    """The message of every itm command (the family's top-level attributes)."""

    nla_map = (
        ("ITM_A_UNSPEC", "none"),
        ("ITM_A_LABEL", "asciiz"),
        ("ITM_A_TYPE", "uint8"),
        ("ITM_A_HOOK", "uint8"),
        ("ITM_A_PRIORITY", "int32"),
        ("ITM_A_ENABLED", "uint8"),
        ("ITM_A_PID", "uint32"),
        ("ITM_A_OWNER", "asciiz"),
        ("ITM_A_QUEUE_NUM", "uint16"),
        ("ITM_A_ORDER", "uint32"),
        ("ITM_A_INTEREST", "interest"),
        ("ITM_A_STATS", "stats"),
        ("ITM_A_PAD", "none"),
        ("ITM_A_NETNS_ACTIVE", "uint8"),
        ("ITM_A_QUEUE_COUNT", "uint16"),
        ("ITM_A_NETNS_HOOKS", "uint32"),
    )
    interest = interest
    stats = stats
