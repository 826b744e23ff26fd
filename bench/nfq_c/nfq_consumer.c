// SPDX-License-Identifier: GPL-2.0
/*
 * nfq_consumer: the C anchor of bench/libitm_queue.py, on libnetfilter_queue.
 *
 *   nfq_consumer -q QUEUE [-m accept|tos] [-b] [-l MAXLEN] [-r RCVBUF] [-T TOS]
 *
 * Binds QUEUE (whole packets), prints "READY" on stdout and answers every
 * packet: accept, or set the IPv4 TOS byte to TOS (default 0x28) with an
 * incremental header checksum fix and return the packet with the verdict.
 *
 * Per-packet mode (default): one verdict message and one send per packet
 * (nfq_set_verdict).  Batched mode (-b): the socket is read until it would
 * block (or 256 packets); accepted packets are then answered by one
 * NFQNL_MSG_VERDICT_BATCH (nfq_set_verdict_batch); modified packets get their
 * own NFQNL_MSG_VERDICT with the payload, all of them written into one buffer
 * sent with a single send() before the batch verdict.
 *
 * On SIGTERM/SIGINT it prints one JSON line with its counters and exits.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <linux/netlink.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <libnetfilter_queue/libnetfilter_queue.h>

#define BATCH 256
#define OUTBUF (BATCH * 2048)

static volatile sig_atomic_t stop;
static int tos_mode, batch_mode;
static uint8_t new_tos = 0x28;
static unsigned long packets, modified, enobufs, sends;
static uint32_t last_accept_id;
static int have_accept;
static unsigned char outbuf[OUTBUF];
static size_t outlen;
static uint16_t qnum;
static int nl_fd;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

/* RFC 1624: the 16-bit word at byte 0..1 of the header changed from old to new */
static void set_tos(unsigned char *ip)
{
	uint16_t old = (uint16_t)(ip[0] << 8 | ip[1]);
	uint16_t nw = (uint16_t)(ip[0] << 8 | new_tos);
	uint32_t sum = (uint16_t)~(ip[10] << 8 | ip[11]);

	sum += (uint16_t)~old;
	sum += nw;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	sum = ~sum & 0xffff;
	ip[1] = new_tos;
	ip[10] = sum >> 8;
	ip[11] = sum & 0xff;
}

/* append an NFQNL_MSG_VERDICT with the payload to outbuf (batched mode) */
static void put_verdict(uint32_t id, const unsigned char *data, int len)
{
	struct nlmsghdr *nlh = (struct nlmsghdr *)(outbuf + outlen);
	struct nfgenmsg *nfg = (struct nfgenmsg *)NLMSG_DATA(nlh);
	struct nlattr *a = (struct nlattr *)((char *)nfg + NLMSG_ALIGN(sizeof(*nfg)));
	struct nfqnl_msg_verdict_hdr *vh = (struct nfqnl_msg_verdict_hdr *)(a + 1);
	size_t size;

	nlh->nlmsg_type = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_VERDICT;
	nlh->nlmsg_flags = NLM_F_REQUEST;
	nlh->nlmsg_seq = 0;
	nlh->nlmsg_pid = 0;
	nfg->nfgen_family = AF_UNSPEC;
	nfg->version = NFNETLINK_V0;
	nfg->res_id = htons(qnum);
	a->nla_len = NLA_HDRLEN + sizeof(*vh);
	a->nla_type = NFQA_VERDICT_HDR;
	vh->verdict = htonl(NF_ACCEPT);
	vh->id = htonl(id);
	a = (struct nlattr *)((char *)a + NLA_ALIGN(a->nla_len));
	a->nla_len = NLA_HDRLEN + len;
	a->nla_type = NFQA_PAYLOAD;
	memcpy(a + 1, data, len);
	size = (char *)(a + 1) + len - (char *)nlh;
	nlh->nlmsg_len = size;
	outlen += NLMSG_ALIGN(size);
}

