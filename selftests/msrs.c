// SPDX-License-Identifier: GPL-2.0-only
/*
 * MSRs: KVM_GET_MSR_INDEX_LIST and KVM_GET_MSR_FEATURE_INDEX_LIST,
 * KVM_SET_MSRS/KVM_GET_MSRS round trips and their partial success, and
 * a long-mode guest that reads the host's values with RDMSR, writes its
 * own with WRMSR, takes #GP through its IDT for an unknown MSR and a
 * non-canonical LSTAR, and reads the TSC the host wrote; where the CPU
 * has IA32_TSC_ADJUST, the guest moves its TSC through it and sees a
 * WRMSR of the TSC move it.
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "lib/guest.h"
#include "lib/tap.h"
#include "lib/x86.h"

#define UNKNOWN_MSR	0x12345678	/* no CPU or KVM has it */
#define MSR_MTRR_PHYSBASE0	0x200
#define MSR_MTRR_FIX64K		0x250
#define MSR_MTRR_DEF_TYPE	0x2ff
#define NONCANONICAL	0x8000000000001000ULL
#define BAD_PAT		0x0007040600070402ULL
#define TSC_START	0x10000000000ULL
#define MSR_IA32_TSC_ADJUST	0x0000003b
#define TSC_JUMP	0x100000000000ULL	/* through TSC_ADJUST */
#define TSC_JUMP2	0x1000000000ULL		/* through a TSC write */
#define MAX_CASES	16

struct msr_case {
	uint32_t index;
	const char *name;
	uint64_t host;		/* the host writes it, the guest reads it */
	uint64_t guest;		/* the guest writes it, the host reads it */
	uint64_t seen;		/* what the guest's RDMSR returned */
};

#define CASE(i, h, g)	{ .index = i, .name = #i + 4, .host = h, .guest = g }

static struct msr_case msr_tab[MAX_CASES] = {
	CASE(MSR_STAR, 0x0023001000000000ULL, 0x001b000800000000ULL),
	CASE(MSR_LSTAR, 0xffffffff81000000ULL, 0xffffffff82345670ULL),
	CASE(MSR_CSTAR, 0xffffffff81000040ULL, 0x00007fff00001000ULL),
	CASE(MSR_SYSCALL_MASK, 0x47700, 0x700),
	CASE(MSR_KERNEL_GS_BASE, 0xffff888000000000ULL, 0x00007f0000001000ULL),
	CASE(MSR_IA32_SYSENTER_CS, 0x10, 0x28),
	/* 32-bit values: AMD keeps only the low half of these two */
	CASE(MSR_IA32_SYSENTER_ESP, 0x81234560, 0x9abcdef0),
	CASE(MSR_IA32_SYSENTER_EIP, 0x81000000, 0x82000000),
	CASE(MSR_IA32_CR_PAT, 0x0007010600070106ULL, 0x0406050704060507ULL),
	/* bits 11 and 12 (BTS/PEBS unavailable) are read-only to the guest */
	CASE(MSR_IA32_MISC_ENABLE, 0x1801, 0x1800),
	/* MTRRs: default type WB enabled, a variable range, a fixed one */
	CASE(MSR_MTRR_DEF_TYPE, 0xc06, 0x806),
	CASE(MSR_MTRR_PHYSBASE0, 0x80000006, 0x40000000),
	CASE(MSR_MTRR_FIX64K, 0x0606060606060606ULL, 0x0500050005000500ULL),
};

static int ncases = 13;

/* what the guest saw of the #GPs and the TSC */
static volatile uint64_t gp_rip, gp_rax, pat_after, tsc_seen;
static volatile bool has_tsc_adjust;
static volatile uint64_t adj[3], tsc_before, tsc_after;

static GUEST_CODE void skip_gp(struct x86_regs *regs)
{
	regs->rip += 2;		/* RDMSR and WRMSR are 0f 32 and 0f 30 */
}

