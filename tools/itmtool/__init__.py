"""itmtool: the control utility of itmBench (status, enable/disable, VM, generator)."""