static void flush(struct nfq_q_handle *qh, int fd)
{
	if (outlen) {
		if (send(fd, outbuf, outlen, 0) < 0)
			perror("send");
		sends++;
		outlen = 0;
	}
	if (have_accept) {
		nfq_set_verdict_batch(qh, last_accept_id, NF_ACCEPT);
		sends++;
		have_accept = 0;
	}
}

static int cb(struct nfq_q_handle *qh, struct nfgenmsg *nfmsg, struct nfq_data *nfa, void *data)
{
	struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
	unsigned char *pl;
	uint32_t id;
	int len;

	(void)nfmsg;
	(void)data;
	if (!ph)
		return 0;
	id = ntohl(ph->packet_id);
	packets++;
	if (tos_mode) {
		len = nfq_get_payload(nfa, &pl);
		if (len >= 20 && (pl[0] >> 4) == 4 && pl[1] != new_tos) {
			set_tos(pl);
			modified++;
			if (batch_mode) {
				put_verdict(id, pl, len);
				if (outlen > OUTBUF - 2048)
					flush(qh, nl_fd);
				return 0;
			}
			sends++;
			return nfq_set_verdict(qh, id, NF_ACCEPT, len, pl);
		}
	}
	if (batch_mode) {
		last_accept_id = id;
		have_accept = 1;
		return 0;
	}
	sends++;
	return nfq_set_verdict(qh, id, NF_ACCEPT, 0, NULL);
}

int main(int argc, char **argv)
{
	unsigned int maxlen = 4096, rcvbuf = 64 << 20;
	struct nfq_handle *h;
	struct nfq_q_handle *qh;
	static char buf[0x10000] __attribute__((aligned));
	int opt, fd, q = -1;
	struct sigaction sa;

	while ((opt = getopt(argc, argv, "q:m:bl:r:T:")) != -1) {
		switch (opt) {
		case 'q':
			q = atoi(optarg);
			break;
		case 'm':
			tos_mode = !strcmp(optarg, "tos");
			break;
		case 'b':
			batch_mode = 1;
			break;
		case 'l':
			maxlen = strtoul(optarg, NULL, 0);
			break;
		case 'r':
			rcvbuf = strtoul(optarg, NULL, 0);
			break;
		case 'T':
			new_tos = strtoul(optarg, NULL, 0);
			break;
		default:
			fprintf(stderr, "usage: %s -q QUEUE [-m accept|tos] [-b] [-l MAXLEN] [-r RCVBUF] [-T TOS]\n",
				argv[0]);
			return 2;
		}
	}
	if (q < 0) {
		fprintf(stderr, "nfq_consumer: -q QUEUE is required\n");
		return 2;
	}
	qnum = q;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal; /* no SA_RESTART: recv returns EINTR */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	h = nfq_open();
	if (!h) {
		perror("nfq_open");
		return 1;
	}
	qh = nfq_create_queue(h, q, &cb, NULL);
	if (!qh) {
		perror("nfq_create_queue");
		return 1;
	}
	if (nfq_set_mode(qh, NFQNL_COPY_PACKET, 0xffff) < 0) {
		perror("nfq_set_mode");
		return 1;
	}
	nfq_set_queue_maxlen(qh, maxlen);
	nfnl_rcvbufsiz(nfq_nfnlh(h), rcvbuf);
	fd = nfq_fd(h);
	nl_fd = fd;
	printf("READY\n");
	fflush(stdout);

	while (!stop) {
		int n, handled = 0;

		n = recv(fd, buf, sizeof(buf), 0);
		while (n >= 0 || errno == ENOBUFS) {
			if (n >= 0) {
				nfq_handle_packet(h, buf, n);
				if (!batch_mode || ++handled >= BATCH)
					break;
			} else {
				enobufs++;
			}
			n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR && errno != ENOBUFS) {
			perror("recv");
			break;
		}
		if (batch_mode)
			flush(qh, fd);
	}
	if (batch_mode)
		flush(qh, fd);
	printf("{\"packets\": %lu, \"modified\": %lu, \"enobufs\": %lu, \"sends\": %lu}\n",
	       packets, modified, enobufs, sends);
	fflush(stdout);
	nfq_destroy_queue(qh);
	nfq_close(h);
	return 0;
}
