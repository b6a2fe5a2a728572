// SPDX-License-Identifier: GPL-2.0-only
/*
 * What the VMM's CPUID table withholds stays off: with XSAVE, FSGSBASE,
 * RDTSCP and RDPID taken out of KVM_SET_CPUID2, KVM_SET_SREGS refuses
 * CR4.OSXSAVE, and a long-mode guest's MOV to CR4 of OSXSAVE or
 * FSGSBASE, its RDMSR of TSC_AUX are #GP, its XSETBV #UD.  The same
 * guest with everything KVM_GET_SUPPORTED_CPUID offers may use them.
 * CR4.VMXE is refused without VMX in CPUID, which Vireo never offers
 * (no nested virtualization yet).
 */
#include <linux/kvm.h>
#include <sys/ioctl.h>

#include "lib/guest.h"
#include "lib/tap.h"
#include "lib/x86.h"

#define CR4_VMXE	0x2000ULL
#define CR4_FSGSBASE	0x10000ULL
#define NR_CPUID	256

enum {
	R_OSXSAVE, R_FSGSBASE, R_OSFXSR, R_OSFXSR_SET, R_VMXE, R_TSC_AUX,
	R_XSETBV, R_XSETBV_VEC, NR_RESULTS
};

/* per try: did it fault; filled in by the guest */
static volatile uint64_t res[NR_RESULTS];
static volatile uint64_t skip_len;

static GUEST_CODE void skip_insn(struct x86_regs *regs)
{
	regs->rip += skip_len;
}

static GUEST_CODE uint64_t read_cr4(void)
{
	uint64_t v;

	asm volatile("mov %%cr4, %0" : "=r" (v));
	return v;
}

/* MOV %rax, %cr4 is 0f 22 e0: three bytes.  True if it faulted. */
static GUEST_CODE bool try_cr4(uint64_t val)
{
	uint32_t n = x86_log.n;

	skip_len = 3;
	asm volatile("mov %%rax, %%cr4" : : "a" (val) : "memory");
	return x86_log.n != n;
}

static GUEST_CODE void guest_main(uint64_t arg)
{
	uint64_t cr4 = read_cr4();
	uint32_t n;

	(void)arg;
	res[R_OSXSAVE] = try_cr4(cr4 | X86_CR4_OSXSAVE);
	try_cr4(cr4);
	res[R_FSGSBASE] = try_cr4(cr4 | CR4_FSGSBASE);
	try_cr4(cr4);
	res[R_OSFXSR] = try_cr4(cr4 | X86_CR4_OSFXSR);
	res[R_OSFXSR_SET] = !!(read_cr4() & X86_CR4_OSFXSR);
	res[R_VMXE] = try_cr4(read_cr4() | CR4_VMXE);
	try_cr4(cr4);

	n = x86_log.n;
	skip_len = 2;			/* RDMSR: 0f 32 */
	(void)rdmsr(MSR_TSC_AUX);
	res[R_TSC_AUX] = x86_log.n != n;

	/* XSETBV (0f 01 d1) with CR4.OSXSAVE clear */
	n = x86_log.n;
	skip_len = 3;
	asm volatile("xsetbv" : : "a" (1), "d" (0), "c" (0) : "memory");
	res[R_XSETBV] = x86_log.n != n;
	res[R_XSETBV_VEC] = x86_log.last_vector;
	GUEST_DONE();
}

struct cpuid_buf {
	struct kvm_cpuid2 hdr;
	struct kvm_cpuid_entry2 e[NR_CPUID];
};

static struct cpuid_buf cpuid;

static struct kvm_cpuid_entry2 *leaf(uint32_t fn, uint32_t idx)
{
	uint32_t i;

	for (i = 0; i < cpuid.hdr.nent; i++)
		if (cpuid.e[i].function == fn && cpuid.e[i].index == idx)
			return &cpuid.e[i];
	return NULL;
}

/* The supported table, less VMX, XSAVE (AVX), FSGSBASE, RDTSCP, RDPID */
static bool set_cpuid(struct guest_vm *g, bool restricted)
{
	struct kvm_cpuid_entry2 *e;

	cpuid.hdr.nent = NR_CPUID;
	if (ioctl(g->vm.kvm, KVM_GET_SUPPORTED_CPUID, &cpuid))
		return false;
	if (restricted) {
		e = leaf(1, 0);
		if (e)
			e->ecx &= ~(1U << 5 | 1U << 26 | 1U << 27 | 1U << 28);
		e = leaf(7, 0);
		if (e) {
			e->ebx &= ~1U;
			e->ecx &= ~(1U << 22);
		}
		e = leaf(0x80000001, 0);
		if (e)
			e->edx &= ~(1U << 27);
	}
	return !ioctl(g->vcpu.fd, KVM_SET_CPUID2, &cpuid);
}

