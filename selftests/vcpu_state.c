// SPDX-License-Identifier: GPL-2.0-only
/*
 * The whole vCPU state, saved and restored: a long-mode guest computes
 * in general, x87, SSE (and with AVX, YMM) registers, keeps values in
 * MSRs, debug registers, CR2 and FS/GS bases and checks them at every
 * step.  A first vCPU runs part of the work, is stopped with an
 * interrupt queued, and everything a VMM can read (CPUID, registers,
 * special registers, XSAVE, XCRs, MSRs, debug registers, events,
 * MP state, the clock) goes into a fresh VM's vCPU, which must read it
 * all back unchanged and then finish the work with the same result as
 * a guest that never moved.  This is what a snapshot or a live
 * migration does.
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "lib/guest.h"
#include "lib/tap.h"
#include "lib/x86.h"

#define STEPS		24
#define MOVE_AT		10	/* the first vCPU stops after this step */
#define IRQ_VECTOR	0x40
#define MAX_MSRS	255
#define CR2_MAGIC	0x00007fab12345000ULL
#define HV_VP_RUNTIME	0x40000010
#define HV_TIME_REF_COUNT 0x40000020

/* guest_x86.S: state kept in XMM0/1, ST(0) and YMM3/4 across exits */
void mig_vec_init(const uint64_t *seed, int avx);
void mig_vec_step(int avx);
void mig_vec_result(uint64_t *out, int avx);

struct result {
	uint64_t a, b;
	uint64_t vec[7];	/* mig_vec_result(): xmm0, xmm1, st0, ymm3.hi */
};

static struct result result;
static const uint64_t seed[4] = {
	0x0123456789abcdefULL, 0xfedcba9876543210ULL,
	0x0f1e2d3c4b5a6978ULL, 0x8796a5b4c3d2e1f0ULL,
};

static uint64_t g_xcr0;
static int g_avx;

static GUEST_CODE uint64_t read_cr(int n)
{
	uint64_t v = 0;

	if (n == 0)
		asm volatile("mov %%cr0, %0" : "=r" (v));
	else if (n == 2)
		asm volatile("mov %%cr2, %0" : "=r" (v));
	else
		asm volatile("mov %%cr4, %0" : "=r" (v));
	return v;
}

static GUEST_CODE void guest_work(uint64_t arg)
{
	uint64_t a = 1, b = arg, tsc, last_tsc = 0, cr0, cr4, kgs = 0;
	uint64_t dr0 = 0x7fff1000, dr7 = 0x400 | 0x00550000;
	int i;

	(void)x86_guest_enable_fpu(g_xcr0);
	cr0 = read_cr(0);
	cr4 = read_cr(4);
	mig_vec_init(seed, g_avx);
	asm volatile("mov %0, %%cr2" : : "r" (CR2_MAGIC));
	write_dr(0, dr0);
	write_dr(7, dr7);	/* breakpoint types set, none enabled */
	wrmsr(MSR_FS_BASE, 0x10000);
	wrmsr(MSR_KERNEL_GS_BASE, kgs);
	sti();
	for (i = 1; i <= STEPS; i++) {
		mig_vec_step(g_avx);
		a = a * 6364136223846793005ULL + b;
		b ^= a >> 17;
		/* what the last step left must still be there */
		GUEST_ASSERT(rdmsr(MSR_KERNEL_GS_BASE) == kgs);
		GUEST_ASSERT(rdmsr(MSR_FS_BASE) == 0x10000ULL * i);
		GUEST_ASSERT(read_cr(0) == cr0 && read_cr(4) == cr4);
		GUEST_ASSERT(read_cr(2) == CR2_MAGIC + 0x1000ULL * (i - 1));
		GUEST_ASSERT(read_dr(0) == dr0 + 0x10ULL * (i - 1));
		GUEST_ASSERT(read_dr(7) == dr7);
		GUEST_ASSERT(read_rflags() & 0x200);
		tsc = rdtsc();
		GUEST_ASSERT(tsc > last_tsc);
		last_tsc = tsc;
		kgs = a & 0x00007ffffffff000ULL;
		wrmsr(MSR_KERNEL_GS_BASE, kgs);
		wrmsr(MSR_FS_BASE, 0x10000ULL * (i + 1));
		asm volatile("mov %0, %%cr2"
			     : : "r" (CR2_MAGIC + 0x1000ULL * i));
		write_dr(0, dr0 + 0x10ULL * i);
		GUEST_SYNC(i);
	}
	result.a = a;
	result.b = b;
	mig_vec_result(result.vec, g_avx);
	GUEST_DONE();
}

