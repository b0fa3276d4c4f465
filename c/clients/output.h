/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the three C clients print, as the Rust client CLIs print it
 * (rosetta-cli, cli/src/lib.rs), so that their lines can be compared:
 *
 *   module raw: netlink unit 31, portid 1234
 *   echo seq 1: sent 13 bytes, received 13 bytes: "hello netlink"
 *   ack seq 1: ok
 *
 * a dump of the echo log of a generic netlink family (--dump):
 *
 *   module genl: family c_genl id 26, portid 1234
 *   entry id 1 portid 1230: "hello"
 *   done seq 1: 1 entries
 *
 * and the notifications of a subscriber (--subscribe):
 *
 *   module genl: family c_genl id 26, group events id 27, portid 1234
 *   event id 3 portid 1240: "hello"
 *   module raw: netlink unit 30, group 1, portid 1234
 *   event seq 5 portid 1240: "hello"
 *
 * Errors go to stderr as "<client>: error: <message>", with exit status 1
 * (2 for usage errors), as theirs do.
 */
#ifndef ROSETTA_OUTPUT_H
#define ROSETTA_OUTPUT_H

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RAW_UNIT 31		/* proto::RAW_UNIT */
#define KTHREAD_UNIT 25		/* proto::KTHREAD_UNIT */
#define RAW_GROUP 1		/* proto::RAW_GROUP */

/* The client's name, for its error lines. */
static const char *client_name;

/* proto::module_for_unit: the module that serves a raw unit. */
static inline const char *module_for_unit(int unit)
{
	switch (unit) {
	case RAW_UNIT:
		return "kmod-raw";
	case KTHREAD_UNIT:
		return "kmod-kthread";
	default:
		return "its module";
	}
}

/* proto::module_for_family: the module that registers a family. */
static inline const char *module_for_family(const char *family)
{
	return strcmp(family, "my_genl") ? "its module" : "kmod-genl";
}

/* Prints "<client>: error: <message>" and exits with status 1. */
static inline void __attribute__((format(printf, 1, 2), noreturn)) fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: error: ", client_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* Prints a usage error and the usage line, and exits with status 2. */
static inline void __attribute__((noreturn)) usage_error(const char *message, const char *usage)
{
	fprintf(stderr, "%s: error: %s\nusage: %s %s\n", client_name, message, client_name, usage);
	exit(2);
}

/* Parses the number of --count, or prints the usage and exits. */
static inline unsigned long parse_count(const char *arg, const char *usage)
{
	unsigned long count;
	char *end;

	errno = 0;
	count = strtoul(arg, &end, 10);
	if (*arg == '\0' || *arg == '-' || *end != '\0' || errno || count == 0)
		usage_error("--count takes a number of events, at least 1", usage);
	return count;
}

/*
 * The switches of the raw-unit clients, as the Rust CLIs take them:
 * [--module raw|kthread] [--unit N] [--subscribe [--count N]] [MESSAGE].
 * A bad one prints the usage and exits. Without --unit, the unit is the
 * module's. --subscribe listens to the unit's group instead of echoing,
 * until --count events came (forever without it).
 */
struct raw_args {
	const char *module;
	const char *message;
	int unit;
	bool subscribe;
	unsigned long count;	/* of events; 0: forever */
};

static const char raw_usage[] =
	"[--module raw|kthread] [--unit N] [--subscribe [--count N]] [MESSAGE]";

