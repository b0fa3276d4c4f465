// SPDX-License-Identifier: GPL-2.0
/*
 * raw_client: the first article's plain-socket client, modernised. It
 * echoes a message through a raw netlink unit with socket(), bind(),
 * sendmsg() and recvmsg(), and prints what user-raw prints:
 *
 *   $ cargo xtask vm --modules raw -- target/c-clients/raw_client "hello netlink"
 *   module raw: netlink unit 31, portid 118
 *   echo seq 1: sent 13 bytes, received 13 bytes: "hello netlink"
 *
 * Usage: raw_client [--module raw|kthread] [--unit N] [--subscribe [--count N]] [MESSAGE]
 * --module picks the unit (raw: 31, kmod-raw; kthread: 25, kmod-kthread)
 * and the name printed; --unit serves the C twins (30: kmod_c_raw,
 * 29: kmod_c_kthread). The message defaults to "hello netlink".
 *
 * --subscribe echoes nothing: it joins the unit's multicast group 1
 * (setsockopt(NETLINK_ADD_MEMBERSHIP)), where the module sends a copy of
 * every echo, and prints them until --count N came (forever without it):
 *
 *   $ raw_client --unit 30 --subscribe --count 1
 *   module raw: netlink unit 30, group 1, portid 1234
 *   event seq 5 portid 1240: "hello"
 *
 * with the echo's sequence number and its requester's port id. The first
 * line comes (flushed) once the socket is in the group: what is echoed
 * after it is seen. Lost events (the receive buffer overflowed) are
 * reported on stderr and the subscriber goes on.
 *
 * What changed from the article: the socket binds port id 0, so that the
 * kernel picks a free one (getpid() is taken when the process has another
 * netlink socket); the message is a request (NLM_F_REQUEST, type
 * NLMSG_MIN_TYPE instead of 0) of its own length, not a 1 KiB buffer; the
 * module replies to the port id the kernel recorded, whatever nlmsg_pid
 * says; the answer is read into a buffer that holds any of them and
 * checked (length, sequence number, type, the kernel's error with its
 * extended-ack message); a receive timeout replaces waiting forever; and
 * every failure is reported.
 */

#define _GNU_SOURCE /* strerrorname_np() */
#include <errno.h>
#include <linux/netlink.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "output.h"

#define ECHO_MSG_TYPE NLMSG_MIN_TYPE /* proto::ECHO_MSG_TYPE */
#define ARTICLES_MSG_TYPE 0 /* proto::ARTICLES_MSG_TYPE */
#define TIMEOUT_MS 5000

/* Room for any answer: an echo of 16 KiB, or an error that copies it. */
#define RECV_BUF_LEN (32 * 1024)

/* Prints the kernel's NLMSG_ERROR, with its extended-ack message, and exits. */
static void __attribute__((noreturn)) kernel_error(const struct nlmsghdr *nlh, unsigned int seq)
{
	const struct nlmsgerr *err = NLMSG_DATA(nlh);
	const char *msg = NULL;
	size_t off, msg_len = 0;

	if (nlh->nlmsg_len < NLMSG_LENGTH(sizeof(*err)))
		fail("echo seq %u: a truncated NLMSG_ERROR", seq);
	/* The TLVs follow the request's copy, or its header alone. */
	off = NLMSG_HDRLEN + sizeof(*err);
	if (!(nlh->nlmsg_flags & NLM_F_CAPPED))
		off += NLMSG_ALIGN(err->msg.nlmsg_len) - NLMSG_HDRLEN;
	if (nlh->nlmsg_flags & NLM_F_ACK_TLVS) {
		while (off + NLA_HDRLEN <= nlh->nlmsg_len) {
			const struct nlattr *nla = (const void *)((const char *)nlh + off);

			if (nla->nla_len < NLA_HDRLEN || off + nla->nla_len > nlh->nlmsg_len)
				break;
			if (nla->nla_type == NLMSGERR_ATTR_MSG) {
				msg = (const char *)nla + NLA_HDRLEN;
				msg_len = strnlen(msg, nla->nla_len - NLA_HDRLEN);
			}
			off += NLA_ALIGN(nla->nla_len);
		}
	}
	fail("echo seq %u: kernel replied %s (errno %d)%s%.*s", seq,
	     strerrorname_np(-err->error), -err->error, msg ? ": " : "",
	     (int)msg_len, msg ? msg : "");
}

/* ANCHOR: subscribe */
/*
 * --subscribe: joins RAW_GROUP and prints the copies of the echoes until
 * count came (0: forever).
 */