struct cpuid_buf {
	struct kvm_cpuid2 hdr;
	struct kvm_cpuid_entry2 e[256];
};

struct msr_buf {
	struct kvm_msrs hdr;
	struct kvm_msr_entry e[MAX_MSRS];
};

/* Everything of a vCPU (and its VM's clock) a VMM saves */
struct state {
	struct cpuid_buf cpuid;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xsave xsave;
	struct kvm_xcrs xcrs;
	struct msr_buf msrs;
	struct kvm_debugregs dregs;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp;
	struct kvm_clock_data clock;
};

static struct state saved, loaded;
static uint32_t msr_index[1024];
static uint32_t nmsr_index;

static bool xcrs_ok;

#define IOCTL_OK(fd, req, arg) ({					\
	bool __ok = ioctl(fd, req, arg) >= 0;				\
	if (!__ok)							\
		tap_diag(#req " failed: %s", strerror(errno));		\
	__ok;								\
})

/* The MSRs of KVM_GET_MSR_INDEX_LIST this vCPU can read, with values */
static bool save_msrs(struct vcpu *vcpu, struct msr_buf *m)
{
	uint32_t i;
	uint64_t v;

	memset(m, 0, sizeof(*m));
	for (i = 0; i < nmsr_index && m->hdr.nmsrs < MAX_MSRS; i++) {
		if (!x86_get_msr(vcpu, msr_index[i], &v))
			continue;
		m->e[m->hdr.nmsrs].index = msr_index[i];
		m->e[m->hdr.nmsrs].data = v;
		m->hdr.nmsrs++;
	}
	return m->hdr.nmsrs >= 10;
}

static bool save(struct vm *vm, struct vcpu *vcpu, struct state *s)
{
	int fd = vcpu->fd;
	bool ok;

	memset(s, 0, sizeof(*s));
	/* 6.1's KVM leaves nent alone on success: mark the unused tail */
	memset(s->cpuid.e, 0xff, sizeof(s->cpuid.e));
	s->cpuid.hdr.nent = 256;
	ok = IOCTL_OK(fd, KVM_GET_CPUID2, &s->cpuid) &&
	     IOCTL_OK(fd, KVM_GET_REGS, &s->regs) &&
	     IOCTL_OK(fd, KVM_GET_SREGS, &s->sregs) &&
	     IOCTL_OK(fd, KVM_GET_XSAVE, &s->xsave) &&
	     (!xcrs_ok || IOCTL_OK(fd, KVM_GET_XCRS, &s->xcrs)) &&
	     IOCTL_OK(fd, KVM_GET_DEBUGREGS, &s->dregs) &&
	     IOCTL_OK(fd, KVM_GET_VCPU_EVENTS, &s->events) &&
	     IOCTL_OK(fd, KVM_GET_MP_STATE, &s->mp) &&
	     IOCTL_OK(vm->fd, KVM_GET_CLOCK, &s->clock);
	while (s->cpuid.hdr.nent &&
	       s->cpuid.e[s->cpuid.hdr.nent - 1].function == 0xffffffff)
		s->cpuid.hdr.nent--;
	return ok && save_msrs(vcpu, &s->msrs);
}

/*
 * The MSRs whose value differs from a new vCPU's, as QEMU restores
 * only what it knows to be in use: KVM refuses some of its
 * paravirtual MSRs (async #PF) without an in-kernel APIC even at 0.
 */
