// SPDX-License-Identifier: GPL-2.0
/*
 * libnl_genl_client: the second article's libnl-genl client, modernised.
 * It echoes a message through the generic netlink family my_genl
 * (kmod-genl) with libnl-genl-3: genl_connect(), genl_ctrl_resolve(),
 * genlmsg_put() of ECHO with nla_put_string() of MSG, nl_send_auto(), and
 * nl_recvmsgs_default() with a callback that parses MSG. It prints what
 * user-libnl-style --module genl --ack prints:
 *
 *   $ cargo xtask vm --modules genl -- target/c-clients/libnl_genl_client "hello netlink"
 *   module genl: family my_genl id 25, portid 1583734903
 *   echo seq 1764355246: sent 13 bytes, received 13 bytes: "hello netlink"
 *   ack seq 1764355246: ok
 *
 * The port id is one libnl picks, and the sequence numbers start from the
 * time, as libnl starts them (the family's resolution took the first): the
 * Rust clients start at 1. The byte counts leave out the NUL.
 *
 * Usage: libnl_genl_client [--family NAME] [MESSAGE]
 * --family defaults to my_genl; kmod_c_genl's is c_genl.
 *
 * What changed from the article: the reply callback is NL_CB_VALID, which
 * libnl calls for data messages only (the article's NL_CB_MSG_IN saw the
 * ack too, and had to tell it apart); it parses the reply with
 * genlmsg_parse() and a policy; errors go to an error callback, which
 * keeps the kernel's errno; libnl's auto-ack is on, so the client waits
 * for the ack after the reply instead of leaving it unread; the message
 * buffer is sized for the string (nlmsg_alloc() gives a page); a receive
 * timeout replaces waiting forever; and every failure is reported.
 */

#define _GNU_SOURCE /* strerrorname_np() */
#include <errno.h>
#include <getopt.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <netlink/netlink.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "output.h"

/* The family's contract, as the article defines it (proto/src/wire.rs). */
enum {
	EXMPL_A_UNSPEC,
	EXMPL_A_MSG,
	__EXMPL_A_MAX,
};
#define EXMPL_A_MAX (__EXMPL_A_MAX - 1)
#define EXMPL_C_ECHO 1
#define FAMILY_NAME "my_genl"
#define FAMILY_VERSION 1
#define TIMEOUT_MS 5000

static struct nla_policy echo_policy[EXMPL_A_MAX + 1] = {
	[EXMPL_A_MSG] = { .type = NLA_STRING },
};

static const char usage[] = "[--family NAME] [MESSAGE]";

/* What the callbacks saw of the answers. */
struct echo {
	char *reply;
	unsigned int seq;
	bool replied;
	bool acked;
	int error;	/* from an NLMSG_ERROR: a negative errno */
	const char *bad_reply;
};

/* The reply: parse it and keep its MSG. */
static int on_reply(struct nl_msg *msg, void *arg)
{
	struct nlmsghdr *nlh = nlmsg_hdr(msg);
	struct nlattr *attrs[EXMPL_A_MAX + 1];
	struct echo *echo = arg;

	if (genlmsg_parse(nlh, 0, attrs, EXMPL_A_MAX, echo_policy) < 0) {
		echo->bad_reply = "a reply that does not parse";
		return NL_STOP;
	}
	if (!attrs[EXMPL_A_MSG]) {
		echo->bad_reply = "a reply without MSG";
		return NL_STOP;
	}
	free(echo->reply);
	echo->reply = strdup(nla_get_string(attrs[EXMPL_A_MSG]));
	if (!echo->reply) {
		echo->bad_reply = "out of memory";
		return NL_STOP;
	}
	echo->replied = true;
	return NL_OK;
}

/* The ack, which libnl's auto-ack asked for. */
static int on_ack(struct nl_msg *msg, void *arg)
{
	struct echo *echo = arg;

	(void)msg;
	echo->acked = true;
	return NL_STOP;
}

