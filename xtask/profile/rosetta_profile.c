// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * rosetta_profile: a QEMU TCG plugin that counts the guest instructions
 * executed per translated block, inside windows that the guest opens and
 * closes itself (`cargo xtask profile` builds and loads it; see
 * xtask/src/profile.rs).
 *
 * A window opens when the guest executes `xchg %rbx,%rbx` (48 87 db) and
 * closes at `xchg %rcx,%rcx` (48 87 c9): no compiler emits either. At each
 * close, the plugin appends to the file `out=` names one line per block
 * executed in the window, `<window> <guest address> <instructions per
 * execution> <executions>`, and starts counting afresh. The host maps the
 * addresses to symbols (the kernel's System.map, the modules' .ko files).
 *
 * With one guest CPU and icount, what it counts is what the guest's clock
 * measured: every instruction, kernel and user side.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

struct block {
	uint64_t vaddr;
	uint64_t insns;
	uint64_t executions;
};

/* Every block ever translated (a block translated again gets a new entry). */
static struct block **blocks;
static size_t nblocks, capacity;
static int counting;
static int window;
static FILE *out;

static const unsigned char OPEN[] = { 0x48, 0x87, 0xdb };
static const unsigned char CLOSE[] = { 0x48, 0x87, 0xc9 };

static void executed(unsigned int vcpu, void *data)
{
	struct block *b = data;

	if (counting)
		b->executions++;
}

static void open_window(unsigned int vcpu, void *data)
{
	counting = 1;
}

static void close_window(unsigned int vcpu, void *data)
{
	size_t i;

	if (!counting)
		return;
	counting = 0;
	window++;
	for (i = 0; i < nblocks; i++) {
		if (!blocks[i]->executions)
			continue;
		fprintf(out, "%d %" PRIx64 " %" PRIu64 " %" PRIu64 "\n", window,
			blocks[i]->vaddr, blocks[i]->insns, blocks[i]->executions);
		blocks[i]->executions = 0;
	}
	fflush(out);
}

static int is(struct qemu_plugin_insn *insn, const unsigned char *bytes)
{
	return qemu_plugin_insn_size(insn) == 3 &&
	       !memcmp(qemu_plugin_insn_data(insn), bytes, 3);
}

static void translated(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	size_t n = qemu_plugin_tb_n_insns(tb), i;
	struct block *b = calloc(1, sizeof(*b));

	if (!b)
		abort();
	b->vaddr = qemu_plugin_tb_vaddr(tb);
	b->insns = n;
	if (nblocks == capacity) {
		capacity = capacity ? 2 * capacity : 65536;
		blocks = realloc(blocks, capacity * sizeof(*blocks));
		if (!blocks)
			abort();
	}
	blocks[nblocks++] = b;
	qemu_plugin_register_vcpu_tb_exec_cb(tb, executed, QEMU_PLUGIN_CB_NO_REGS, b);
	for (i = 0; i < n; i++) {
		struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);

		if (is(insn, OPEN))
			qemu_plugin_register_vcpu_insn_exec_cb(insn, open_window,
							       QEMU_PLUGIN_CB_NO_REGS, NULL);
		else if (is(insn, CLOSE))
			qemu_plugin_register_vcpu_insn_exec_cb(insn, close_window,
							       QEMU_PLUGIN_CB_NO_REGS, NULL);
	}
}

static void finished(qemu_plugin_id_t id, void *data)
{
	if (out)
		fclose(out);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
					   int argc, char **argv)
{
	int i;

	for (i = 0; i < argc; i++)
		if (!strncmp(argv[i], "out=", 4))
			out = fopen(argv[i] + 4, "w");
	if (!out) {
		fprintf(stderr, "rosetta_profile: needs out=<file>, writable\n");
		return -1;
	}
	qemu_plugin_register_vcpu_tb_trans_cb(id, translated);
	qemu_plugin_register_atexit_cb(id, finished, NULL);
	return 0;
}
