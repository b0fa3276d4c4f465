// SPDX-License-Identifier: GPL-2.0
/*
 * kmod_c_genl: kmod-genl (kmod-genl/kmod_genl.rs) in C, the twin to read
 * beside it: a generic netlink family with an ECHO command that returns its
 * string attribute MSG, an echo log that GET reads back (one entry, or a
 * dump of them all), and a multicast group "events" told of every echo.
 *
 * ECHO (1): MSG is a NUL-terminated string of at most 16384 characters; the
 * generic netlink core validates it against the command's policy before the
 * handler runs, and rejects unknown attributes (strict validation, the
 * default for a new family). The reply goes through genlmsg_reply() with
 * command ECHO and the same MSG, the request's sequence number and the
 * requester's port id. A missing MSG gets -EINVAL with an extended-ack
 * message naming it; an unknown command gets -EOPNOTSUPP from the core.
 *
 * The echo log keeps the last 1024 echoes (proto::ECHO_LOG_LEN), each with
 * an id (1 for the first echo, one more for each echo), its MSG and the
 * requester's port id. GET (2) with ID (2, u32) returns that entry
 * (attributes ID, MSG, PORTID (3)), or -ENOENT with the extended-ack
 * message "no entry 7 in the echo log" when the log no longer (or not yet)
 * holds it; without ID, -EINVAL as ECHO without MSG. GET as a dump
 * (NLM_F_DUMP) sends every entry, oldest first, one NLM_F_MULTI message
 * each, then NLMSG_DONE; a dump that spans several recvmsg() calls resumes
 * from a cursor, and the messages built after the log changed under it
 * carry NLM_F_DUMP_INTR. After each echo, the listeners of the group
 * "events" get EVENT (3) with the new entry's ID, MSG and PORTID.
 *
 * The family serves every network namespace (netnsok), and each namespace
 * has its own echo log (struct c_genl_net, from register_pernet_subsys()):
 * a dump shows the namespace's own echoes, and an EVENT reaches the
 * listeners of the namespace it happened in only.
 *
 * The family is called "c_genl" (version 1), so that it runs beside
 * kmod-genl's "my_genl" in one boot. Run it with the C client
 * (c/clients/libnl_genl_client.c):
 *
 *   $ cargo xtask build
 *   $ cargo xtask vm --modules c-genl -- sh -c '
 *         target/c-clients/libnl_genl_client --family c_genl "hello netlink" &&
 *         target/c-clients/libnl_genl_client --family c_genl --dump'
 *   module genl: family c_genl id 25, portid 1583734903
 *   echo seq 1764355246: sent 13 bytes, received 13 bytes: "hello netlink"
 *   ack seq 1764355246: ok
 *   module genl: family c_genl id 25, portid 2556813435
 *   entry id 1 portid 1583734903: "hello netlink"
 *   done seq 1764355247: 1 entries
 *
 * (`libnl_genl_client --family c_genl --subscribe` prints the events) and
 * the kernel log shows "kmod_c_genl: registered generic netlink family
 * c_genl". `cargo xtask bench` measures kmod-genl against it (anchor
 * "c-genl").
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <net/genetlink.h>
#include <net/netns/generic.h>
#include <net/sock.h>

enum {
	C_GENL_A_UNSPEC,
	C_GENL_A_MSG,
	C_GENL_A_ID,
	C_GENL_A_PORTID,
	__C_GENL_A_MAX,
};
#define C_GENL_A_MAX (__C_GENL_A_MAX - 1)

#define C_GENL_C_ECHO 1
#define C_GENL_C_GET 2
#define C_GENL_C_EVENT 3
#define MAX_MSG_LEN 16384
#define ECHO_LOG_LEN 1024

enum {
	C_GENL_MCGRP_EVENTS,	/* "events" */
};

static struct genl_family family;

/* ANCHOR: log */
/*
 * The echo log: the last ECHO_LOG_LEN echoes in a ring. The entry of id n
 * is in slot (n - 1) % ECHO_LOG_LEN, while it is kept; an empty slot has id
 * 0, and an evicted entry's slot holds a newer id.
 */
struct entry {
	u32 id;
	u32 portid;	/* of the socket that sent the echo */
	char *msg;	/* kmalloc'd, NUL-terminated */
};