static void __attribute__((noreturn)) subscribe(int fd, const struct raw_args *args, __u32 portid)
{
	struct sockaddr_nl from;
	int group = RAW_GROUP;
	unsigned long seen = 0;
	struct iovec iov;
	struct msghdr msg = {
		.msg_name = &from,
		.msg_namelen = sizeof(from),
		.msg_iov = &iov,
		.msg_iovlen = 1,
	};
	char *buf = malloc(RECV_BUF_LEN);

	if (!buf)
		fail("out of memory");
	if (setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof(group)))
		fail("setsockopt(NETLINK_ADD_MEMBERSHIP, %d): %s", group, strerror(errno));
	printf("module %s: netlink unit %d, group %d, portid %u\n", args->module, args->unit, group,
	       portid);
	fflush(stdout);
	while (!args->count || seen < args->count) {
		struct nlmsghdr *nlh;
		ssize_t n;

		iov = (struct iovec) { buf, RECV_BUF_LEN };
		/* MSG_TRUNC: the length of the datagram, even if it did not fit. */
		n = recvmsg(fd, &msg, MSG_TRUNC);
		if (n < 0 && errno == ENOBUFS) {
			lost_events();
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			fail("recvmsg: %s", strerror(errno));
		if (msg.msg_flags & MSG_TRUNC)
			fail("a datagram of %zd bytes did not fit the receive buffer of %d bytes", n,
			     RECV_BUF_LEN);
		if (from.nl_pid != 0)
			continue; /* not from the kernel */
		for (nlh = (struct nlmsghdr *)buf; NLMSG_OK(nlh, n) && seen != args->count;
		     nlh = NLMSG_NEXT(nlh, n)) {
			if (nlh->nlmsg_type < NLMSG_MIN_TYPE && nlh->nlmsg_type != ARTICLES_MSG_TYPE)
				continue; /* a control message */
			print_raw_event(nlh->nlmsg_seq, nlh->nlmsg_pid, NLMSG_DATA(nlh),
					NLMSG_PAYLOAD(nlh, 0));
			seen++;
		}
	}
	free(buf);
	close(fd);
	exit(0);
}
/* ANCHOR_END: subscribe */

int main(int argc, char **argv)
{
	struct sockaddr_nl local = { .nl_family = AF_NETLINK };
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	struct timeval timeout = { .tv_sec = TIMEOUT_MS / 1000 };
	socklen_t addrlen = sizeof(local);
	const char *module, *message;
	struct raw_args args;
	int unit, fd, one = 1;
	struct nlmsghdr *nlh;
	struct iovec iov;
	struct msghdr msg = {
		.msg_name = &kernel,
		.msg_namelen = sizeof(kernel),
		.msg_iov = &iov,
		.msg_iovlen = 1,
	};
	unsigned int seq = 1;
	size_t len;
	ssize_t n;
	char *buf;

	client_name = "raw_client";
	args = parse_raw_args(argc, argv);
	module = args.module;
	message = args.message;
	unit = args.unit;
	len = strlen(message);

	/* A socket of the unit: there is none unless a module serves it. */
	fd = socket(AF_NETLINK, SOCK_RAW, unit);
	if (fd < 0 && errno == EPROTONOSUPPORT)
		fail("netlink unit %d not available: is %s loaded?", unit, module_for_unit(unit));
	if (fd < 0)
		fail("socket(AF_NETLINK, SOCK_RAW, %d): %s", unit, strerror(errno));
	/* Port id 0: the kernel picks a free one. */
	if (bind(fd, (struct sockaddr *)&local, sizeof(local)) ||
	    getsockname(fd, (struct sockaddr *)&local, &addrlen))
		fail("bind: %s", strerror(errno));
	if (args.subscribe)
		subscribe(fd, &args, local.nl_pid);
	/* The kernel's error messages explain themselves (extended acks). */
	if (setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one)) ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)))
		fail("setsockopt: %s", strerror(errno));

	/* The request: a header and the message, without its NUL. */
	buf = malloc(NLMSG_SPACE(len) < RECV_BUF_LEN ? RECV_BUF_LEN : NLMSG_SPACE(len));
	if (!buf)
		fail("out of memory");
	nlh = (struct nlmsghdr *)buf;
	*nlh = (struct nlmsghdr) {
		.nlmsg_len = NLMSG_LENGTH(len),
		.nlmsg_type = ECHO_MSG_TYPE,
		.nlmsg_flags = NLM_F_REQUEST,
		.nlmsg_seq = seq,
		.nlmsg_pid = 0, /* the kernel knows our port id */
	};
	memcpy(NLMSG_DATA(nlh), message, len);
	iov = (struct iovec) { buf, nlh->nlmsg_len };
	if (sendmsg(fd, &msg, 0) < 0)
		fail("echo seq %u: sendmsg: %s", seq, strerror(errno));

	/* The answer: the echo, or an error. */
	for (;;) {
		iov = (struct iovec) { buf, RECV_BUF_LEN };
		n = recvmsg(fd, &msg, 0);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			fail("echo seq %u: no reply from the kernel within %d ms: is the module answering?",
			     seq, TIMEOUT_MS);
		if (n < 0 && errno == ENOBUFS)
			fail("echo seq %u: receive buffer overrun (ENOBUFS)", seq);
		if (n < 0)
			fail("echo seq %u: recvmsg: %s", seq, strerror(errno));
		if (msg.msg_flags & MSG_TRUNC)
			fail("echo seq %u: the answer did not fit %d bytes", seq, RECV_BUF_LEN);
		for (nlh = (struct nlmsghdr *)buf; NLMSG_OK(nlh, n); nlh = NLMSG_NEXT(nlh, n)) {
			if (nlh->nlmsg_seq != seq)
				continue; /* not ours */
			if (nlh->nlmsg_type == NLMSG_ERROR)
				kernel_error(nlh, seq);
			if (nlh->nlmsg_type != ECHO_MSG_TYPE)
				fail("echo seq %u: a reply of type %u", seq, nlh->nlmsg_type);
			if (NLMSG_PAYLOAD(nlh, 0) != len || memcmp(NLMSG_DATA(nlh), message, len))
				fail("echo seq %u: the reply differs from the request (sent %zu bytes, received %u bytes)",
				     seq, len, NLMSG_PAYLOAD(nlh, 0));
			printf("module %s: netlink unit %d, portid %u\n", module, unit, local.nl_pid);
			print_echo(seq, len, NLMSG_DATA(nlh), NLMSG_PAYLOAD(nlh, 0));
			free(buf);
			close(fd);
			return 0;
		}
	}
}