static inline struct raw_args parse_raw_args(int argc, char **argv)
{
	static const struct option options[] = {
		{ "module", required_argument, NULL, 'm' },
		{ "unit", required_argument, NULL, 'u' },
		{ "subscribe", no_argument, NULL, 's' },
		{ "count", required_argument, NULL, 'c' },
		{ "dump", no_argument, NULL, 'd' },
		{ NULL, 0, NULL, 0 },
	};
	struct raw_args args = { .module = "raw", .message = "hello netlink", .unit = -1 };
	int opt;

	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		char *end;

		switch (opt) {
		case 'm':
			args.module = optarg;
			if (strcmp(args.module, "raw") && strcmp(args.module, "kthread"))
				usage_error("--module takes raw or kthread", raw_usage);
			break;
		case 'u':
			args.unit = strtol(optarg, &end, 10);
			if (*optarg == '\0' || *end != '\0' || args.unit < 0)
				usage_error("--unit takes a unit number", raw_usage);
			break;
		case 's':
			args.subscribe = true;
			break;
		case 'c':
			args.count = parse_count(optarg, raw_usage);
			break;
		case 'd':
			usage_error("--dump applies to generic netlink only: the raw units keep no log",
				    raw_usage);
		default:
			usage_error("unknown switch", raw_usage);
		}
	}
	if (args.count && !args.subscribe)
		usage_error("--count applies to --subscribe", raw_usage);
	if (args.subscribe && optind < argc)
		usage_error("--subscribe sends no message", raw_usage);
	if (optind + 1 < argc)
		usage_error("one message at most", raw_usage);
	if (optind < argc)
		args.message = argv[optind];
	if (args.unit < 0)
		args.unit = strcmp(args.module, "raw") ? KTHREAD_UNIT : RAW_UNIT;
	return args;
}

/*
 * Prints the reply as rosetta-cli's shorten() does: quoted, escaped as
 * Rust's escape_debug() escapes ASCII, and cut after 40 characters with
 * "...". Bytes of UTF-8 text beyond ASCII are printed as they are.
 */
static inline void print_quoted(const unsigned char *s, size_t len)
{
	size_t i, chars = 0;

	putchar('"');
	for (i = 0; i < len; i++) {
		unsigned char c = s[i];

		/* Continuation bytes belong to the character before. */
		if ((c & 0xc0) != 0x80 && chars++ == 40)
			break;
		switch (c) {
		case '"':
		case '\'':
		case '\\':
			printf("\\%c", c);
			break;
		case '\n':
			fputs("\\n", stdout);
			break;
		case '\r':
			fputs("\\r", stdout);
			break;
		case '\t':
			fputs("\\t", stdout);
			break;
		case '\0':
			fputs("\\0", stdout);
			break;
		default:
			if (c < 0x20 || c == 0x7f)
				printf("\\u{%x}", c);
			else
				putchar(c);
		}
	}
	putchar('"');
	if (i < len)
		fputs("...", stdout);
	putchar('\n');
}

/* "echo seq 1: sent 13 bytes, received 13 bytes: "hello netlink"" */
static inline void print_echo(unsigned int seq, size_t sent, const void *reply, size_t len)
{
	printf("echo seq %u: sent %zu bytes, received %zu bytes: ", seq, sent, len);
	print_quoted(reply, len);
}

/* "entry id 1 portid 1230: "hello"": an entry of a dump of the echo log. */
static inline void print_entry(unsigned int id, unsigned int portid, const char *msg)
{
	printf("entry id %u portid %u: ", id, portid);
	print_quoted((const unsigned char *)msg, strlen(msg));
}

/*
 * "done seq 1: 2 entries", and ", interrupted" if a message of the dump
 * carried NLM_F_DUMP_INTR; then the error, and exit status 1.
 */
static inline void print_done(unsigned int seq, unsigned long entries, bool interrupted)
{
	printf("done seq %u: %lu entries%s\n", seq, entries, interrupted ? ", interrupted" : "");
	if (interrupted) {
		fflush(stdout);
		fail("the echo log changed during the dump (NLM_F_DUMP_INTR): run it again");
	}
}

/* "event id 3 portid 1240: "hello"": a generic netlink notification. */
static inline void print_genl_event(unsigned int id, unsigned int portid, const char *msg)
{
	printf("event id %u portid %u: ", id, portid);
	print_quoted((const unsigned char *)msg, strlen(msg));
	fflush(stdout);
}

/* "event seq 5 portid 1240: "hello"": a raw unit's copy of an echo. */
static inline void print_raw_event(unsigned int seq, unsigned int portid, const void *payload,
				   size_t len)
{
	printf("event seq %u portid %u: ", seq, portid);
	print_quoted(payload, len);
	fflush(stdout);
}

/* A subscriber's receive buffer overflowed: events were lost, it goes on. */
static inline void lost_events(void)
{
	fprintf(stderr, "%s: lost events: the receive buffer overflowed (ENOBUFS)\n", client_name);
}

#endif /* ROSETTA_OUTPUT_H */