static bool has(uint32_t fn, int reg, int bit)
{
	struct kvm_cpuid_entry2 *e = leaf(fn, 0);
	uint32_t v;

	if (!e)
		return false;
	v = reg == 1 ? e->ebx : reg == 2 ? e->ecx : e->edx;
	return v & (1U << bit);
}

static bool run_guest(struct guest_vm *g)
{
	struct ucall uc;

	memset((void *)res, 0xff, sizeof(res));
	x86_handlers[6] = skip_insn;
	x86_handlers[13] = skip_insn;
	if (guest_run(g, &uc) == UCALL_DONE)
		return true;
	tap_diag("exit %s, ucall %llu %s line %llu",
		 exit_name(g->vcpu.run->exit_reason),
		 (unsigned long long)uc.cmd, uc.expr ? uc.expr : "",
		 (unsigned long long)uc.line);
	return false;
}

static int set_cr4(struct guest_vm *g, uint64_t bits)
{
	struct kvm_sregs s;
	int ret;

	if (ioctl(g->vcpu.fd, KVM_GET_SREGS, &s))
		return -1;
	s.cr4 |= bits;
	ret = ioctl(g->vcpu.fd, KVM_SET_SREGS, &s);
	if (!ret) {
		s.cr4 &= ~bits;
		ioctl(g->vcpu.fd, KVM_SET_SREGS, &s);
	}
	return ret;
}

int main(int argc, char **argv)
{
	const char *dev = test_device(argc, argv);
	bool xsave, fsgs, aux, vmx, ok;
	struct guest_vm g;
	int ret;

	tap_plan(11);

	/* withheld */
	if (!x86_guest_create(&g, dev, guest_main, 0) || !set_cpuid(&g, true))
		tap_bail("cannot build a guest with a restricted CPUID");
	ret = set_cr4(&g, X86_CR4_OSXSAVE);
	TAP_ERRNO(ret, EINVAL,
		  "KVM_SET_SREGS with CR4.OSXSAVE is EINVAL without XSAVE in CPUID");
	ret = set_cr4(&g, CR4_VMXE);
	TAP_ERRNO(ret, EINVAL,
		  "KVM_SET_SREGS with CR4.VMXE is EINVAL without VMX in CPUID");
	ok = run_guest(&g);
	tap_ok(ok && res[R_OSXSAVE] == 1,
	       "without XSAVE the guest's MOV to CR4.OSXSAVE is #GP");
	tap_ok(ok && res[R_FSGSBASE] == 1,
	       "without FSGSBASE the guest's MOV to CR4.FSGSBASE is #GP");
	tap_ok(ok && res[R_OSFXSR] == 0 && res[R_OSFXSR_SET] == 1 &&
	       res[R_VMXE] == 1,
	       "CR4.OSFXSR is the guest's to set, CR4.VMXE is #GP");
	tap_ok(ok && res[R_TSC_AUX] == 1,
	       "without RDTSCP and RDPID its RDMSR of TSC_AUX is #GP");
	tap_ok(ok && res[R_XSETBV] == 1 && res[R_XSETBV_VEC] == 6,
	       "its XSETBV is #UD (vector %llu)",
	       (unsigned long long)res[R_XSETBV_VEC]);
	guest_vm_destroy(&g);

	/* granted */
	if (!x86_guest_create(&g, dev, guest_main, 0) || !set_cpuid(&g, false))
		tap_bail("cannot build a guest with the supported CPUID");
	xsave = has(1, 2, 26);
	fsgs = has(7, 1, 0);
	aux = has(0x80000001, 3, 27) || has(7, 2, 22);
	vmx = has(1, 2, 5);
	ret = set_cr4(&g, X86_CR4_OSXSAVE);
	tap_ok(xsave ? ret == 0 : ret == -1,
	       "with the supported CPUID (XSAVE %s) KVM_SET_SREGS of CR4.OSXSAVE %s",
	       xsave ? "yes" : "no", xsave ? "succeeds" : "fails");
	ok = run_guest(&g);
	tap_ok(ok && res[R_OSXSAVE] == !xsave && res[R_FSGSBASE] == !fsgs,
	       "the guest's MOV to CR4 of OSXSAVE (%s) and FSGSBASE (%s) follows CPUID",
	       xsave ? "offered" : "withheld", fsgs ? "offered" : "withheld");
	tap_ok(ok && res[R_TSC_AUX] == !aux,
	       "its RDMSR of TSC_AUX (%s) follows CPUID",
	       aux ? "offered" : "withheld");
	tap_ok(ok && res[R_VMXE] == !vmx,
	       "and CR4.VMXE follows CPUID too (VMX %s)",
	       vmx ? "offered: KVM's nested VMX" : "withheld");
	guest_vm_destroy(&g);
	tap_done();
}
