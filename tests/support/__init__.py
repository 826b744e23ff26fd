"""Helpers that test files import (test files never import each other).

* :mod:`tests.support.packets`: IPv4/IPv6 packets with right checksums, pcap
  files, reference checksums;
* :mod:`tests.support.netns_pair`: the libitm host tests' namespaces
  (NetPair, RoutedPair), their helper processes and rule inspection.
"""