/* ANCHOR: pernet */
/* The echo log of a network namespace. */
struct c_genl_net {
	struct mutex lock;
	struct entry ring[ECHO_LOG_LEN];	/* under lock */
	u32 next_id;				/* the id of the next echo */
	/*
	 * The log's generation for dumps (cb->seq): bumped by every append,
	 * never 0 (the core's "no generation").
	 */
	u32 generation;
};

static unsigned int c_genl_net_id;

/* The echo log of the namespace a request came from. */
static struct c_genl_net *log_of(struct net *net)
{
	return net_generic(net, c_genl_net_id);
}
/* ANCHOR_END: pernet */

/* The oldest id the log can still hold. Under log->lock. */
static u32 oldest_id(const struct c_genl_net *log)
{
	return log->next_id > ECHO_LOG_LEN ? log->next_id - ECHO_LOG_LEN : 1;
}

/* The entry of id, or NULL if the log does not hold it. Under log->lock. */
static struct entry *find(struct c_genl_net *log, u32 id)
{
	struct entry *e = &log->ring[(id - 1) % ECHO_LOG_LEN];

	return id && e->id == id ? e : NULL;
}

/* Appends an echo of msg by portid, evicting the oldest; returns its id. */
static int append(struct c_genl_net *log, const char *msg, u32 portid, u32 *id)
{
	char *copy = kstrdup(msg, GFP_KERNEL);
	struct entry *e;
	char *old;

	if (!copy)
		return -ENOMEM;
	mutex_lock(&log->lock);
	*id = log->next_id++;
	e = &log->ring[(*id - 1) % ECHO_LOG_LEN];
	old = e->msg;
	*e = (struct entry) { .id = *id, .portid = portid, .msg = copy };
	if (!++log->generation)
		log->generation = 1;
	mutex_unlock(&log->lock);
	kfree(old);
	return 0;
}

/* The attributes of an entry, in GET replies, dumps and events. */
static size_t entry_size(size_t msg_len)
{
	return 2 * nla_total_size(sizeof(u32)) + nla_total_size(msg_len + 1);
}

static int put_entry(struct sk_buff *skb, u32 id, const char *msg, u32 portid)
{
	if (nla_put_u32(skb, C_GENL_A_ID, id) ||
	    nla_put_string(skb, C_GENL_A_MSG, msg) ||
	    nla_put_u32(skb, C_GENL_A_PORTID, portid))
		return -EMSGSIZE;
	return 0;
}
/* ANCHOR_END: log */

/* ANCHOR: notify */
/*
 * Tells the listeners of "events" in the requester's namespace of a new
 * entry: EVENT with its ID, MSG and PORTID, port id 0 and sequence number
 * 0 in the header, as notifications have. Built only if someone listens.
 */
static void notify(struct genl_info *info, u32 id, const char *msg)
{
	struct net *net = genl_info_net(info);
	struct sk_buff *skb;
	void *hdr;

	if (!genl_has_listeners(&family, net, C_GENL_MCGRP_EVENTS))
		return;
	skb = genlmsg_new(entry_size(strlen(msg)), GFP_KERNEL);
	if (!skb)
		goto lost;
	hdr = genlmsg_put(skb, 0, 0, &family, 0, C_GENL_C_EVENT);
	if (!hdr || put_entry(skb, id, msg, info->snd_portid)) {
		nlmsg_free(skb);
		goto lost;
	}
	genlmsg_end(skb, hdr);
	/* -ESRCH: the last listener left meanwhile. */
	genlmsg_multicast_netns(&family, net, skb, 0, C_GENL_MCGRP_EVENTS, GFP_KERNEL);
	return;
lost:
	/* The listeners learn of the loss: their next recvmsg() fails with ENOBUFS. */
	genl_set_err(&family, net, 0, C_GENL_MCGRP_EVENTS, -ENOBUFS);
}
/* ANCHOR_END: notify */

