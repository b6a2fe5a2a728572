// SPDX-License-Identifier: GPL-2.0-only
/*
 * The SSE moves Linux and Windows use on device memory, run against
 * MMIO by a long-mode guest: MOVDQU stores and loads of 16 bytes (two
 * 8-byte exits each), MOVAPS, MOVQ from an XMM register (8 bytes, the
 * next ones untouched), MOVD into an XMM register (zero-extended, seen
 * through MOVQ to a GPR), and a MOVDQU store straddling a page.  The
 * host serves the MMIO window from an array and checks what the guest
 * wrote; the guest checks what it read.
 */
#include <linux/kvm.h>
#include <stdint.h>
#include <string.h>

#include "lib/guest.h"
#include "lib/tap.h"
#include "lib/x86.h"

#define MMIO_ADDR	0x10000000UL
#define MMIO_SIZE	0x2000UL

static uint8_t pat_a[16] __attribute__((aligned(16))) = {
	0x10, 0x21, 0x32, 0x43, 0x54, 0x65, 0x76, 0x87,
	0x98, 0xa9, 0xba, 0xcb, 0xdc, 0xed, 0xfe, 0x0f,
};

static uint8_t pat_b[16] __attribute__((aligned(16))) = {
	0xf1, 0xe2, 0xd3, 0xc4, 0xb5, 0xa6, 0x97, 0x88,
	0x79, 0x6a, 0x5b, 0x4c, 0x3d, 0x2e, 0x1f, 0x00,
};

static uint8_t got[16] __attribute__((aligned(16)));

static GUEST_CODE bool same16(const uint8_t *a, const uint8_t *b)
{
	int i;

	for (i = 0; i < 16; i++)
		if (a[i] != b[i])
			return false;
	return true;
}

static GUEST_CODE void guest_sse(uint64_t arg)
{
	uint8_t *mmio = (uint8_t *)MMIO_ADDR;
	uint64_t v;

	/*
	 * Guest code is built without SSE, so nothing else lives in the
	 * XMM registers these use (and they cannot be named as clobbers).
	 * @arg: leave out what KVM's emulator does not do.
	 */
	x86_guest_enable_fpu(0);
	/* MOVDQU xmm -> MMIO */
	asm volatile("movdqu %1, %%xmm3\n\tmovdqu %%xmm3, (%0)"
		     : : "r" (mmio), "m" (pat_a) : "memory");
	GUEST_SYNC(1);
	/* MOVDQU MMIO -> xmm */
	asm volatile("movdqu (%1), %%xmm5\n\tmovdqu %%xmm5, %0"
		     : "=m" (got) : "r" (mmio + 16) : "memory");
	GUEST_ASSERT(same16(got, pat_b));
	/* MOVAPS xmm -> MMIO (aligned) */
	asm volatile("movaps %%xmm3, (%0)" : : "r" (mmio + 32) : "memory");
	GUEST_SYNC(2);
	/* MOVQ xmm -> m64 (66 0F D6), which KVM's emulator lacks */
	if (!arg)
		asm volatile("movq %%xmm3, (%0)" : : "r" (mmio + 48) : "memory");
	GUEST_SYNC(3);
	/* MOVD m32 -> xmm zero-extends (KVM's emulator lacks it too) */
	if (!arg) {
		asm volatile("pcmpeqb %%xmm6, %%xmm6\n\t"
			     "movd (%1), %%xmm6\n\t"
			     "movq %%xmm6, %0"
			     : "=r" (v) : "r" (mmio + 64) : "memory");
		GUEST_ASSERT(v == 0x11223344);
	}
	/* MOVDQU across a page boundary of the MMIO window */
	asm volatile("movdqu %%xmm3, (%0)" : : "r" (mmio + 0xff8) : "memory");
	GUEST_SYNC(4);
	GUEST_DONE();
}

static uint8_t dev[MMIO_SIZE];
static unsigned int exits, bad_len;

/* Run until a ucall, serving the MMIO window from dev[]. */
static enum ucall_cmd run_serving(struct guest_vm *g, struct ucall *uc)
{
	struct kvm_run *run = g->vcpu.run;
	enum ucall_cmd cmd;
	uint64_t off;

