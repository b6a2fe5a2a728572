// SPDX-License-Identifier: GPL-2.0-only
/*
 * A guest in every CPU mode does port I/O of each size (the host checks
 * port, size, direction and value, and supplies IN data the guest
 * echoes) and MMIO writes and reads (phys_addr, len, direction, data;
 * the guest echoes what it read); a guest switches itself from real to
 * protected to long mode; string I/O with and without REP, forwards and
 * backwards.  Guest code: guest_code.S.
 */
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>

#include "lib/tap.h"
#include "lib/vm.h"

#define LOW_SIZE	0x80000		/* slot 0: code and data */
#define HIGH_GPA	0x100000	/* slot 1: page tables */
#define HIGH_SIZE	0x100000
#define PT		0x100000
#define PML4		0x103000
#define MMIO		0x10000000ULL

extern const unsigned char guest_rm[], guest_rm_end[];
extern const unsigned char guest_pm[], guest_pm_end[];
extern const unsigned char guest_lm[], guest_lm_end[];
extern const unsigned char guest_switch[], guest_switch_end[];
extern const unsigned char guest_str[], guest_str_end[];

struct setup {
	struct vm vm;
	struct vcpu vcpu;
	uint8_t *low, *high;
};

static bool setup(struct setup *s, const char *dev)
{
	if (!vm_create(&s->vm, dev))
		return false;
	s->low = vm_add_memory(&s->vm, 0, 0, LOW_SIZE);
	s->high = vm_add_memory(&s->vm, 1, HIGH_GPA, HIGH_SIZE);
	if (!s->low || !s->high || !vcpu_create(&s->vm, &s->vcpu, 0)) {
		vm_destroy(&s->vm);
		return false;
	}
	memcpy(s->low + 0x1000, guest_rm, guest_rm_end - guest_rm);
	memcpy(s->low + 0x2000, guest_pm, guest_pm_end - guest_pm);
	memcpy(s->low + 0x3000, guest_lm, guest_lm_end - guest_lm);
	memcpy(s->low + 0x4000, guest_switch, guest_switch_end - guest_switch);
	memcpy(s->low + 0x5000, guest_str, guest_str_end - guest_str);
	return true;
}

static void teardown(struct setup *s)
{
	vcpu_destroy(&s->vm, &s->vcpu);
	vm_destroy(&s->vm);
}

/* The exits of guest_rm/guest_pm/guest_lm, MMIO at @mmio. */
static int io_and_mmio(struct vcpu *vcpu, uint64_t mmio)
{
	const struct expect x[] = {
		{ X_OUT, 0x10, 1, 0x11 },
		{ X_OUT, 0x12, 2, 0x2233 },
		{ X_OUT, 0x14, 4, 0x44556677 },
		{ X_IN, 0x16, 1, 0xa5 },
		{ X_OUT, 0x17, 1, 0xa5 },
		{ X_IN, 0x18, 4, 0xdeadbeef },
		{ X_OUT, 0x19, 4, 0xdeadbeef },
		{ X_MMIO_W, mmio + 0x10, 4, 0x12345678 },
		{ X_MMIO_R, mmio + 0x20, 1, 0x5a },
		{ X_OUT, 0x1a, 1, 0x5a },
		{ X_MMIO_R, mmio + 0x30, 2, 0xbeef },
		{ X_OUT, 0x1b, 2, 0xbeef },
		{ X_HLT, 0, 0, 0 },
	};
	int n = ARRAY_SIZE(x);

	return run_expect(vcpu, x, n) == n;
}

static void one_mode(const char *dev, const char *name, int mode)
{
	struct setup s;
	bool ok;

	if (!setup(&s, dev)) {
		tap_ok(false, "%s: set up a VM", name);
		return;
	}
	switch (mode) {
	case 0:
		vcpu_real_mode(&s.vcpu, 0x1000);
		ok = io_and_mmio(&s.vcpu, 0xc0000);
		break;
	case 1:		/* 32-bit, no paging */
		vcpu_prot_mode(&s.vcpu, 0x2000, 0x11, 0, 0);
		ok = io_and_mmio(&s.vcpu, MMIO);
		break;
	case 2:		/* 32-bit paging, 4 MiB pages */
		build_pse32_tables(s.high, HIGH_GPA, PT);
		vcpu_prot_mode(&s.vcpu, 0x2000, 0x80000011, PT, 0x10);
		ok = io_and_mmio(&s.vcpu, MMIO);
		break;
	case 3:		/* PAE */
		build_pae_tables(s.high, HIGH_GPA, PT);
		vcpu_prot_mode(&s.vcpu, 0x2000, 0x80000011, PT, 0x20);
		ok = io_and_mmio(&s.vcpu, MMIO);
		break;
	default:	/* 64-bit */
		build_long_tables(s.high, HIGH_GPA, PML4);
		vcpu_long_mode(&s.vcpu, 0x3000, PML4);
		ok = io_and_mmio(&s.vcpu, MMIO);
		break;
	}
	tap_ok(ok, "%s: port I/O of 1, 2, 4 bytes and MMIO reads and writes",
	       name);
	teardown(&s);
}