/* ANCHOR: receive */
/* The ECHO handler: the core has validated the attributes already. */
static int echo_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct nlattr *attr;
	struct sk_buff *reply;
	void *hdr;
	u32 id;
	int err;

	if (GENL_REQ_ATTR_CHECK(info, C_GENL_A_MSG)) {
		NL_SET_ERR_MSG(info->extack, "missing attribute MSG");
		return -EINVAL;
	}
	attr = info->attrs[C_GENL_A_MSG];
	/* ANCHOR_END: receive */
	/* ANCHOR: reply */
	reply = genlmsg_new(nla_total_size(nla_len(attr)), GFP_KERNEL);
	if (!reply)
		return -ENOMEM;
	hdr = genlmsg_put_reply(reply, info, &family, 0, C_GENL_C_ECHO);
	if (!hdr || nla_put_string(reply, C_GENL_A_MSG, nla_data(attr))) {
		nlmsg_free(reply);
		return -EMSGSIZE;
	}
	genlmsg_end(reply, hdr);
	err = append(log_of(genl_info_net(info)), nla_data(attr), info->snd_portid, &id);
	if (err) {
		nlmsg_free(reply);
		return err;
	}
	err = genlmsg_reply(reply, info);
	/* Logged: the listeners hear of it even if the reply was lost. */
	notify(info, id, nla_data(attr));
	return err;
	/* ANCHOR_END: reply */
}

/* ANCHOR: get */
/* GET as a do request: the entry of ID. */
static int get_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct c_genl_net *log = log_of(genl_info_net(info));
	struct sk_buff *reply;
	struct nlattr *attr;
	struct entry *e;
	void *hdr;
	u32 id;

	if (GENL_REQ_ATTR_CHECK(info, C_GENL_A_ID)) {
		NL_SET_ERR_MSG(info->extack, "missing attribute ID");
		return -EINVAL;
	}
	attr = info->attrs[C_GENL_A_ID];
	id = nla_get_u32(attr);
	mutex_lock(&log->lock);
	e = find(log, id);
	if (!e) {
		mutex_unlock(&log->lock);
		NL_SET_ERR_MSG_FMT(info->extack, "no entry %u in the echo log", id);
		NL_SET_BAD_ATTR(info->extack, attr);
		return -ENOENT;
	}
	reply = genlmsg_new(entry_size(strlen(e->msg)), GFP_KERNEL);
	if (!reply) {
		mutex_unlock(&log->lock);
		return -ENOMEM;
	}
	hdr = genlmsg_put_reply(reply, info, &family, 0, C_GENL_C_GET);
	if (!hdr || put_entry(reply, e->id, e->msg, e->portid)) {
		mutex_unlock(&log->lock);
		nlmsg_free(reply);
		return -EMSGSIZE;
	}
	mutex_unlock(&log->lock);
	genlmsg_end(reply, hdr);
	return genlmsg_reply(reply, info);
}
/* ANCHOR_END: get */

/* ANCHOR: dump */
/* What a dump keeps between its dumpit calls, in cb->ctx. */
struct dump_ctx {
	u32 next_id;	/* the next id to send; evicted ones are skipped */
};

static_assert(sizeof(struct dump_ctx) <= sizeof_field(struct netlink_callback, ctx));

/* GET as a dump: before the first dumpit. */
static int get_start(struct netlink_callback *cb)
{
	struct dump_ctx *ctx = (struct dump_ctx *)cb->ctx;

	ctx->next_id = 1;
	/*
	 * The core allocates each skb of a dump from a page (NLMSG_GOODSIZE)
	 * up: ask for room for the largest entry, so that an empty skb holds
	 * any one message. The reader's buffer must be as large.
	 */
	cb->min_dump_alloc = nlmsg_total_size(genlmsg_total_size(entry_size(MAX_MSG_LEN)));
	return 0;
}

/*
 * Fills skb with entries from the cursor on. Returns skb->len while there
 * is more to send, 0 once all is sent (the core then appends NLMSG_DONE).
 */
static int get_dumpit(struct sk_buff *skb, struct netlink_callback *cb)
{
	struct c_genl_net *log = log_of(sock_net(cb->skb->sk));
	struct dump_ctx *ctx = (struct dump_ctx *)cb->ctx;
	int err = 0;
	u32 id;

	mutex_lock(&log->lock);
	/* The messages of this call are consistent with this generation. */
	cb->seq = log->generation;
	for (id = max(ctx->next_id, oldest_id(log)); id < log->next_id; id++) {
		struct entry *e = find(log, id);
		void *hdr;

		hdr = genlmsg_put(skb, NETLINK_CB(cb->skb).portid, cb->nlh->nlmsg_seq,
				  &family, NLM_F_MULTI, C_GENL_C_GET);
		if (!hdr) {
			err = -EMSGSIZE;
			break;
		}
		if (put_entry(skb, e->id, e->msg, e->portid)) {
			/* It does not fit: it goes first in the next skb. */
			genlmsg_cancel(skb, hdr);
			err = -EMSGSIZE;
			break;
		}
		/*
		 * Flags NLM_F_DUMP_INTR if the log changed since the previous
		 * message; after the attributes, so that a cancelled message
		 * does not take the flag with it.
		 */
		genl_dump_check_consistent(cb, hdr);
		genlmsg_end(skb, hdr);
	}
	ctx->next_id = id;
	mutex_unlock(&log->lock);
	/* Full, or finished. (Nothing put: -EMSGSIZE ends the dump with it.) */
	return err && skb->len ? skb->len : err;
}

