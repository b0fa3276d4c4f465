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
 * Usage: libnl_genl_client [--family NAME] [--dump | --subscribe [--count N] | MESSAGE]
 * --family defaults to my_genl; kmod_c_genl's is c_genl.
 *
 * --dump reads the family's echo log: GET with NLM_F_DUMP, an NL_CB_VALID
 * callback for each entry (NLM_F_MULTI, libnl reads on until NLMSG_DONE)
 * and NL_CB_FINISH for NLMSG_DONE; NL_CB_DUMP_INTR notes a message flagged
 * NLM_F_DUMP_INTR (the log changed during the dump), which fails the run
 * after the last line:
 *
 *   $ libnl_genl_client --family c_genl --dump
 *   module genl: family c_genl id 26, portid 1234
 *   entry id 1 portid 1230: "hello"
 *   entry id 2 portid 1231: "hello netlink"
 *   done seq 1: 2 entries
 *
 * --subscribe joins the family's group "events" (genl_ctrl_resolve_grp(),
 * nl_socket_add_membership()) and prints each echo's notification until
 * --count N came (forever without it); the first line comes (flushed) once
 * the socket is in the group:
 *
 *   $ libnl_genl_client --family c_genl --subscribe --count 2
 *   module genl: family c_genl id 26, group events id 27, portid 1234
 *   event id 3 portid 1240: "hello"
 *   event id 4 portid 1241: "hi"
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

/* The family's contract, as the article defines it, and the echo log's (proto/src/wire.rs). */
enum {
	EXMPL_A_UNSPEC,
	EXMPL_A_MSG,
	EXMPL_A_ID,
	EXMPL_A_PORTID,
	__EXMPL_A_MAX,
};
#define EXMPL_A_MAX (__EXMPL_A_MAX - 1)
#define EXMPL_C_ECHO 1
#define EXMPL_C_GET 2
#define EXMPL_C_EVENT 3
#define FAMILY_NAME "my_genl"
#define FAMILY_VERSION 1
#define MCGRP_EVENTS "events"
#define TIMEOUT_MS 5000

static struct nla_policy echo_policy[EXMPL_A_MAX + 1] = {
	[EXMPL_A_MSG] = { .type = NLA_STRING },
	[EXMPL_A_ID] = { .type = NLA_U32 },
	[EXMPL_A_PORTID] = { .type = NLA_U32 },
};

static const char usage[] = "[--family NAME] [--dump | --subscribe [--count N] | MESSAGE]";

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

/* An entry of the echo log, in a GET reply, a dump or an event. */
struct entry {
	unsigned int id;
	unsigned int portid;
	const char *msg;
};

/* Parses msg, of command cmd, into e; NULL, or what is wrong with it. */
static const char *parse_entry(struct nl_msg *msg, int cmd, struct entry *e)
{
	struct nlmsghdr *nlh = nlmsg_hdr(msg);
	struct nlattr *attrs[EXMPL_A_MAX + 1];

	if (genlmsg_parse(nlh, 0, attrs, EXMPL_A_MAX, echo_policy) < 0)
		return "a message that does not parse";
	if (((struct genlmsghdr *)nlmsg_data(nlh))->cmd != cmd)
		return "a message of another command";
	if (!attrs[EXMPL_A_ID] || !attrs[EXMPL_A_MSG] || !attrs[EXMPL_A_PORTID])
		return "an entry without ID, MSG or PORTID";
	e->id = nla_get_u32(attrs[EXMPL_A_ID]);
	e->portid = nla_get_u32(attrs[EXMPL_A_PORTID]);
	e->msg = nla_get_string(attrs[EXMPL_A_MSG]);
	return NULL;
}

/* ANCHOR: dump */
/* What the callbacks of a dump saw. */
struct dump {
	unsigned long entries;
	bool done;
	bool interrupted;
	int error;	/* from an NLMSG_ERROR: a negative errno */
	const char *bad_reply;
};

