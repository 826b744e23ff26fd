// SPDX-License-Identifier: GPL-2.0
/*
 * udp_blast: the sender of bench/libitm_queue.py.
 *
 *   udp_blast DST PORT (-n COUNT | -d SECONDS) [-s SIZE] [-p PPS]
 *
 * Sends UDP datagrams of SIZE bytes of IP length (default 64) to DST:PORT with
 * sendmmsg, 64 at a time, either COUNT of them or for SECONDS at full rate
 * (or about PPS per second when -p is given).  Prints one JSON line.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define VLEN 64

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	unsigned long count = 0, sent = 0, errors = 0;
	double seconds = 0, pps = 0, t0, t, end;
	int size = 64, opt, fd, i;
	struct sockaddr_in sin = { .sin_family = AF_INET };
	static char payload[2048];
	struct mmsghdr msgs[VLEN];
	struct iovec iov;

	while ((opt = getopt(argc, argv, "n:d:s:p:")) != -1) {
		switch (opt) {
		case 'n':
			count = strtoul(optarg, NULL, 0);
			break;
		case 'd':
			seconds = atof(optarg);
			break;
		case 's':
			size = atoi(optarg);
			break;
		case 'p':
			pps = atof(optarg);
			break;
		default:
			goto usage;
		}
	}
	if (argc - optind != 2 || (!count && seconds <= 0) || size < 28 || size > 1500)
		goto usage;
	if (inet_pton(AF_INET, argv[optind], &sin.sin_addr) != 1)
		goto usage;
	sin.sin_port = htons(atoi(argv[optind + 1]));
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		perror("socket/connect");
		return 1;
	}
	memset(payload, 'x', sizeof(payload));
	iov.iov_base = payload;
	iov.iov_len = size - 28;
	memset(msgs, 0, sizeof(msgs));
	for (i = 0; i < VLEN; i++) {
		msgs[i].msg_hdr.msg_iov = &iov;
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	t0 = now();
	end = t0 + seconds;
	for (;;) {
		int want = VLEN, n;

		if (count) {
			if (sent >= count)
				break;
			if (count - sent < VLEN)
				want = count - sent;
		}
		n = sendmmsg(fd, msgs, want, 0);
		if (n < 0) {
			errors++;
			if (errno != ENOBUFS && errno != EAGAIN && errno != ECONNREFUSED)
				break;
		} else {
			sent += n;
		}
		t = now();
		if (!count && t >= end)
			break;
		if (pps > 0) {
			double due = t0 + sent / pps;

			while (now() < due)
				;
		}
	}
	t = now() - t0;
	printf("{\"sent\": %lu, \"seconds\": %.6f, \"pps\": %.0f, \"errors\": %lu}\n",
	       sent, t, sent / t, errors);
	return 0;
usage:
	fprintf(stderr, "usage: %s DST PORT (-n COUNT | -d SECONDS) [-s SIZE] [-p PPS]\n", argv[0]);
	return 2;
}