static bool restore_msrs(struct vcpu *vcpu, const struct msr_buf *m)
{
	uint32_t i;
	uint64_t v;

	for (i = 0; i < m->hdr.nmsrs; i++) {
		if (x86_get_msr(vcpu, m->e[i].index, &v) && v == m->e[i].data)
			continue;
		if (!x86_set_msr(vcpu, m->e[i].index, m->e[i].data)) {
			tap_diag("KVM_SET_MSRS refused MSR %#x = %#llx",
				 m->e[i].index,
				 (unsigned long long)m->e[i].data);
			return false;
		}
	}
	return true;
}

/* In the order QEMU restores: CPUID first, events and MP state last */
static bool restore(struct vm *vm, struct vcpu *vcpu, struct state *s)
{
	struct kvm_clock_data clock = { .clock = s->clock.clock };
	int fd = vcpu->fd;
	bool ok;

	ok = IOCTL_OK(fd, KVM_SET_CPUID2, &s->cpuid) &&
	     IOCTL_OK(fd, KVM_SET_SREGS, &s->sregs) &&
	     IOCTL_OK(fd, KVM_SET_REGS, &s->regs) &&
	     (!xcrs_ok || IOCTL_OK(fd, KVM_SET_XCRS, &s->xcrs)) &&
	     IOCTL_OK(fd, KVM_SET_XSAVE, &s->xsave);
	if (!ok)
		return false;
	if (!restore_msrs(vcpu, &s->msrs))
		return false;
	return IOCTL_OK(fd, KVM_SET_DEBUGREGS, &s->dregs) &&
	       IOCTL_OK(fd, KVM_SET_VCPU_EVENTS, &s->events) &&
	       IOCTL_OK(fd, KVM_SET_MP_STATE, &s->mp) &&
	       IOCTL_OK(vm->fd, KVM_SET_CLOCK, &clock);
}

static bool same(const char *what, const void *a, const void *b, size_t n)
{
	const uint8_t *p = a, *q = b;
	size_t i;

	for (i = 0; i < n; i++) {
		if (p[i] != q[i]) {
			tap_diag("%s differs at byte %zu: %#x, was %#x", what,
				 i, q[i], p[i]);
			return false;
		}
	}
	return true;
}

static bool same_events(const struct kvm_vcpu_events *a,
			const struct kvm_vcpu_events *b)
{
	return same("events.exception", &a->exception, &b->exception,
		    sizeof(a->exception)) &&
	       same("events.interrupt", &a->interrupt, &b->interrupt,
		    sizeof(a->interrupt)) &&
	       same("events.nmi", &a->nmi, &b->nmi, sizeof(a->nmi));
}

static bool same_msrs(const struct msr_buf *a, const struct msr_buf *b)
{
	uint32_t i;
	bool ok = a->hdr.nmsrs == b->hdr.nmsrs;

	if (!ok)
		tap_diag("%u MSRs readable, was %u", b->hdr.nmsrs,
			 a->hdr.nmsrs);
	for (i = 0; ok && i < a->hdr.nmsrs; i++) {
		if (a->e[i].index != b->e[i].index) {
			tap_diag("MSR %#x is not readable any more",
				 a->e[i].index);
			return false;
		}
		/*
		 * Counters run on: the TSC (the guest checks it never goes
		 * back) and KVM's Hyper-V run time and reference time.
		 */
		if (a->e[i].index == MSR_IA32_TSC ||
		    a->e[i].index == HV_VP_RUNTIME ||
		    a->e[i].index == HV_TIME_REF_COUNT)
			continue;
		if (a->e[i].data != b->e[i].data) {
			tap_diag("MSR %#x reads %#llx, was %#llx",
				 a->e[i].index,
				 (unsigned long long)b->e[i].data,
				 (unsigned long long)a->e[i].data);
			ok = false;
		}
	}
	return ok;
}

static uint64_t msr_of(const struct msr_buf *m, uint32_t index)
{
	uint32_t i;

	for (i = 0; i < m->hdr.nmsrs; i++)
		if (m->e[i].index == index)
			return m->e[i].data;
	return 0;
}