static GUEST_CODE void guest_main(uint64_t arg)
{
	uint64_t rip, rax;
	int i;

	(void)arg;
	for (i = 0; i < ncases; i++)
		msr_tab[i].seen = rdmsr(msr_tab[i].index);
	GUEST_SYNC(1);
	for (i = 0; i < ncases; i++)
		wrmsr(msr_tab[i].index, msr_tab[i].guest);
	GUEST_SYNC(2);

	/* RDMSR of an unknown MSR: #GP(0), EAX and EDX left alone */
	asm volatile("lea 1f(%%rip), %0\n"
		     "1: rdmsr"
		     : "=&r" (rip), "=a" (rax)
		     : "c" (UNKNOWN_MSR), "a" (0x5a5a5a5a), "d" (0)
		     : "memory");
	gp_rip = rip;
	gp_rax = rax;
	GUEST_SYNC(3);

	/*
	 * A reserved memory type (2) in PAT: #GP(0), PAT unchanged.  (Not a
	 * non-canonical LSTAR: the CPU checks that one, and QEMU's TCG
	 * does not.)
	 */
	wrmsr(MSR_IA32_CR_PAT, BAD_PAT);
	pat_after = rdmsr(MSR_IA32_CR_PAT);
	GUEST_SYNC(4);

	tsc_seen = rdtsc();
	GUEST_SYNC(5);

	if (has_tsc_adjust) {
		adj[0] = rdmsr(MSR_IA32_TSC_ADJUST);
		tsc_before = rdtsc();
		wrmsr(MSR_IA32_TSC_ADJUST, adj[0] + TSC_JUMP);
		tsc_after = rdtsc();
		adj[1] = rdmsr(MSR_IA32_TSC_ADJUST);
		wrmsr(MSR_IA32_TSC, rdtsc() + TSC_JUMP2);
		adj[2] = rdmsr(MSR_IA32_TSC_ADJUST);
		GUEST_SYNC(6);
	}
	GUEST_DONE();
}

static const uint32_t must_list[] = {
	MSR_STAR, MSR_LSTAR, MSR_CSTAR, MSR_SYSCALL_MASK, MSR_KERNEL_GS_BASE,
	MSR_IA32_SYSENTER_CS, MSR_IA32_SYSENTER_ESP, MSR_IA32_SYSENTER_EIP,
	MSR_IA32_TSC, MSR_IA32_CR_PAT,
};

static struct {
	struct kvm_msr_list hdr;
	uint32_t idx[1024];
} list;

static bool listed(uint32_t index)
{
	uint32_t i;

	for (i = 0; i < list.hdr.nmsrs; i++)
		if (list.idx[i] == index)
			return true;
	return false;
}

static void test_lists(int kvm)
{
	uint32_t i, n;
	bool ok;
	int ret;

	list.hdr.nmsrs = 1;
	ret = ioctl(kvm, KVM_GET_MSR_INDEX_LIST, &list);
	n = list.hdr.nmsrs;
	tap_ok(ret == -1 && errno == E2BIG && n > 10 && n <= 1024,
	       "KVM_GET_MSR_INDEX_LIST with room for 1 is E2BIG and says %u",
	       n);
	list.hdr.nmsrs = 1024;
	ret = ioctl(kvm, KVM_GET_MSR_INDEX_LIST, &list);
	tap_ok(ret == 0 && list.hdr.nmsrs == n,
	       "KVM_GET_MSR_INDEX_LIST lists %u MSRs", list.hdr.nmsrs);
	ok = ret == 0;
	for (i = 0; ok && i < ARRAY_SIZE(must_list); i++) {
		ok = listed(must_list[i]);
		if (!ok)
			tap_diag("MSR %#x is not in the list", must_list[i]);
	}
	tap_ok(ok, "the list has STAR, LSTAR, CSTAR, SFMASK, KERNEL_GS_BASE, SYSENTER_*, TSC, PAT");
	/* KVM migrates EFER through KVM_SET_SREGS, not the MSR list */
	tap_diag("EFER is %sin the list", listed(MSR_EFER) ? "" : "not ");

	list.hdr.nmsrs = 0;
	ret = ioctl(kvm, KVM_GET_MSR_FEATURE_INDEX_LIST, &list);
	n = list.hdr.nmsrs;
	ok = ret == -1 && errno == E2BIG && n > 0 && n <= 1024;
	list.hdr.nmsrs = 1024;
	ok = ok && ioctl(kvm, KVM_GET_MSR_FEATURE_INDEX_LIST, &list) == 0 &&
	     list.hdr.nmsrs == n;
	tap_ok(ok, "KVM_GET_MSR_FEATURE_INDEX_LIST: E2BIG with no room, then %u MSRs",
	       n);
}