/* After the last dumpit, or when the reader closes its socket. */
static int get_done(struct netlink_callback *cb)
{
	/* Nothing to free: the cursor lives in cb->ctx. */
	return 0;
}
/* ANCHOR_END: dump */

/* ANCHOR: create */
static const struct nla_policy echo_policy[C_GENL_A_MAX + 1] = {
	[C_GENL_A_MSG] = { .type = NLA_NUL_STRING, .len = MAX_MSG_LEN },
};

static const struct nla_policy get_policy[C_GENL_A_MAX + 1] = {
	[C_GENL_A_ID] = { .type = NLA_U32 },
};

static const struct genl_ops ops[] = {
	{
		.cmd = C_GENL_C_ECHO,
		.doit = echo_doit,
		.policy = echo_policy,
		.maxattr = C_GENL_A_MAX,
	},
	{
		.cmd = C_GENL_C_GET,
		.doit = get_doit,
		.start = get_start,
		.dumpit = get_dumpit,
		.done = get_done,
		.policy = get_policy,
		.maxattr = C_GENL_A_MAX,
	},
};

static const struct genl_multicast_group mcgrps[] = {
	[C_GENL_MCGRP_EVENTS] = { .name = "events" },
};

static struct genl_family family = {
	.name = "c_genl",
	.version = 1,
	.maxattr = C_GENL_A_MAX,
	.netnsok = true,
	.parallel_ops = true,
	.ops = ops,
	.n_ops = ARRAY_SIZE(ops),
	.mcgrps = mcgrps,
	.n_mcgrps = ARRAY_SIZE(mcgrps),
	.module = THIS_MODULE,
};

/* A namespace appears (or exists when the module loads): its empty log. */
static int __net_init c_genl_net_init(struct net *net)
{
	struct c_genl_net *log = log_of(net);

	mutex_init(&log->lock);
	log->next_id = 1;
	log->generation = 1;
	return 0;
}

/* A namespace goes (or the module unloads): its log goes. */
static void __net_exit c_genl_net_exit(struct net *net)
{
	struct c_genl_net *log = log_of(net);
	int i;

	/* No handler runs for this namespace any more. */
	for (i = 0; i < ECHO_LOG_LEN; i++)
		kfree(log->ring[i].msg);
	mutex_destroy(&log->lock);
}

static struct pernet_operations c_genl_net_ops = {
	.init = c_genl_net_init,
	.exit = c_genl_net_exit,
	.id = &c_genl_net_id,
	.size = sizeof(struct c_genl_net),
};

static int __init c_genl_init(void)
{
	/* A log in every namespace there is, then in every new one; then the
	 * family, whose requests find them.
	 */
	int err = register_pernet_subsys(&c_genl_net_ops);

	if (err)
		return err;
	err = genl_register_family(&family);
	if (err) {
		unregister_pernet_subsys(&c_genl_net_ops);
		return err;
	}
	pr_info("registered generic netlink family %s\n", family.name);
	return 0;
}
/* ANCHOR_END: create */

/* ANCHOR: teardown */
static void __exit c_genl_exit(void)
{
	pr_info("unregistering generic netlink family %s\n", family.name);
	genl_unregister_family(&family);
	/*
	 * No handler runs any more, and a dump in progress pins the module:
	 * every namespace's log goes.
	 */
	unregister_pernet_subsys(&c_genl_net_ops);
}
/* ANCHOR_END: teardown */

module_init(c_genl_init);
module_exit(c_genl_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Generic netlink echo in C: family c_genl, commands ECHO and GET, group events");
