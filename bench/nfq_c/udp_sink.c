// SPDX-License-Identifier: GPL-2.0
/*
 * udp_sink: the receiver of bench/libitm_queue.py, looking at the wire.
 *
 *   udp_sink IFNAME PORT SECONDS [-T TOS]
 *
 * Reads every IPv4 frame arriving on IFNAME with an AF_PACKET socket (before
 * the IP stack, so the counts are what the wire carried) for SECONDS, and
 * counts the UDP datagrams to PORT: all of them, those whose IPv4 header and
 * UDP checksums verify (computed here from the bytes), and those that also
 * carry TOS (-T, default: any).  The rate is taken between the first and the
 * last packet counted.  Prints one JSON line.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define VLEN 64
#define SNAP 256

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint32_t sum16(const unsigned char *p, int len, uint32_t s)
{
	int i;

	for (i = 0; i + 1 < len; i += 2)
		s += p[i] << 8 | p[i + 1];
	if (len & 1)
		s += p[len - 1] << 8;
	return s;
}

static int fold_ok(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return s == 0xffff;
}

int main(int argc, char **argv)
{
	unsigned long count = 0, valid = 0, tos_ok = 0, other = 0;
	int want_tos = -1, opt, fd, port, i;
	double seconds, end, first = 0, last = 0;
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP) };
	static unsigned char bufs[VLEN][SNAP];
	struct iovec iovs[VLEN];
	struct mmsghdr msgs[VLEN];
	struct timeval tv = { .tv_sec = 0, .tv_usec = 100000 };
	int rcvbuf = 32 << 20;

	while ((opt = getopt(argc, argv, "T:")) != -1) {
		if (opt != 'T')
			goto usage;
		want_tos = strtol(optarg, NULL, 0);
	}
	if (argc - optind != 3)
		goto usage;
	port = atoi(argv[optind + 1]);
	seconds = atof(argv[optind + 2]);
	sll.sll_ifindex = if_nametoindex(argv[optind]);
	if (!sll.sll_ifindex)
		goto usage;
	fd = socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_IP));
	if (fd < 0 || bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
		perror("socket/bind");
		return 1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	for (i = 0; i < VLEN; i++) {
		iovs[i].iov_base = bufs[i];
		iovs[i].iov_len = SNAP;
		memset(&msgs[i], 0, sizeof(msgs[i]));
		msgs[i].msg_hdr.msg_iov = &iovs[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	printf("READY\n");
	fflush(stdout);
	end = now() + seconds;
	while (now() < end) {
		int n = recvmmsg(fd, msgs, VLEN, MSG_WAITFORONE, NULL);
		double t = now();

		for (i = 0; i < n; i++) {
			unsigned char *ip = bufs[i];
			int len = msgs[i].msg_len, ihl, tot, ulen;
			unsigned char *udp;
			uint32_t s;

			if (len < 28 || (ip[0] >> 4) != 4 || ip[9] != 17) {
				other++;
				continue;
			}
			ihl = (ip[0] & 15) * 4;
			udp = ip + ihl;
			if (len < ihl + 8 || (udp[2] << 8 | udp[3]) != port) {
				other++;
				continue;
			}
			if (!count)
				first = t;
			last = t;
			count++;
			tot = ip[2] << 8 | ip[3];
			ulen = udp[4] << 8 | udp[5];
			if (tot > len || ulen != tot - ihl)
				continue;
			if (!fold_ok(sum16(ip, ihl, 0)))
				continue;
			/* pseudo-header: addresses, protocol, UDP length */
			s = sum16(ip + 12, 8, 17 + ulen);
			if (!(udp[6] == 0 && udp[7] == 0) && !fold_ok(sum16(udp, ulen, s)))
				continue;
			valid++;
			if (want_tos < 0 || ip[1] == want_tos)
				tos_ok++;
		}
	}
	printf("{\"count\": %lu, \"valid\": %lu, \"tos_ok\": %lu, \"other\": %lu, "
	       "\"seconds\": %.6f, \"pps\": %.0f}\n",
	       count, valid, tos_ok, other, last - first,
	       count > 1 && last > first ? (count - 1) / (last - first) : 0.0);
	return 0;
usage:
	fprintf(stderr, "usage: %s IFNAME PORT SECONDS [-T TOS]\n", argv[0]);
	return 2;
}