struct msr_buf {
	struct kvm_msrs hdr;
	struct kvm_msr_entry e[MAX_CASES];
};

static void fill(struct msr_buf *b, bool guest_values)
{
	int i;

	memset(b, 0, sizeof(*b));
	b->hdr.nmsrs = ncases;
	for (i = 0; i < ncases; i++) {
		b->e[i].index = msr_tab[i].index;
		b->e[i].data = guest_values ? msr_tab[i].guest : msr_tab[i].host;
	}
}

/* KVM_GET_MSRS of every case; true if all match host or guest values */
static bool check_all(struct vcpu *vcpu, bool guest_values)
{
	struct msr_buf b;
	bool ok = true;
	uint64_t want;
	int i, ret;

	fill(&b, false);
	for (i = 0; i < ncases; i++)
		b.e[i].data = 0xdeadbeef;
	ret = ioctl(vcpu->fd, KVM_GET_MSRS, &b);
	if (ret != ncases) {
		tap_diag("KVM_GET_MSRS returned %d of %d", ret, ncases);
		return false;
	}
	for (i = 0; i < ncases; i++) {
		want = guest_values ? msr_tab[i].guest : msr_tab[i].host;
		if (b.e[i].data != want) {
			tap_diag("%s reads %#llx, not %#llx", msr_tab[i].name,
				 (unsigned long long)b.e[i].data,
				 (unsigned long long)want);
			ok = false;
		}
	}
	return ok;
}