static void ucall_diag(struct guest_vm *g, const struct ucall *uc)
{
	tap_diag("exit %s, ucall %llu arg %llu (%s line %llu)",
		 exit_name(g->vcpu.run->exit_reason),
		 (unsigned long long)uc->cmd, (unsigned long long)uc->arg,
		 uc->expr ? uc->expr : "", (unsigned long long)uc->line);
}

/* Run steps @from to @to (ucalls in turn); past STEPS, to DONE. */
static bool run_steps(struct guest_vm *g, int from, int to)
{
	struct ucall uc;
	int i;

	for (i = from; i <= to && i <= STEPS; i++) {
		if (guest_run(g, &uc) != UCALL_SYNC || uc.arg != (uint64_t)i) {
			tap_diag("at step %d:", i);
			ucall_diag(g, &uc);
			return false;
		}
	}
	if (to > STEPS && guest_run(g, &uc) != UCALL_DONE) {
		ucall_diag(g, &uc);
		return false;
	}
	return true;
}

static bool new_guest(struct guest_vm *g, const char *dev)
{
	struct kvm_xcrs x = { .nr_xcrs = 1, .xcrs[0].value = g_xcr0 };

	if (!x86_guest_create(g, dev, guest_work, 0x5eed))
		return false;
	/* XCR0 from the host too: QEMU's TCG does not intercept XSETBV */
	if (xcrs_ok && ioctl(g->vcpu.fd, KVM_SET_XCRS, &x)) {
		tap_diag("KVM_SET_XCRS of %#llx failed",
			 (unsigned long long)g_xcr0);
		guest_vm_destroy(g);
		return false;
	}
	return true;
}