/* An entry: print it. */
static int on_entry(struct nl_msg *msg, void *arg)
{
	struct dump *dump = arg;
	struct entry e;

	dump->bad_reply = parse_entry(msg, EXMPL_C_GET, &e);
	if (dump->bad_reply)
		return NL_STOP;
	print_entry(e.id, e.portid, e.msg);
	dump->entries++;
	return NL_OK;
}

/* A message flagged NLM_F_DUMP_INTR, which libnl reports before handling it. */
static int on_dump_intr(struct nl_msg *msg, void *arg)
{
	struct dump *dump = arg;

	(void)msg;
	dump->interrupted = true;
	return NL_OK;
}

/*
 * NLMSG_DONE: the end of the dump. Its payload is the dumpit's last return
 * value: 0, or the error that ended the dump early (libnl does not look).
 */
static int on_finish(struct nl_msg *msg, void *arg)
{
	struct nlmsghdr *nlh = nlmsg_hdr(msg);
	struct dump *dump = arg;

	if (nlmsg_datalen(nlh) >= (int)sizeof(int) && *(int *)nlmsg_data(nlh) < 0)
		dump->error = *(int *)nlmsg_data(nlh);
	dump->done = true;
	return NL_STOP;
}

static int on_dump_error(struct sockaddr_nl *from, struct nlmsgerr *err, void *arg)
{
	struct dump *dump = arg;

	(void)from;
	dump->error = err->error;
	return NL_STOP;
}

/* --dump: every entry of the echo log of family id. */
static void __attribute__((noreturn)) dump_log(struct nl_sock *sk, const char *family, int id)
{
	struct dump dump = { 0 };
	struct nl_msg *msg;
	unsigned int seq;
	int err;

	if (nl_socket_modify_cb(sk, NL_CB_VALID, NL_CB_CUSTOM, on_entry, &dump) < 0 ||
	    nl_socket_modify_cb(sk, NL_CB_DUMP_INTR, NL_CB_CUSTOM, on_dump_intr, &dump) < 0 ||
	    nl_socket_modify_cb(sk, NL_CB_FINISH, NL_CB_CUSTOM, on_finish, &dump) < 0 ||
	    nl_socket_modify_err_cb(sk, NL_CB_CUSTOM, on_dump_error, &dump) < 0)
		fail("nl_socket_modify_cb: out of memory");
	msg = nlmsg_alloc();
	if (!msg)
		fail("nlmsg_alloc: out of memory");
	/* GET without attributes, as a dump. */
	if (!genlmsg_put(msg, NL_AUTO_PORT, NL_AUTO_SEQ, id, 0, NLM_F_DUMP, EXMPL_C_GET,
			 FAMILY_VERSION))
		fail("building the request: it does not fit");
	err = nl_send_auto(sk, msg);
	seq = nlmsg_hdr(msg)->nlmsg_seq;
	nlmsg_free(msg);
	if (err < 0)
		fail("dump seq %u: nl_send_auto: %s", seq, nl_geterror(err));
	printf("module genl: family %s id %d, portid %u\n", family, id,
	       nl_socket_get_local_port(sk));
	/* libnl reads on while the messages are NLM_F_MULTI, until NLMSG_DONE. */
	while (!dump.done) {
		err = nl_recvmsgs_default(sk);
		if (dump.error)
			fail("dump seq %u: kernel replied %s (errno %d)", seq,
			     strerrorname_np(-dump.error), -dump.error);
		if (dump.bad_reply)
			fail("dump seq %u: %s", seq, dump.bad_reply);
		if (err == -NLE_AGAIN)
			fail("dump seq %u: no answer from the kernel within %d ms: is the module answering?",
			     seq, TIMEOUT_MS);
		/* libnl reports recvmsg()'s ENOBUFS as NLE_NOMEM. */
		if (err == -NLE_NOMEM && errno == ENOBUFS)
			fail("dump seq %u: the receive buffer overflowed (ENOBUFS)", seq);
		if (err < 0)
			fail("dump seq %u: nl_recvmsgs_default: %s", seq, nl_geterror(err));
	}
	print_done(seq, dump.entries, dump.interrupted);
	nl_socket_free(sk);
	exit(0);
}
/* ANCHOR_END: dump */