static void test_partial(struct vcpu *vcpu)
{
	struct msr_buf b;
	uint64_t star, cstar, kgs;
	int ret;

	/* STAR, CSTAR, an unknown MSR, KERNEL_GS_BASE: stops at entry 2 */
	memset(&b, 0, sizeof(b));
	b.hdr.nmsrs = 4;
	b.e[0] = (struct kvm_msr_entry){ .index = MSR_STAR, .data = 0x1111 };
	b.e[1] = (struct kvm_msr_entry){ .index = MSR_CSTAR, .data = 0x2222 };
	b.e[2] = (struct kvm_msr_entry){ .index = UNKNOWN_MSR, .data = 1 };
	b.e[3] = (struct kvm_msr_entry){ .index = MSR_KERNEL_GS_BASE,
					 .data = 0x3333 };
	ret = ioctl(vcpu->fd, KVM_SET_MSRS, &b);
	tap_ok(ret == 2 && x86_get_msr(vcpu, MSR_STAR, &star) &&
	       x86_get_msr(vcpu, MSR_CSTAR, &cstar) &&
	       x86_get_msr(vcpu, MSR_KERNEL_GS_BASE, &kgs) &&
	       star == 0x1111 && cstar == 0x2222 && kgs != 0x3333,
	       "KVM_SET_MSRS with an unknown MSR third returns 2 (got %d): the first two written, the last not",
	       ret);

	/* a non-canonical LSTAR second: stops at entry 1 */
	b.hdr.nmsrs = 3;
	b.e[0] = (struct kvm_msr_entry){ .index = MSR_STAR, .data = 0x4444 };
	b.e[1] = (struct kvm_msr_entry){ .index = MSR_LSTAR,
					 .data = NONCANONICAL };
	b.e[2] = (struct kvm_msr_entry){ .index = MSR_CSTAR, .data = 0x5555 };
	ret = ioctl(vcpu->fd, KVM_SET_MSRS, &b);
	tap_ok(ret == 1 && x86_get_msr(vcpu, MSR_STAR, &star) &&
	       x86_get_msr(vcpu, MSR_CSTAR, &cstar) && star == 0x4444 &&
	       cstar == 0x2222,
	       "KVM_SET_MSRS with a non-canonical LSTAR second returns 1 (got %d)",
	       ret);

	b.hdr.nmsrs = 3;
	b.e[0] = (struct kvm_msr_entry){ .index = MSR_STAR };
	b.e[1] = (struct kvm_msr_entry){ .index = UNKNOWN_MSR };
	b.e[2] = (struct kvm_msr_entry){ .index = MSR_CSTAR };
	ret = ioctl(vcpu->fd, KVM_GET_MSRS, &b);
	tap_ok(ret == 1 && b.e[0].data == 0x4444,
	       "KVM_GET_MSRS with an unknown MSR second returns 1 (got %d)",
	       ret);

	/* KVM takes fewer than MAX_IO_MSRS (256) entries at once */
	b.hdr.nmsrs = 256;
	ret = ioctl(vcpu->fd, KVM_GET_MSRS, &b);
	TAP_ERRNO(ret, E2BIG, "KVM_GET_MSRS of 256 entries is E2BIG");
}

