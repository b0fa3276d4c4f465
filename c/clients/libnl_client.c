// SPDX-License-Identifier: GPL-2.0
/*
 * libnl_client: the second article's libnl client, modernised. It echoes a
 * message through a raw netlink unit with libnl-3: nl_socket_alloc(),
 * nl_connect(), nl_send_simple() of type 0 (as the article sends it),
 * a NL_CB_MSG_IN callback and nl_recvmsgs_default(). It prints what
 * user-libnl-style --ack prints:
 *
 *   $ cargo xtask vm --modules raw -- target/c-clients/libnl_client "hello netlink"
 *   module raw: netlink unit 31, portid 1583734903
 *   echo seq 1764355245: sent 13 bytes, received 13 bytes: "hello netlink"
 *   ack seq 1764355245: ok
 *
 * The port id is one libnl picks (the process id, plus a number in the
 * high bits), and the sequence numbers start from the time, as libnl
 * starts them: the Rust clients start at 1.
 *
 * Usage: libnl_client [--module raw|kthread] [--unit N] [--subscribe [--count N]] [MESSAGE]
 * as raw_client's. --subscribe joins the unit's group 1 with
 * nl_socket_add_membership() and prints the copies of the echoes that the
 * module sends there, as raw_client --subscribe does; notifications carry
 * the echoes' sequence numbers, so libnl's sequence check is off.
 *
 * What changed from the article: libnl's auto-ack is on by default, so
 * nl_send_simple() sets NLM_F_REQUEST | NLM_F_ACK, and the module answers
 * with the echo and then an ack; the article read the echo only, here the
 * client reads both (its MSG_IN callback sees every message, the ack
 * included, and lets libnl handle the ack and errors). The message goes
 * without its NUL (the article sent sizeof); nl_send_simple() pads it to 4
 * bytes, which the byte counts leave out, and builds it in a page unless
 * nlmsg_set_default_size() allows more. The reply is checked, errors are
 * reported with their errno, a receive timeout replaces waiting forever,
 * and the socket is freed.
 */

#define _GNU_SOURCE /* strerrorname_np() */
#include <errno.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "output.h"

#define ARTICLES_MSG_TYPE 0	/* proto::ARTICLES_MSG_TYPE */
#define TIMEOUT_MS 5000

/* What the callback saw of the answers. */
struct echo {
	unsigned char *reply;
	size_t len;
	unsigned int seq;
	bool replied;
	bool acked;
	int error;	/* from an NLMSG_ERROR: a negative errno */
};

/* Called by nl_recvmsgs_default() for every message received. */
static int on_message(struct nl_msg *msg, void *arg)
{
	struct nlmsghdr *nlh = nlmsg_hdr(msg);
	struct echo *echo = arg;

	if (nlh->nlmsg_type == NLMSG_ERROR) {
		struct nlmsgerr *err = nlmsg_data(nlh);

		if (nlh->nlmsg_len < NLMSG_LENGTH(sizeof(*err)))
			return NL_SKIP;
		echo->seq = nlh->nlmsg_seq;
		if (err->error)
			echo->error = err->error;
		else
			echo->acked = true;
		/* libnl goes on: it counts the ack, or stops at the error. */
		return NL_OK;
	}
	free(echo->reply);
	echo->len = nlmsg_datalen(nlh);
	echo->reply = malloc(echo->len + 1);
	if (!echo->reply)
		return NL_STOP;
	memcpy(echo->reply, nlmsg_data(nlh), echo->len);
	echo->seq = nlh->nlmsg_seq;
	echo->replied = true;
	return NL_OK;
}

/* --subscribe: prints each copy of an echo, until the count. */
struct events {
	unsigned long seen;
	unsigned long count;	/* 0: forever */
};

static int on_event(struct nl_msg *msg, void *arg)
{
	struct nlmsghdr *nlh = nlmsg_hdr(msg);
	struct events *events = arg;

	print_raw_event(nlh->nlmsg_seq, nlh->nlmsg_pid, nlmsg_data(nlh), nlmsg_datalen(nlh));
	/* Stops nl_recvmsgs_default() at the last one wanted. */
	return ++events->seen == events->count ? NL_STOP : NL_OK;
}

