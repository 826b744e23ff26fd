// SPDX-License-Identifier: GPL-2.0
/*
 * qos_mod's flow table, compiled unchanged into itm_bench_qosnf, the
 * hand-written netfilter anchor of bench.qos_cost.
 */
#include "../qos_mod/flows.c"