	for (;;) {
		cmd = guest_run(g, uc);
		if (cmd != UCALL_NONE || run->exit_reason != KVM_EXIT_MMIO)
			return cmd;
		off = run->mmio.phys_addr - MMIO_ADDR;
		if (run->mmio.phys_addr < MMIO_ADDR || off >= MMIO_SIZE ||
		    run->mmio.len > 8 || off + run->mmio.len > MMIO_SIZE) {
			bad_len++;
			return UCALL_NONE;
		}
		exits++;
		if (run->mmio.is_write)
			memcpy(dev + off, run->mmio.data, run->mmio.len);
		else
			memcpy(run->mmio.data, dev + off, run->mmio.len);
	}
}

static void report_stop(enum ucall_cmd cmd, const struct ucall *uc,
			const struct kvm_run *run)
{
	if (cmd == UCALL_ASSERT)
		tap_diag("guest assertion %s at %s:%llu", uc->expr, uc->file,
			 (unsigned long long)uc->line);
	else if (cmd == UCALL_NONE)
		tap_diag("stopped by exit %s (internal error suberror %u)",
			 exit_name(run->exit_reason), run->internal.suberror);
}

int main(int argc, char **argv)
{
	const char *dev_path = test_device(argc, argv);
	static const uint8_t ee[8] = { 0xee, 0xee, 0xee, 0xee,
				       0xee, 0xee, 0xee, 0xee };
	struct kvm_run *run;
	struct guest_vm g;
	enum ucall_cmd cmd;
	struct ucall uc;
	bool ok, kvm;

	tap_plan(6);
	/* KVM's emulator has no MOVQ m64, xmm (66 0F D6) nor MOVD (66 0F 6E) */
	kvm = !strcmp(dev_path, "/dev/kvm");
	if (!guest_vm_create(&g, dev_path, guest_sse, kvm))
		tap_bail("cannot build a VM around the guest function");
	run = g.vcpu.run;
	memcpy(dev + 16, pat_b, 16);
	memset(dev + 48, 0xee, 16);
	memcpy(dev + 64, "\x44\x33\x22\x11\x99\x99\x99\x99", 8);

	cmd = run_serving(&g, &uc);
	ok = cmd == UCALL_SYNC && uc.arg == 1 && !memcmp(dev, pat_a, 16);
	tap_ok(ok, "MOVDQU from an XMM register writes 16 bytes of MMIO");
	if (!ok)
		report_stop(cmd, &uc, run);

	cmd = ok ? run_serving(&g, &uc) : UCALL_NONE;
	ok = cmd == UCALL_SYNC && uc.arg == 2 && !memcmp(dev + 32, pat_a, 16);
	tap_ok(ok, "MOVDQU from MMIO reads 16 bytes; MOVAPS writes 16");
	if (!ok)
		report_stop(cmd, &uc, run);

	cmd = ok ? run_serving(&g, &uc) : UCALL_NONE;
	if (kvm) {
		ok = cmd == UCALL_SYNC && uc.arg == 3;
		tap_skip("KVM's emulator has no MOVQ m64, xmm (66 0F D6)",
			 "MOVQ from an XMM register writes 8 bytes, not 16");
	} else {
		ok = cmd == UCALL_SYNC && uc.arg == 3 &&
		     !memcmp(dev + 48, pat_a, 8) && !memcmp(dev + 56, ee, 8);
		tap_ok(ok, "MOVQ from an XMM register writes 8 bytes, not 16");
	}
	if (!ok)
		report_stop(cmd, &uc, run);

	cmd = ok ? run_serving(&g, &uc) : UCALL_NONE;
	ok = cmd == UCALL_SYNC && uc.arg == 4 &&
	     !memcmp(dev + 0xff8, pat_a, 16);
	tap_ok(ok, "%sMOVDQU across a page writes both sides",
	       kvm ? "(KVM's emulator has no MOVD xmm, m32: left out) " :
		     "MOVD from MMIO zero-extends; ");
	if (!ok)
		report_stop(cmd, &uc, run);

	cmd = ok ? run_serving(&g, &uc) : UCALL_NONE;
	tap_ok(cmd == UCALL_DONE, "the guest finishes");
	if (cmd != UCALL_DONE)
		report_stop(cmd, &uc, run);
	/* 2 + 2 + 2 + 1 + 1 + 2, without the MOVQ and MOVD on KVM */
	tap_ok(!bad_len && exits == (kvm ? 8U : 10U),
	       "%u MMIO exits, each at most 8 bytes inside the window (%u not)",
	       exits, bad_len);
	guest_vm_destroy(&g);
	tap_done();
}