static void __attribute__((noreturn)) subscribe(struct nl_sock *sk, const struct raw_args *args)
{
	struct events events = { .count = args->count };
	int err;

	/* Notifications are not answers: any sequence number goes. */
	nl_socket_disable_seq_check(sk);
	/* NL_CB_VALID: the messages that are not errors, acks or NLMSG_DONE. */
	err = nl_socket_modify_cb(sk, NL_CB_VALID, NL_CB_CUSTOM, on_event, &events);
	if (err < 0)
		fail("nl_socket_modify_cb: %s", nl_geterror(err));
	err = nl_socket_add_membership(sk, RAW_GROUP);
	if (err < 0)
		fail("nl_socket_add_membership(%d): %s", RAW_GROUP, nl_geterror(err));
	printf("module %s: netlink unit %d, group %d, portid %u\n", args->module, args->unit,
	       RAW_GROUP, nl_socket_get_local_port(sk));
	fflush(stdout);
	while (!events.count || events.seen < events.count) {
		err = nl_recvmsgs_default(sk);
		/* libnl reports recvmsg()'s ENOBUFS as NLE_NOMEM. */
		if (err == -NLE_NOMEM && errno == ENOBUFS)
			lost_events();
		else if (err < 0)
			fail("nl_recvmsgs_default: %s", nl_geterror(err));
	}
	nl_socket_free(sk);
	exit(0);
}

int main(int argc, char **argv)
{
	struct timeval timeout = { .tv_sec = TIMEOUT_MS / 1000 };
	struct echo echo = { 0 };
	struct nl_sock *sk;
	const char *module, *message;
	struct raw_args args;
	int unit, err;
	size_t len;

	client_name = "libnl_client";
	args = parse_raw_args(argc, argv);
	module = args.module;
	message = args.message;
	unit = args.unit;
	len = strlen(message);

	/* Create the socket and bind it to a port id libnl picks. */
	sk = nl_socket_alloc();
	if (!sk)
		fail("nl_socket_alloc: out of memory");
	err = nl_connect(sk, unit);
	if (err < 0)
		fail("nl_connect(%d): %s: is %s loaded?", unit, nl_geterror(err),
		     module_for_unit(unit));
	if (args.subscribe)
		subscribe(sk, &args);
	if (setsockopt(nl_socket_get_fd(sk), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)))
		fail("setsockopt: %s", strerror(errno));
	/* Every message received goes to on_message() first. */
	err = nl_socket_modify_cb(sk, NL_CB_MSG_IN, NL_CB_CUSTOM, on_message, &echo);
	if (err < 0)
		fail("nl_socket_modify_cb: %s", nl_geterror(err));

	/* Type 0, flags 0: libnl adds NLM_F_REQUEST and, for auto-ack, NLM_F_ACK. */
	if (NLMSG_SPACE(len) > (size_t)getpagesize())
		nlmsg_set_default_size(NLMSG_SPACE(len)); /* else a page */
	err = nl_send_simple(sk, ARTICLES_MSG_TYPE, 0, (void *)message, len);
	if (err < 0)
		fail("nl_send_simple: %s", nl_geterror(err));

	/* Receive until the ack: the echo comes first, in a datagram of its own. */
	while (!echo.acked) {
		err = nl_recvmsgs_default(sk);
		if (echo.error)
			fail("echo seq %u: kernel replied %s (errno %d)", echo.seq,
			     strerrorname_np(-echo.error), -echo.error);
		if (err == -NLE_AGAIN)
			fail("no reply from the kernel within %d ms: is the module answering?",
			     TIMEOUT_MS);
		if (err < 0)
			fail("nl_recvmsgs_default: %s", nl_geterror(err));
	}
	if (!echo.replied)
		fail("echo seq %u: acked, but no echo came", echo.seq);
	/*
	 * nl_send_simple() appends the message padded to 4 bytes with zeros
	 * (nlmsg_append() with NLMSG_ALIGNTO), and nlmsg_len counts the
	 * padding: the module echoes it too (16 bytes for "hello netlink").
	 * The byte counts are the message's, as the Rust clients count them.
	 */
	if (echo.len != NLMSG_ALIGN(len) || memcmp(echo.reply, message, len) ||
	    memcmp(echo.reply + len, "\0\0\0", echo.len - len))
		fail("echo seq %u: the reply differs from the request (sent %zu bytes, received %zu bytes)",
		     echo.seq, NLMSG_ALIGN(len), echo.len);

	printf("module %s: netlink unit %d, portid %u\n", module, unit,
	       nl_socket_get_local_port(sk));
	print_echo(echo.seq, len, echo.reply, len);
	printf("ack seq %u: ok\n", echo.seq);
	free(echo.reply);
	nl_socket_free(sk);
	return 0;
}