static void features(const char *dev)
{
	struct kvm_msr_list *list;
	struct kvm_cpuid_entry2 e1, ed;
	int kvm;

	kvm = open(dev, O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		tap_bail("cannot open %s", dev);
	if (!x86_supported_cpuid(kvm, 1, 0, &e1))
		tap_bail("no CPUID leaf 1 in KVM_GET_SUPPORTED_CPUID");
	xcrs_ok = (e1.ecx & (1U << 26)) &&
		  x86_supported_cpuid(kvm, 0xd, 0, &ed) &&
		  ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0;
	if (xcrs_ok) {
		g_xcr0 = XFEATURE_X87 | XFEATURE_SSE;
		g_avx = (e1.ecx & (1U << 28)) && (ed.eax & XFEATURE_AVX) &&
			x86_host_has_avx();
		if (g_avx)
			g_xcr0 |= XFEATURE_AVX;
	}
	tap_diag("guest XCR0 %#llx, AVX %s", (unsigned long long)g_xcr0,
		 g_avx ? "yes" : "no");

	list = calloc(1, sizeof(*list) + sizeof(msr_index));
	if (!list)
		tap_bail("out of memory");
	list->nmsrs = 1024;
	if (ioctl(kvm, KVM_GET_MSR_INDEX_LIST, list))
		tap_bail("KVM_GET_MSR_INDEX_LIST failed");
	nmsr_index = list->nmsrs;
	memcpy(msr_index, list->indices, nmsr_index * sizeof(uint32_t));
	free(list);
	close(kvm);
}

int main(int argc, char **argv)
{
	const char *dev = test_device(argc, argv);
	struct kvm_interrupt irq = { .irq = IRQ_VECTOR };
	struct guest_vm ref, src, dst;
	struct result want;
	bool ok;

	tap_plan(12);
	features(dev);

	/* the work done in one go */
	ok = new_guest(&ref, dev);
	ok = ok && run_steps(&ref, 1, STEPS + 1);
	want = result;
	tap_ok(ok && x86_log.n == 0 && want.a,
	       "a guest that never moves finishes %d steps (a = %#llx)",
	       STEPS, (unsigned long long)want.a);
	guest_vm_destroy(&ref);

	/* part of it, then an interrupt queued, and stop */
	memset(&result, 0, sizeof(result));
	if (!new_guest(&src, dev))
		tap_bail("cannot build the guest");
	ok = run_steps(&src, 1, MOVE_AT) &&
	     x86_vcpu_complete_io(&src.vcpu) &&
	     src.vcpu.run->ready_for_interrupt_injection &&
	     !ioctl(src.vcpu.fd, KVM_INTERRUPT, &irq);
	tap_ok(ok, "a second guest runs %d steps and takes KVM_INTERRUPT(%#x)",
	       MOVE_AT, IRQ_VECTOR);
	ok = ok && save(&src.vm, &src.vcpu, &saved);
	tap_ok(ok && saved.events.interrupt.injected &&
	       saved.events.interrupt.nr == IRQ_VECTOR,
	       "its whole state saves: %u CPUID entries, %u MSRs, the interrupt pending in the events",
	       saved.cpuid.hdr.nent, saved.msrs.hdr.nmsrs);
	tap_diag("saved: RIP %#llx, KERNEL_GS_BASE %#llx, CR2 %#llx, DR0 %#llx, XCR0 %#llx",
		 (unsigned long long)saved.regs.rip,
		 (unsigned long long)msr_of(&saved.msrs, MSR_KERNEL_GS_BASE),
		 (unsigned long long)saved.sregs.cr2,
		 (unsigned long long)saved.dregs.db[0],
		 (unsigned long long)saved.xcrs.xcrs[0].value);
	guest_vm_destroy(&src);	/* it never runs again */

	/* a new VM with the same memory (the image), a new vCPU */
	memset(&dst, 0, sizeof(dst));
	ok = ok && vm_create(&dst.vm, dev) && x86_vm_map_image(&dst.vm) &&
	     vcpu_create(&dst.vm, &dst.vcpu, 0);
	ok = ok && restore(&dst.vm, &dst.vcpu, &saved);
	tap_ok(ok, "all of it goes into a vCPU of a new VM");

	ok = ok && save(&dst.vm, &dst.vcpu, &loaded);
	tap_ok(ok && same("regs", &saved.regs, &loaded.regs,
			  sizeof(saved.regs)) &&
	       same("sregs", &saved.sregs, &loaded.sregs,
		    sizeof(saved.sregs)),
	       "which reads back the same registers and special registers");
	tap_ok(ok && same("xsave", &saved.xsave, &loaded.xsave,
			  sizeof(saved.xsave)) &&
	       same("xcrs", &saved.xcrs, &loaded.xcrs, sizeof(saved.xcrs)),
	       "the same XSAVE area and XCRs");
	tap_ok(ok && same_msrs(&saved.msrs, &loaded.msrs),
	       "the same %u MSRs (the clocks but moving on)",
	       loaded.msrs.hdr.nmsrs);
	tap_ok(ok && same("debugregs", &saved.dregs, &loaded.dregs,
			  sizeof(saved.dregs)),
	       "the same debug registers (DR0 %#llx, DR7 %#llx)",
	       (unsigned long long)loaded.dregs.db[0],
	       (unsigned long long)loaded.dregs.dr7);
	tap_ok(ok && same_events(&saved.events, &loaded.events) &&
	       loaded.mp.mp_state == saved.mp.mp_state,
	       "the same events and MP state");
	tap_ok(ok && loaded.clock.clock >= saved.clock.clock,
	       "and a clock that did not go back (%+lld ns)",
	       (long long)(loaded.clock.clock - saved.clock.clock));

	ok = ok && run_steps(&dst, MOVE_AT + 1, STEPS + 1);
	tap_ok(ok && !memcmp(&result, &want, sizeof(want)),
	       "the new vCPU finishes the work with the result of the guest that never moved");
	tap_ok(ok && x86_log.n == 1 && x86_log.seq[0] == IRQ_VECTOR,
	       "and the interrupt queued in the first reached the guest once, in the second (%u vectors, first %#x)",
	       x86_log.n, x86_log.seq[0]);
	if (dst.vcpu.run)
		vcpu_destroy(&dst.vm, &dst.vcpu);
	vm_destroy(&dst.vm);
	tap_done();
}