/* An error: keep the kernel's errno; nl_recvmsgs_default() then fails. */
static int on_error(struct sockaddr_nl *from, struct nlmsgerr *err, void *arg)
{
	struct echo *echo = arg;

	(void)from;
	echo->error = err->error;
	return NL_STOP;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "family", required_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 },
	};
	const char *family = FAMILY_NAME, *message = "hello netlink";
	struct timeval timeout = { .tv_sec = TIMEOUT_MS / 1000 };
	struct echo echo = { 0 };
	struct nl_sock *sk;
	struct nl_msg *msg;
	int id, opt, err;
	size_t len;

	client_name = "libnl_genl_client";
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		if (opt != 'f')
			usage_error("unknown switch", usage);
		family = optarg;
	}
	if (optind + 1 < argc)
		usage_error("one message at most", usage);
	if (optind < argc)
		message = argv[optind];
	len = strlen(message);

	/* A NETLINK_GENERIC socket, and the family's id from the controller. */
	sk = nl_socket_alloc();
	if (!sk)
		fail("nl_socket_alloc: out of memory");
	err = genl_connect(sk);
	if (err < 0)
		fail("genl_connect: %s", nl_geterror(err));
	if (setsockopt(nl_socket_get_fd(sk), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)))
		fail("setsockopt: %s", strerror(errno));
	id = genl_ctrl_resolve(sk, family);
	if (id < 0)
		fail("generic netlink family %s not found (%s): is %s loaded?", family,
		     nl_geterror(id), module_for_family(family));
	if (nl_socket_modify_cb(sk, NL_CB_VALID, NL_CB_CUSTOM, on_reply, &echo) < 0 ||
	    nl_socket_modify_cb(sk, NL_CB_ACK, NL_CB_CUSTOM, on_ack, &echo) < 0 ||
	    nl_socket_modify_err_cb(sk, NL_CB_CUSTOM, on_error, &echo) < 0)
		fail("nl_socket_modify_cb: out of memory");

	/* ECHO, version 1, with MSG: the string and its NUL. */
	msg = nlmsg_alloc_size(nlmsg_total_size(GENL_HDRLEN + nla_total_size(len + 1)));
	if (!msg)
		fail("nlmsg_alloc_size: out of memory");
	if (!genlmsg_put(msg, NL_AUTO_PORT, NL_AUTO_SEQ, id, 0, 0, EXMPL_C_ECHO,
			 FAMILY_VERSION) ||
	    nla_put_string(msg, EXMPL_A_MSG, message) < 0)
		fail("building the request: the message does not fit");
	/* libnl adds our port id, the next sequence number, NLM_F_REQUEST and NLM_F_ACK. */
	err = nl_send_auto(sk, msg);
	echo.seq = nlmsg_hdr(msg)->nlmsg_seq;
	nlmsg_free(msg);
	if (err < 0)
		fail("echo seq %u: nl_send_auto: %s", echo.seq, nl_geterror(err));

	/* The reply comes first, then the ack, each in a datagram of its own. */
	while (!echo.acked) {
		err = nl_recvmsgs_default(sk);
		if (echo.error)
			fail("echo seq %u: kernel replied %s (errno %d)", echo.seq,
			     strerrorname_np(-echo.error), -echo.error);
		if (echo.bad_reply)
			fail("echo seq %u: %s", echo.seq, echo.bad_reply);
		if (err == -NLE_AGAIN)
			fail("echo seq %u: no reply from the kernel within %d ms: is the module answering?",
			     echo.seq, TIMEOUT_MS);
		if (err < 0)
			fail("echo seq %u: nl_recvmsgs_default: %s", echo.seq, nl_geterror(err));
	}
	if (!echo.replied)
		fail("echo seq %u: acked, but no reply came", echo.seq);
	if (strcmp(echo.reply, message))
		fail("echo seq %u: the reply differs from the request (sent %zu bytes, received %zu bytes)",
		     echo.seq, len, strlen(echo.reply));

	printf("module genl: family %s id %d, portid %u\n", family, id,
	       nl_socket_get_local_port(sk));
	print_echo(echo.seq, len, echo.reply, strlen(echo.reply));
	printf("ack seq %u: ok\n", echo.seq);
	free(echo.reply);
	nl_socket_free(sk);
	return 0;
}