static void mode_switch(const char *dev)
{
	const struct expect x[] = {
		{ X_OUT, 0x20, 1, 16 },
		{ X_OUT, 0x20, 1, 32 },
		{ X_MMIO_W, MMIO + 0x40, 4, 0x3232 },
		{ X_OUT, 0x20, 1, 64 },
		{ X_MMIO_W, MMIO + 0x48, 8, 0x6464 },
		{ X_OUT, 0x21, 4, 0x500 },	/* EFER: LME | LMA */
		{ X_HLT, 0, 0, 0 },
	};
	int n = ARRAY_SIZE(x);
	struct kvm_sregs sregs;
	struct setup s;
	bool ok;

	if (!setup(&s, dev)) {
		tap_ok(false, "mode switch: set up a VM");
		return;
	}
	build_long_tables(s.high, HIGH_GPA, PML4);
	/* KVM lets a guest set EFER.LME only if its CPUID has long mode */
	if (!vcpu_set_supported_cpuid(&s.vm, &s.vcpu))
		tap_diag("cannot give the vCPU the supported CPUID");
	vcpu_real_mode(&s.vcpu, 0x4000);
	ok = run_expect(&s.vcpu, x, n) == n;
	tap_ok(ok, "the guest switches real -> protected -> long mode by itself");
	ioctl(s.vcpu.fd, KVM_GET_SREGS, &sregs);
	tap_ok(ok && sregs.cs.l && (sregs.efer & 0x400) &&
	       (sregs.cr0 & 0x80000001) == 0x80000001,
	       "KVM_GET_SREGS then shows long mode (CS.L %u, EFER %#llx, CR0 %#llx)",
	       sregs.cs.l, (unsigned long long)sregs.efer,
	       (unsigned long long)sregs.cr0);
	teardown(&s);
}

/* Collect what OUTS sends to @port, however the exits split it. */
static int string_io(const char *dev)
{
	static const uint8_t out_b[] = "ABCD";
	static const uint16_t out_w[] = { 0x1111, 0x2222, 0x3333 };
	static const uint32_t out_l[] = { 0xaaaabbbb, 0xccccdddd };
	static const uint8_t in_b[] = { 1, 2, 3, 4, 5 };
	static const uint16_t in_w[] = { 0xf00d, 0xcafe };
	uint8_t got30[32], got32[8], got33[2];
	int n30 = 0, n32 = 0, n33 = 0, in_b_done = 0, in_w_done = 0;
	struct kvm_regs regs;
	struct kvm_run *run;
	struct setup s;
	uint8_t *data;
	int i, bytes, ok = 1;

	if (!setup(&s, dev))
		return 0;
	run = s.vcpu.run;
	memcpy(s.low + 0x6000, out_b, 4);
	memcpy(s.low + 0x6010, out_w, sizeof(out_w));
	memcpy(s.low + 0x6020, out_l, sizeof(out_l));
	memcpy(s.low + 0x6200, "wxyz", 4);
	vcpu_real_mode(&s.vcpu, 0x5000);
	for (i = 0; i < 64; i++) {
		if (vcpu_run(&s.vcpu) || run->exit_reason != KVM_EXIT_IO)
			break;
		data = (uint8_t *)run + run->io.data_offset;
		bytes = run->io.size * run->io.count;
		if (run->io.direction == KVM_EXIT_IO_OUT) {
			uint8_t *dst = run->io.port == 0x30 ? got30 + n30 :
				       run->io.port == 0x32 ? got32 + n32 :
				       got33 + n33;
			int room = run->io.port == 0x30 ? 32 - n30 :
				   run->io.port == 0x32 ? 8 - n32 : 2 - n33;

			if (bytes > room)
				break;
			memcpy(dst, data, bytes);
			if (run->io.port == 0x30)
				n30 += bytes;
			else if (run->io.port == 0x32)
				n32 += bytes;
			else
				n33 += bytes;
		} else if (run->io.size == 1) {
			memcpy(data, in_b + in_b_done, bytes);
			in_b_done += run->io.count;
		} else {
			memcpy(data, (uint8_t *)in_w + in_w_done * 2, bytes);
			in_w_done += run->io.count;
		}
	}
	ok = run->exit_reason == KVM_EXIT_HLT;
	tap_ok(ok && n30 == 4 + 6 + 8 && !memcmp(got30, out_b, 4) &&
	       !memcmp(got30 + 4, out_w, 6) && !memcmp(got30 + 10, out_l, 8),
	       "REP OUTSB/OUTSW/OUTSD send the guest's bytes, words, dwords");
	tap_ok(ok && in_b_done == 5 && in_w_done == 2 &&
	       !memcmp(s.low + 0x6100, in_b, 5) &&
	       !memcmp(s.low + 0x6110, in_w, 4),
	       "REP INSB/INSW land in guest memory");
	tap_ok(ok && n32 == 4 && !memcmp(got32, "zyxw", 4),
	       "REP OUTSB with DF=1 walks down (got %.4s)", (char *)got32);
	tap_ok(ok && n33 == 1 && got33[0] == 'A', "OUTSB without REP sends one byte");
	ioctl(s.vcpu.fd, KVM_GET_REGS, &regs);
	tap_ok(ok && (regs.rcx & 0xffff) == 0 && (regs.rsi & 0xffff) == 0x6001 &&
	       (regs.rdi & 0xffff) == 0x6114,
	       "SI, DI and CX end where the architecture says (si %#llx di %#llx cx %#llx)",
	       regs.rsi, regs.rdi, regs.rcx);
	teardown(&s);
	return 1;
}

int main(int argc, char **argv)
{
	const char *dev = test_device(argc, argv);
	static const char *const names[] = {
		"real mode", "32-bit protected mode", "32-bit paging",
		"PAE paging", "64-bit long mode",
	};
	int i;

	tap_plan(12);
	tap_diag("device %s", dev);
	for (i = 0; i < 5; i++)
		one_mode(dev, names[i], i);
	mode_switch(dev);
	if (!string_io(dev))
		tap_bail("cannot set up the string I/O VM");
	tap_done();
}