int main(int argc, char **argv)
{
	const char *dev = test_device(argc, argv);
	struct kvm_cpuid_entry2 ext;
	struct kvm_sregs sregs;
	struct msr_buf b;
	struct guest_vm g;
	struct ucall uc;
	uint64_t v, bound;
	long khz;
	bool ok;
	int i, ret;

	tap_plan(18);
	if (!x86_guest_create(&g, dev, guest_main, 0))
		tap_bail("cannot build a long-mode guest with an IDT");
	test_lists(g.vm.kvm);

	/* TSC_AUX exists for the guest only with RDTSCP (or RDPID) */
	if (x86_supported_cpuid(g.vm.kvm, 0x80000001, 0, &ext) &&
	    (ext.edx & (1U << 27)))
		msr_tab[ncases++] = (struct msr_case)CASE(MSR_TSC_AUX, 0x123,
							0x456);
	else
		tap_diag("no RDTSCP: TSC_AUX left out");

	ok = ioctl(g.vcpu.fd, KVM_GET_SREGS, &sregs) == 0 &&
	     x86_get_msr(&g.vcpu, MSR_EFER, &v);
	tap_ok(ok && v == sregs.efer && (v & 0x500) == 0x500,
	       "KVM_GET_MSRS of EFER is the KVM_SET_SREGS value (%#llx)",
	       (unsigned long long)v);

	fill(&b, false);
	ret = ioctl(g.vcpu.fd, KVM_SET_MSRS, &b);
	tap_ok(ret == ncases && check_all(&g.vcpu, false),
	       "KVM_SET_MSRS then KVM_GET_MSRS of %d MSRs (set returned %d)",
	       ncases, ret);
	test_partial(&g.vcpu);

	/* put the host values back for the guest */
	fill(&b, false);
	ret = ioctl(g.vcpu.fd, KVM_SET_MSRS, &b);
	x86_handlers[13] = skip_gp;
	ok = ret == ncases && guest_run(&g, &uc) == UCALL_SYNC && uc.arg == 1;
	for (i = 0; ok && i < ncases; i++) {
		if (msr_tab[i].seen != msr_tab[i].host) {
			tap_diag("the guest read %s = %#llx, not %#llx",
				 msr_tab[i].name,
				 (unsigned long long)msr_tab[i].seen,
				 (unsigned long long)msr_tab[i].host);
			ok = false;
		}
	}
	tap_ok(ok, "the guest's RDMSR sees every value the host set");

	ok = guest_run(&g, &uc) == UCALL_SYNC && uc.arg == 2;
	tap_ok(ok && check_all(&g.vcpu, true),
	       "KVM_GET_MSRS sees every value the guest's WRMSR wrote");

	ok = guest_run(&g, &uc) == UCALL_SYNC && uc.arg == 3;
	tap_ok(ok && x86_log.count[13] == 1 && x86_log.last_error == 0 &&
	       x86_log.last_rip == gp_rip && gp_rax == 0x5a5a5a5a,
	       "RDMSR of %#x is #GP(0) at the RDMSR through the guest's IDT (%u #GP, error %#llx)",
	       UNKNOWN_MSR, x86_log.count[13],
	       (unsigned long long)x86_log.last_error);

	ok = guest_run(&g, &uc) == UCALL_SYNC && uc.arg == 4;
	tap_ok(ok && x86_log.count[13] == 2 && x86_log.last_error == 0 &&
	       pat_after == msr_tab[8].guest /* PAT */,
	       "WRMSR of a reserved PAT type is #GP(0), PAT unchanged (%#llx)",
	       (unsigned long long)pat_after);

	khz = ioctl(g.vcpu.fd, KVM_GET_TSC_KHZ, 0);
	bound = khz > 0 ? (uint64_t)khz * 1000 * 60 : 1ULL << 38;
	ok = x86_set_msr(&g.vcpu, MSR_IA32_TSC, TSC_START) &&
	     guest_run(&g, &uc) == UCALL_SYNC && uc.arg == 5;
	tap_ok(ok && tsc_seen >= TSC_START && tsc_seen < TSC_START + bound,
	       "after the host sets IA32_TSC to %#llx the guest's RDTSC reads %#llx",
	       TSC_START, (unsigned long long)tsc_seen);
	ok = x86_get_msr(&g.vcpu, MSR_IA32_TSC, &v);
	tap_ok(ok && v >= tsc_seen && v < TSC_START + bound,
	       "and KVM_GET_MSRS of IA32_TSC after it is later (%#llx)",
	       (unsigned long long)v);

	has_tsc_adjust = x86_supported_cpuid(g.vm.kvm, 7, 0, &ext) &&
			 (ext.ebx & (1U << 1));
	if (has_tsc_adjust) {
		ok = guest_run(&g, &uc) == UCALL_SYNC && uc.arg == 6 &&
		     x86_get_msr(&g.vcpu, MSR_IA32_TSC_ADJUST, &v);
		tap_ok(ok && adj[1] - adj[0] == TSC_JUMP &&
		       tsc_after - tsc_before >= TSC_JUMP &&
		       tsc_after - tsc_before < TSC_JUMP + bound &&
		       adj[2] - adj[1] <= TSC_JUMP2 &&
		       adj[2] - adj[1] + bound > TSC_JUMP2 && v == adj[2],
		       "IA32_TSC_ADJUST: +%#llx moves the TSC by %#llx; a TSC write %#llx ahead moves it by %#llx",
		       TSC_JUMP, (unsigned long long)(tsc_after - tsc_before),
		       TSC_JUMP2, (unsigned long long)(adj[2] - adj[1]));
	} else {
		tap_skip("no TSC_ADJUST in CPUID", "IA32_TSC_ADJUST");
	}

	ok = guest_run(&g, &uc) == UCALL_DONE;
	tap_ok(ok && x86_log.n == 2,
	       "the guest finishes having taken exactly two exceptions (ucall %llu %s line %llu)",
	       (unsigned long long)uc.cmd, uc.expr ? uc.expr : "",
	       (unsigned long long)uc.line);
	guest_vm_destroy(&g);
	tap_done();
}