/* ANCHOR: subscribe */
/* What the callback of a subscriber saw. */
struct events {
	unsigned long seen;
	unsigned long count;	/* 0: forever */
	const char *bad_event;
};

static int on_event(struct nl_msg *msg, void *arg)
{
	struct events *events = arg;
	struct entry e;

	events->bad_event = parse_entry(msg, EXMPL_C_EVENT, &e);
	if (events->bad_event)
		return NL_STOP;
	print_genl_event(e.id, e.portid, e.msg);
	/* Stops nl_recvmsgs_default() at the last one wanted. */
	return ++events->seen == events->count ? NL_STOP : NL_OK;
}

/* --subscribe: the notifications of family id's group "events". */
static void __attribute__((noreturn)) subscribe(struct nl_sock *sk, const char *family, int id,
						unsigned long count)
{
	struct events events = { .count = count };
	struct timeval forever = { 0 };
	int group, err;

	group = genl_ctrl_resolve_grp(sk, family, MCGRP_EVENTS);
	if (group < 0)
		fail("generic netlink family %s has no group %s (%s)", family, MCGRP_EVENTS,
		     nl_geterror(group));
	/* Notifications are not answers: sequence number 0. */
	nl_socket_disable_seq_check(sk);
	if (nl_socket_modify_cb(sk, NL_CB_VALID, NL_CB_CUSTOM, on_event, &events) < 0)
		fail("nl_socket_modify_cb: out of memory");
	err = nl_socket_add_membership(sk, group);
	if (err < 0)
		fail("nl_socket_add_membership(%d): %s", group, nl_geterror(err));
	/* Events come when they come. */
	if (setsockopt(nl_socket_get_fd(sk), SOL_SOCKET, SO_RCVTIMEO, &forever, sizeof(forever)))
		fail("setsockopt: %s", strerror(errno));
	printf("module genl: family %s id %d, group %s id %d, portid %u\n", family, id,
	       MCGRP_EVENTS, group, nl_socket_get_local_port(sk));
	fflush(stdout);
	while (!events.count || events.seen < events.count) {
		err = nl_recvmsgs_default(sk);
		if (events.bad_event)
			fail("%s", events.bad_event);
		/* libnl reports recvmsg()'s ENOBUFS as NLE_NOMEM. */
		if (err == -NLE_NOMEM && errno == ENOBUFS)
			lost_events();
		else if (err < 0)
			fail("nl_recvmsgs_default: %s", nl_geterror(err));
	}
	nl_socket_free(sk);
	exit(0);
}
/* ANCHOR_END: subscribe */

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "family", required_argument, NULL, 'f' },
		{ "dump", no_argument, NULL, 'd' },
		{ "subscribe", no_argument, NULL, 's' },
		{ "count", required_argument, NULL, 'c' },
		{ NULL, 0, NULL, 0 },
	};
	bool dump = false, subscribing = false;
	unsigned long count = 0;
	const char *family = FAMILY_NAME, *message = "hello netlink";
	struct timeval timeout = { .tv_sec = TIMEOUT_MS / 1000 };
	struct echo echo = { 0 };
	struct nl_sock *sk;
	struct nl_msg *msg;
	int id, opt, err;
	size_t len;

	client_name = "libnl_genl_client";
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (opt) {
		case 'f':
			family = optarg;
			break;
		case 'd':
			dump = true;
			break;
		case 's':
			subscribing = true;
			break;
		case 'c':
			count = parse_count(optarg, usage);
			break;
		default:
			usage_error("unknown switch", usage);
		}
	}
	if (dump && subscribing)
		usage_error("--dump or --subscribe, not both", usage);
	if (count && !subscribing)
		usage_error("--count applies to --subscribe", usage);
	if ((dump || subscribing) && optind < argc)
		usage_error(dump ? "--dump sends no message" : "--subscribe sends no message", usage);
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
	if (dump)
		dump_log(sk, family, id);
	if (subscribing)
		subscribe(sk, family, id, count);
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
