// SPDX-License-Identifier: GPL-2.0-only
/*
 * The x86 vCPU as the core sees it: register ioctls, the run loop, and
 * the exits both vendors share (port and string I/O, MMIO through the
 * decoder, HLT, CPUID, MSRs, shutdown, failed entries).
 */
#define pr_fmt(fmt) "vireo: " fmt

#include <linux/kvm.h>
#include <linux/mm.h>
#include <linux/sched/signal.h>
#include <linux/uaccess.h>
#include <asm/cpufeature.h>
#include <asm/debugreg.h>
#include <asm/fpu/api.h>
#include <asm/fpu/xcr.h>
#include <asm/fpu/xstate.h>
#include <asm/processor.h>

#include <vireo/compat.h>
#include <vireo/core.h>
#include <vireo/insn.h>
#include <vireo/irq.h>
#include <vireo/mmu.h>

#define CREATE_TRACE_POINTS
#include "trace.h"

#define RFLAGS_FIXED		BIT(1)
#define RFLAGS_DF		BIT(10)
#define RFLAGS_VM		BIT(17)
#define CR0_PE			BIT(0)
#define CR0_NW			BIT(29)
#define CR0_CD			BIT(30)
#define CR0_PG			BIT(31)
#define CR4_PAE			BIT(5)
#define EFER_LME_BIT		BIT(8)
#define EFER_LMA_BIT		BIT(10)
#define GP_VECTOR		13
#define DR6_RESET_VALUE		0xffff0ff0ULL
#define DR7_RESET_VALUE		0x400ULL
#define DR7_ENABLE_BITS		0xffULL
#define KVM_ENOSYS_RET		1000
/* a guest that faults this often in a row on one page is stuck */
#define MAX_REPEATED_FAULTS	16

/*
 * What RESET and INIT both do to the state the core keeps: GPRs, RIP,
 * RFLAGS, XCR0, the debug registers, no event waiting.  The VMM's guest
 * debugging settings are not the CPU's and stay.
 */
static void reset_core_regs(struct vireo_vcpu *vcpu)
{
	memset(vcpu->regs, 0, sizeof(vcpu->regs));
	/* EDX after RESET: the processor signature (CPUID.1:EAX) */
	vcpu->regs[VCPU_RDX] = cpuid_eax(1);
	vcpu->rip = 0xfff0;
	vcpu->rflags = RFLAGS_FIXED;
	vcpu->pending = VCPU_PENDING_NONE;
	vcpu->xcr0 = XFEATURE_MASK_FP;
	memset(&vcpu->ev, 0, sizeof(vcpu->ev));
	memset(vcpu->dbg.db, 0, sizeof(vcpu->dbg.db));
	vcpu->dbg.dr6 = DR6_RESET_VALUE;
	vcpu->dbg.dr7 = DR7_RESET_VALUE;
}

void vireo_arch_vcpu_reset(struct vireo_vcpu *vcpu)
{
	memset(&vcpu->dbg, 0, sizeof(vcpu->dbg));
	reset_core_regs(vcpu);
	/* with the in-kernel APIC, the APs wait for INIT and SIPI */
	vcpu->mp_state = vcpu->apic && vcpu->id ?
			 KVM_MP_STATE_UNINITIALIZED : KVM_MP_STATE_RUNNABLE;
	vireo_msrs_reset(vcpu);
}

/* The host's XCR0: set once at boot, the same on every CPU. */
u64 vireo_host_xcr0;

void vireo_arch_init(void)
{
	if (boot_cpu_has(X86_FEATURE_XSAVE))
		vireo_host_xcr0 = xgetbv(XCR_XFEATURE_ENABLED_MASK);
}

void vireo_arch_vm_init(struct vireo_vm *vm)
{
	vireo_vm_init_clock(vm);
}

long vireo_arch_vm_ioctl(struct vireo_vm *vm, unsigned int ioctl,
			 unsigned long arg)
{
	switch (ioctl) {
	case KVM_GET_CLOCK:
		return vireo_get_clock(vm, (void __user *)arg);
	case KVM_SET_CLOCK:
		return vireo_set_clock(vm, (void __user *)arg);
	default:
		/* the irqchip family; -ENOTTY (as KVM) for the rest */
		return vireo_irq_vm_ioctl(vm, ioctl, (void __user *)arg);
	}
}

/* Queue an exception for the next entry; a pending one is replaced. */
void vireo_queue_exception(struct vireo_vcpu *vcpu, u8 vector,
			   bool has_error, u32 error_code)
{
	struct vireo_event *inj = &vcpu->ev.inject;

	/* an interrupt whose delivery was cut short comes back later */
	if (inj->valid && inj->type == VIREO_EV_INTR) {
		vcpu->ev.irq_queued = true;
		vcpu->ev.irq_vector = inj->vector;
	} else if (inj->valid && inj->type == VIREO_EV_NMI) {
		vcpu->ev.nmi_pending = true;
	}
	inj->valid = true;
	inj->type = VIREO_EV_EXCEPTION;
	inj->vector = vector;
	inj->has_error = has_error;
	inj->error_code = error_code;
	inj->insn_len = 0;
}
EXPORT_SYMBOL_GPL(vireo_queue_exception);

/* ---- registers ---- */

static void get_regs(struct vireo_vcpu *vcpu, struct kvm_regs *r)
{
	r->rax = vcpu->regs[VCPU_RAX];
	r->rbx = vcpu->regs[VCPU_RBX];
	r->rcx = vcpu->regs[VCPU_RCX];
	r->rdx = vcpu->regs[VCPU_RDX];
	r->rsi = vcpu->regs[VCPU_RSI];
	r->rdi = vcpu->regs[VCPU_RDI];
	r->rsp = vcpu->regs[VCPU_RSP];
	r->rbp = vcpu->regs[VCPU_RBP];
	r->r8 = vcpu->regs[VCPU_R8];
	r->r9 = vcpu->regs[VCPU_R9];
	r->r10 = vcpu->regs[VCPU_R10];
	r->r11 = vcpu->regs[VCPU_R11];
	r->r12 = vcpu->regs[VCPU_R12];
	r->r13 = vcpu->regs[VCPU_R13];
	r->r14 = vcpu->regs[VCPU_R14];
	r->r15 = vcpu->regs[VCPU_R15];
	r->rip = vcpu->rip;
	r->rflags = vcpu->rflags;
}

static void set_regs(struct vireo_vcpu *vcpu, const struct kvm_regs *r)
{
	vcpu->regs[VCPU_RAX] = r->rax;
	vcpu->regs[VCPU_RBX] = r->rbx;
	vcpu->regs[VCPU_RCX] = r->rcx;
	vcpu->regs[VCPU_RDX] = r->rdx;
	vcpu->regs[VCPU_RSI] = r->rsi;
	vcpu->regs[VCPU_RDI] = r->rdi;
	vcpu->regs[VCPU_RSP] = r->rsp;
	vcpu->regs[VCPU_RBP] = r->rbp;
	vcpu->regs[VCPU_R8] = r->r8;
	vcpu->regs[VCPU_R9] = r->r9;
	vcpu->regs[VCPU_R10] = r->r10;
	vcpu->regs[VCPU_R11] = r->r11;
	vcpu->regs[VCPU_R12] = r->r12;
	vcpu->regs[VCPU_R13] = r->r13;
	vcpu->regs[VCPU_R14] = r->r14;
	vcpu->regs[VCPU_R15] = r->r15;
	/*
	 * As KVM: port I/O the VMM moved RIP away from is not finished
	 * (QEMU's kvmvapic does that, reading the registers during an
	 * exit and writing them back).
	 */
	if (r->rip != vcpu->rip && (vcpu->pending == VCPU_PENDING_PIO_IN ||
				    vcpu->pending == VCPU_PENDING_PIO_OUT))
		vcpu->pending = VCPU_PENDING_NONE;
	vcpu->rip = r->rip;
	vcpu->rflags = r->rflags | RFLAGS_FIXED;
	/* new registers: whatever a previous exit left to finish is moot */
	vcpu->pending = VCPU_PENDING_NONE;
}

/*
 * CR4 bits of features the vCPU's CPUID does not grant (or that Vireo
 * never gives a guest: VMXE, SMXE, LA57, PKE) are reserved, as in KVM.
 */
bool vireo_cr4_valid(struct vireo_vcpu *vcpu, u64 cr4)
{
	static const struct {
		u64 bit;
		u32 leaf;
		u8 reg, shift;	/* reg: 1 EBX, 2 ECX, 3 EDX */
	} grants[] = {
		{ X86_CR4_FSGSBASE, 7, 1, 0 },
		{ X86_CR4_SMEP, 7, 1, 7 },
		{ X86_CR4_SMAP, 7, 1, 20 },
		{ X86_CR4_UMIP, 7, 2, 2 },
		{ X86_CR4_PCIDE, 1, 2, 17 },
		{ X86_CR4_OSXSAVE, 1, 2, 26 },
	};
	int i;

	if (cr4 & (X86_CR4_VMXE | X86_CR4_SMXE | X86_CR4_LA57 | X86_CR4_PKE |
		   X86_CR4_CET | GENMASK_ULL(63, 25)))
		return false;
	for (i = 0; i < ARRAY_SIZE(grants); i++)
		if ((cr4 & grants[i].bit) &&
		    !vireo_cpuid_has(vcpu, grants[i].leaf, 0, grants[i].reg,
				     grants[i].shift))
			return false;
	return true;
}
EXPORT_SYMBOL_GPL(vireo_cr4_valid);

/*
 * kvm_sregs.interrupt_bitmap: the external interrupt KVM_INTERRUPT queued
 * (or an exit cut short) that has not reached the guest yet, one bit.
 * VMMs without KVM_CAP_VCPU_EVENTS move it this way.
 */
static void sregs_get_pending_irq(struct vireo_vcpu *vcpu,
				  struct kvm_sregs *s)
{
	const struct vireo_event *inj = &vcpu->ev.inject;
	int vector = -1;

	if (inj->valid && inj->type == VIREO_EV_INTR)
		vector = inj->vector;
	else if (vcpu->ev.irq_queued)
		vector = vcpu->ev.irq_vector;
	if (vector >= 0)
		s->interrupt_bitmap[vector / 64] |= 1ULL << (vector % 64);
}

static void sregs_set_pending_irq(struct vireo_vcpu *vcpu,
				  const struct kvm_sregs *s)
{
	int i;

	for (i = 0; i < 256; i++) {
		if (s->interrupt_bitmap[i / 64] & (1ULL << (i % 64))) {
			/* it replaces the one it reported, not adds to it */
			if (vcpu->ev.inject.valid &&
			    vcpu->ev.inject.type == VIREO_EV_INTR)
				vcpu->ev.inject.valid = false;
			vcpu->ev.irq_queued = true;
			vcpu->ev.irq_vector = i;
			return;
		}
	}
}

/* The architectural consistency rules KVM applies to KVM_SET_SREGS. */
static bool sregs_valid(const struct kvm_sregs *s)
{
	if ((s->cr0 & CR0_PG) && !(s->cr0 & CR0_PE))
		return false;
	if ((s->cr0 & CR0_NW) && !(s->cr0 & CR0_CD))
		return false;
	if (s->cr0 >> 32 || s->cr4 >> 32)
		return false;
	if ((s->efer & EFER_LME_BIT) && (s->cr0 & CR0_PG)) {
		if (!(s->cr4 & CR4_PAE) || !(s->efer & EFER_LMA_BIT))
			return false;
	} else if ((s->efer & EFER_LMA_BIT) || s->cs.l) {
		return false;
	}
	return true;
}

/* ---- the in-kernel local APIC: INIT, SIPI, ioctls ---- */

/* What INIT does to the registers (SDM: processor state after INIT). */
static void vcpu_init_event(struct vireo_vcpu *vcpu)
{
	const struct vireo_backend *b = vcpu->vm->backend;
	struct kvm_segment data = {
		.limit = 0xffff, .type = 3, .present = 1, .s = 1,
	};
	struct kvm_sregs s;

	b->get_sregs(vcpu, &s);
	s.cs = data;
	s.cs.type = 0xb;
	s.cs.selector = 0xf000;
	s.cs.base = 0xffff0000;
	s.ds = data;
	s.es = data;
	s.fs = data;
	s.gs = data;
	s.ss = data;
	memset(&s.ldt, 0, sizeof(s.ldt));
	s.ldt.limit = 0xffff;
	s.ldt.type = 2;
	s.ldt.present = 1;
	s.tr = s.ldt;
	s.tr.type = 0xb;
	s.gdt.base = 0;
	s.gdt.limit = 0xffff;
	s.idt = s.gdt;
	/* CD and NW keep their values */
	s.cr0 = (s.cr0 & (CR0_CD | CR0_NW)) | X86_CR0_ET;
	s.cr2 = 0;
	s.cr3 = 0;
	s.cr4 = 0;
	s.cr8 = 0;
	s.efer = 0;
	memset(s.interrupt_bitmap, 0, sizeof(s.interrupt_bitmap));
	if (b->set_sregs(vcpu, &s))
		pr_warn_ratelimited("vCPU %d: INIT state refused\n", vcpu->id);

	reset_core_regs(vcpu);
	b->set_interrupt_shadow(vcpu, 0);
	b->set_nmi_mask(vcpu, false);
	set_bit(VCPU_REQ_TLB_FLUSH, &vcpu->requests);
}

/*
 * Act on an INIT or SIPI the local APIC took (vCPU thread).  INIT puts
 * an AP in wait-for-SIPI (the BSP starts over at the reset vector); a
 * SIPI starts a waiting AP in real mode at vector << 12 and is dropped
 * otherwise.
 */
static void apic_accept_events(struct vireo_vcpu *vcpu)
{
	const struct vireo_backend *b = vcpu->vm->backend;
	struct kvm_sregs s;
	int vector;

	if (vireo_lapic_take_init(vcpu)) {
		vcpu_init_event(vcpu);
		vireo_lapic_reset(vcpu, true);
		vcpu->mp_state = vcpu->id ? KVM_MP_STATE_INIT_RECEIVED :
					    KVM_MP_STATE_RUNNABLE;
	}
	vector = vireo_lapic_take_sipi(vcpu);
	if (vector < 0 || vcpu->mp_state != KVM_MP_STATE_INIT_RECEIVED)
		return;
	b->get_sregs(vcpu, &s);
	s.cs.selector = vector << 8;
	s.cs.base = (u64)vector << 12;
	memset(s.interrupt_bitmap, 0, sizeof(s.interrupt_bitmap));
	if (b->set_sregs(vcpu, &s))
		pr_warn_ratelimited("vCPU %d: SIPI state refused\n", vcpu->id);
	vcpu->rip = 0;
	vcpu->mp_state = KVM_MP_STATE_RUNNABLE;
}

/* The PIC's INTR reaches this vCPU (the BSP's LINT0 in ExtINT mode). */
static bool extint_pending(struct vireo_vcpu *vcpu)
{
	return vcpu->index == 0 && vireo_pic_has_interrupt(vcpu->vm) &&
	       vireo_lapic_accepts_pic(vcpu);
}

/* The guest can take an external interrupt right now. */
static bool interrupt_allowed(struct vireo_vcpu *vcpu)
{
	return (vcpu->rflags & X86_EFLAGS_IF) &&
	       !vcpu->vm->backend->get_interrupt_shadow(vcpu);
}

/*
 * Something wakes a halted vCPU (or one that waits for SIPI): what a
 * real CPU leaves HLT for, INIT, or a SIPI when it waits for one.
 */
static bool vcpu_has_events(struct vireo_vcpu *vcpu)
{
	if (vireo_lapic_init_pending(vcpu))
		return true;
	if (vcpu->mp_state == KVM_MP_STATE_UNINITIALIZED ||
	    vcpu->mp_state == KVM_MP_STATE_INIT_RECEIVED)
		return vireo_lapic_sipi_pending(vcpu);
	if (atomic_read(&vcpu->nmi_queued) || vcpu->ev.nmi_pending ||
	    vcpu->ev.inject.valid)
		return true;
	if (!(vcpu->rflags & X86_EFLAGS_IF))
		return false;
	return vireo_lapic_has_interrupt(vcpu) || extint_pending(vcpu);
}

/* Sleep until vcpu_has_events(); -EINTR for a signal. */
static int vcpu_block(struct vireo_vcpu *vcpu)
{
	if (wait_event_interruptible(vcpu->wq, vcpu_has_events(vcpu)))
		return -EINTR;
	return 0;
}

/* Ready to enter the guest; else it sleeps until it is or a signal. */
static bool vcpu_runnable(struct vireo_vcpu *vcpu)
{
	apic_accept_events(vcpu);
	if (vcpu->mp_state == KVM_MP_STATE_HALTED && vcpu_has_events(vcpu))
		vcpu->mp_state = KVM_MP_STATE_RUNNABLE;
	return vcpu->mp_state == KVM_MP_STATE_RUNNABLE;
}

/* KVM_GET/SET_LAPIC (the caller checked that the vCPU has an APIC) */
static long lapic_ioctl(struct vireo_vcpu *vcpu, bool set, void __user *argp)
{
	struct kvm_lapic_state *ls;
	long ret;

	ls = kzalloc(sizeof(*ls), GFP_KERNEL_ACCOUNT);
	if (!ls)
		return -ENOMEM;
	if (!set) {
		vireo_lapic_get_state(vcpu, ls);
		ret = copy_to_user(argp, ls, sizeof(*ls)) ? -EFAULT : 0;
	} else {
		ret = copy_from_user(ls, argp, sizeof(*ls)) ? -EFAULT :
		      vireo_lapic_set_state(vcpu, ls);
	}
	kfree(ls);
	return ret;
}

/*
 * KVM_GET/SET_MP_STATE.  Without an in-kernel APIC there is nothing but
 * running; with one, also halted and waiting for INIT or SIPI.
 */
static long mp_state_ioctl(struct vireo_vcpu *vcpu, bool set,
			   void __user *argp)
{
	struct kvm_mp_state mp;

	if (!set) {
		if (vcpu->apic)
			apic_accept_events(vcpu);
		memset(&mp, 0, sizeof(mp));
		mp.mp_state = vcpu->mp_state;
		return copy_to_user(argp, &mp, sizeof(mp)) ? -EFAULT : 0;
	}
	if (copy_from_user(&mp, argp, sizeof(mp)))
		return -EFAULT;
	if (!vcpu->apic && mp.mp_state != KVM_MP_STATE_RUNNABLE)
		return -EINVAL;
	switch (mp.mp_state) {
	case KVM_MP_STATE_RUNNABLE:
	case KVM_MP_STATE_UNINITIALIZED:
	case KVM_MP_STATE_INIT_RECEIVED:
	case KVM_MP_STATE_HALTED:
		break;
	case KVM_MP_STATE_SIPI_RECEIVED:
		/* as KVM: back to waiting, the SIPI to come again */
		mp.mp_state = KVM_MP_STATE_INIT_RECEIVED;
		break;
	default:
		return -EINVAL;
	}
	vcpu->mp_state = mp.mp_state;
	return 0;
}

long vireo_arch_vcpu_ioctl(struct vireo_vcpu *vcpu, unsigned int ioctl,
			   unsigned long arg)
{
	const struct vireo_backend *b = vcpu->vm->backend;
	void __user *argp = (void __user *)arg;
	long ret;

	switch (ioctl) {
	case KVM_GET_REGS: {
		struct kvm_regs regs;

		memset(&regs, 0, sizeof(regs));
		get_regs(vcpu, &regs);
		return copy_to_user(argp, &regs, sizeof(regs)) ? -EFAULT : 0;
	}
	case KVM_SET_REGS: {
		struct kvm_regs regs;

		if (copy_from_user(&regs, argp, sizeof(regs)))
			return -EFAULT;
		set_regs(vcpu, &regs);
		return 0;
	}
	case KVM_GET_SREGS: {
		struct kvm_sregs sregs;

		memset(&sregs, 0, sizeof(sregs));
		b->get_sregs(vcpu, &sregs);
		sregs.apic_base = vireo_lapic_get_base(vcpu);
		if (vcpu->apic)
			sregs.cr8 = vireo_lapic_get_tpr(vcpu) >> 4;
		sregs_get_pending_irq(vcpu, &sregs);
		return copy_to_user(argp, &sregs, sizeof(sregs)) ? -EFAULT : 0;
	}
	case KVM_SET_SREGS: {
		struct kvm_sregs sregs;

		if (copy_from_user(&sregs, argp, sizeof(sregs)))
			return -EFAULT;
		if (!sregs_valid(&sregs) || !vireo_cr4_valid(vcpu, sregs.cr4))
			return -EINVAL;
		if (vcpu->apic &&
		    vireo_lapic_get_base(vcpu) != sregs.apic_base &&
		    vireo_lapic_set_base(vcpu, sregs.apic_base, true))
			return -EINVAL;
		ret = b->set_sregs(vcpu, &sregs);
		if (!ret) {
			if (vcpu->apic)
				vireo_lapic_set_tpr(vcpu, (sregs.cr8 & 0xf) << 4);
			else
				vcpu->msr.apic_base = sregs.apic_base;
			sregs_set_pending_irq(vcpu, &sregs);
			set_bit(VCPU_REQ_TLB_FLUSH, &vcpu->requests);
		}
		return ret;
	}
	case KVM_GET_MSRS:
	case KVM_SET_MSRS:
		return vireo_msrs_ioctl(vcpu, argp, ioctl == KVM_SET_MSRS);
	case KVM_GET_TSC_KHZ:
		return vireo_get_tsc_khz(vcpu);
	case KVM_SET_TSC_KHZ:
		return vireo_set_tsc_khz(vcpu, arg);
	case KVM_SET_CPUID2:
		return vireo_set_cpuid2(vcpu, argp);
	case KVM_GET_CPUID2:
		return vireo_get_cpuid2(vcpu, argp);
	case KVM_GET_LAPIC:
	case KVM_SET_LAPIC:
		if (!vcpu->apic)
			return -EINVAL;
		return lapic_ioctl(vcpu, ioctl == KVM_SET_LAPIC, argp);
	case KVM_X86_SETUP_MCE:
		return vireo_setup_mce(vcpu, argp);
	case KVM_SET_VAPIC_ADDR: {
		struct kvm_vapic_addr va;

		/*
		 * QEMU's kvmvapic sets it at every reset.  The page is only
		 * used with TPR access reporting, which Vireo does not
		 * offer: the address is kept, nothing is synced to it.
		 */
		if (!vcpu->apic)
			return -EINVAL;
		if (copy_from_user(&va, argp, sizeof(va)))
			return -EFAULT;
		vcpu->vapic_addr = va.vapic_addr;
		return 0;
	}
	case KVM_GET_MP_STATE:
	case KVM_SET_MP_STATE:
		return mp_state_ioctl(vcpu, ioctl == KVM_SET_MP_STATE, argp);
	default:
		ret = vireo_state_ioctl(vcpu, ioctl, argp);
		/* as KVM answers an unknown vCPU ioctl */
		return ret == -ENOIOCTLCMD ? -EINVAL : ret;
	}
}

/* ---- guest registers as the decoder names them ---- */

static u64 size_mask(unsigned int size)
{
	return size >= 8 ? ~0ULL : (1ULL << (size * 8)) - 1;
}

/* Write like the CPU does: 32-bit writes zero-extend, 8/16 merge. */
static void write_reg(struct vireo_vcpu *vcpu, int reg, bool high_byte,
		      unsigned int size, u64 val)
{
	u64 *r;

	if (high_byte) {
		r = &vcpu->regs[reg - 4];
		*r = (*r & ~0xff00ULL) | ((val & 0xff) << 8);
		return;
	}
	r = &vcpu->regs[reg];
	if (size >= 4)
		*r = val & size_mask(size);
	else
		*r = (*r & ~size_mask(size)) | (val & size_mask(size));
}

/* ---- fetching and decoding the instruction at RIP ---- */

enum vireo_cpu_mode vireo_cpu_mode(struct vireo_vcpu *vcpu,
				   const struct kvm_sregs *s)
{
	if ((s->efer & EFER_LMA_BIT) && s->cs.l)
		return VIREO_MODE_64;
	if ((s->cr0 & CR0_PE) && !(vcpu->rflags & RFLAGS_VM) && s->cs.db)
		return VIREO_MODE_32;
	return VIREO_MODE_16;
}

/* Copy guest-linear memory; returns bytes read (stops at a fault). */
static unsigned int read_linear(struct vireo_vcpu *vcpu,
				const struct kvm_sregs *s, u64 la, void *buf,
				unsigned int len, u32 access)
{
	unsigned int done = 0, chunk;
	u32 pf_error;
	u64 gpa;

	while (done < len) {
		chunk = min_t(unsigned int, len - done,
			      PAGE_SIZE - offset_in_page(la + done));
		if (vireo_gva_to_gpa(vcpu, s, la + done, access, &gpa,
				     &pf_error))
			break;
		if (vireo_read_guest(vcpu->vm, gpa, buf + done, chunk))
			break;
		done += chunk;
	}
	return done;
}

static int write_linear(struct vireo_vcpu *vcpu, const struct kvm_sregs *s,
			u64 la, const void *buf, unsigned int len)
{
	unsigned int done = 0, chunk;
	u32 pf_error;
	u64 gpa;

	while (done < len) {
		chunk = min_t(unsigned int, len - done,
			      PAGE_SIZE - offset_in_page(la + done));
		if (vireo_gva_to_gpa(vcpu, s, la + done, VIREO_ACC_WRITE,
				     &gpa, &pf_error))
			return -EFAULT;
		if (vireo_write_guest(vcpu->vm, gpa, buf + done, chunk))
			return -EFAULT;
		done += chunk;
	}
	return 0;
}

/* The bytes at the guest's CS:RIP; how many could be read. */
unsigned int vireo_fetch_insn(struct vireo_vcpu *vcpu,
			      const struct kvm_sregs *s,
			      u8 bytes[VIREO_INSN_MAX_LEN])
{
	enum vireo_cpu_mode mode = vireo_cpu_mode(vcpu, s);
	u64 la;

	la = vcpu->rip;
	if (mode != VIREO_MODE_64)
		la = (s->cs.base + (vcpu->rip & (mode == VIREO_MODE_16 ?
						 0xffff : 0xffffffff))) &
		     0xffffffff;
	return read_linear(vcpu, s, la, bytes, VIREO_INSN_MAX_LEN,
			   VIREO_ACC_FETCH);
}

static int decode_at_rip(struct vireo_vcpu *vcpu, const struct kvm_sregs *s,
			 struct vireo_insn *insn)
{
	u8 bytes[VIREO_INSN_MAX_LEN];
	unsigned int n;

	n = vireo_fetch_insn(vcpu, s, bytes);
	if (!n)
		return -EFAULT;
	return vireo_decode(bytes, n, vireo_cpu_mode(vcpu, s), insn) ? -EINVAL : 0;
}

/*
 * MOV to or from a control register (0F 22 / 0F 20) at the guest's RIP,
 * for a backend whose CPU does not decode it (SVM without decode
 * assists).  ModRM.mod is ignored: the operand is always a register.
 */
int vireo_decode_mov_cr(struct vireo_vcpu *vcpu, struct vireo_mov_cr *m)
{
	u8 b[VIREO_INSN_MAX_LEN];
	struct kvm_sregs s;
	unsigned int n, i = 0;
	u8 rex = 0, modrm;

	vcpu->vm->backend->get_sregs(vcpu, &s);
	n = vireo_fetch_insn(vcpu, &s, b);
	while (i < n && (b[i] == 0x66 || b[i] == 0x67 || b[i] == 0xf2 ||
			 b[i] == 0xf3 || b[i] == 0x26 || b[i] == 0x2e ||
			 b[i] == 0x36 || b[i] == 0x3e || b[i] == 0x64 ||
			 b[i] == 0x65))
		i++;
	if (vireo_cpu_mode(vcpu, &s) == VIREO_MODE_64 && i < n &&
	    (b[i] & 0xf0) == 0x40)
		rex = b[i++];
	if (i + 3 > n || b[i] != 0x0f || (b[i + 1] != 0x20 && b[i + 1] != 0x22))
		return -EINVAL;
	modrm = b[i + 2];
	m->to_cr = b[i + 1] == 0x22;
	m->cr = ((modrm >> 3) & 7) | (rex & 4 ? 8 : 0);
	m->gpr = (modrm & 7) | (rex & 1 ? 8 : 0);
	m->len = i + 3;
	return 0;
}
EXPORT_SYMBOL_GPL(vireo_decode_mov_cr);

static int exit_internal_error(struct vireo_vcpu *vcpu, u32 suberror,
			       u32 ndata, u64 d0, u64 d1)
{
	struct kvm_run *run = vcpu->run;

	run->exit_reason = KVM_EXIT_INTERNAL_ERROR;
	run->internal.suberror = suberror;
	run->internal.ndata = ndata;
	run->internal.data[0] = d0;
	run->internal.data[1] = d1;
	return 0;
}

int vireo_emulation_failed(struct vireo_vcpu *vcpu)
{
	return exit_internal_error(vcpu, KVM_INTERNAL_ERROR_EMULATION, 1,
				   vcpu->rip, 0);
}

/* ---- port I/O ---- */

static const struct kvm_segment *seg_of(const struct kvm_sregs *s,
					enum vireo_seg seg)
{
	switch (seg) {
	case VIREO_SEG_ES: return &s->es;
	case VIREO_SEG_CS: return &s->cs;
	case VIREO_SEG_SS: return &s->ss;
	case VIREO_SEG_FS: return &s->fs;
	case VIREO_SEG_GS: return &s->gs;
	default: return &s->ds;
	}
}

static u64 seg_linear(struct vireo_vcpu *vcpu, const struct kvm_sregs *s,
		      enum vireo_seg seg, u64 offset, unsigned int addr_size)
{
	u64 la = offset & size_mask(addr_size);

	if (vireo_cpu_mode(vcpu, s) == VIREO_MODE_64)
		return (seg == VIREO_SEG_FS || seg == VIREO_SEG_GS) ?
			la + seg_of(s, seg)->base : la;
	return (la + seg_of(s, seg)->base) & 0xffffffff;
}

/* Step RSI or RDI (and RCX) over @n elements, within the address size. */
static void string_advance(struct vireo_vcpu *vcpu, int reg, u32 n)
{
	unsigned int as = vcpu->pend.addr_size;
	u64 delta = (u64)n * vcpu->pend.size;
	u64 mask = size_mask(as);
	u64 *r = &vcpu->regs[reg];

	if (vcpu->rflags & RFLAGS_DF)
		delta = -delta;
	*r = (*r & ~mask) | ((*r + delta) & mask);
}

/* A port the kernel serves: the PICs, the PIT, ioeventfds. */
static bool pio_in_kernel(struct vireo_vcpu *vcpu, u16 port, void *data,
			  int len, bool write)
{
	struct vireo_vm *vm = vcpu->vm;

	if (vcpu->apic && (vireo_pic_pio(vm, port, data, len, write) ||
			   vireo_pit_pio(vm, port, data, len, write)))
		return true;
	return write && vireo_ioeventfd_write(vm, false, port, len, data);
}

static int handle_io(struct vireo_vcpu *vcpu, const struct vireo_exit *exit)
{
	struct kvm_run *run = vcpu->run;
	struct vireo_insn insn;
	struct kvm_sregs s;
	u32 len = exit->insn_len;
	u32 n = 1, max;
	u64 rcx, la;

	memset(&vcpu->pend, 0, sizeof(vcpu->pend));
	vcpu->pend.size = exit->io.size;
	run->exit_reason = KVM_EXIT_IO;
	run->io.direction = exit->io.in ? KVM_EXIT_IO_IN : KVM_EXIT_IO_OUT;
	run->io.size = exit->io.size;
	run->io.port = exit->io.port;
	run->io.count = 1;
	run->io.data_offset = KVM_PIO_PAGE_OFFSET * PAGE_SIZE;

	if (!exit->io.string) {
		if (!len) {
			vcpu->vm->backend->get_sregs(vcpu, &s);
			if (decode_at_rip(vcpu, &s, &insn))
				return vireo_emulation_failed(vcpu);
			len = insn.len;
		}
		vcpu->pend.insn_len = len;
		if (exit->io.in) {
			vcpu->pending = VCPU_PENDING_PIO_IN;
		} else {
			memcpy(vcpu->pio_data, &vcpu->regs[VCPU_RAX],
			       exit->io.size);
			vcpu->pending = VCPU_PENDING_PIO_OUT;
		}
		if (!pio_in_kernel(vcpu, exit->io.port, vcpu->pio_data,
				   exit->io.size, !exit->io.in)) {
			/*
			 * KVM's OUT_7E_INC_RIP quirk: QEMU's kvmvapic ROM
			 * expects RIP past its OUT to port 0x7e when QEMU
			 * reads the registers during the exit.
			 */
			if (!exit->io.in && exit->io.port == 0x7e) {
				vcpu->rip += len;
				vcpu->pending = VCPU_PENDING_NONE;
			}
			return 0;
		}
		/* done here: finish the instruction as userspace would have */
		if (exit->io.in) {
			u64 val = 0;

			memcpy(&val, vcpu->pio_data, exit->io.size);
			write_reg(vcpu, VCPU_RAX, false, exit->io.size, val);
		}
		vcpu->rip += len;
		vcpu->pending = VCPU_PENDING_NONE;
		return 1;
	}

	/* INS/OUTS: the decoder says the segment and the address size */
	vcpu->vm->backend->get_sregs(vcpu, &s);
	if (decode_at_rip(vcpu, &s, &insn) ||
	    (insn.op != VIREO_OP_INS && insn.op != VIREO_OP_OUTS))
		return vireo_emulation_failed(vcpu);
	vcpu->pend.insn_len = insn.len;
	vcpu->pend.addr_size = insn.addr_size;
	vcpu->pend.rep = exit->io.rep;
	if (exit->io.rep) {
		rcx = vcpu->regs[VCPU_RCX] & size_mask(insn.addr_size);
		if (!rcx) {
			vcpu->rip += insn.len;
			return 1;	/* nothing to do: enter again */
		}
		n = min_t(u64, rcx, PAGE_SIZE / exit->io.size);
	}
	if (exit->io.in)
		la = seg_linear(vcpu, &s, VIREO_SEG_ES,
				vcpu->regs[VCPU_RDI], insn.addr_size);
	else
		la = seg_linear(vcpu, &s, insn.seg, vcpu->regs[VCPU_RSI],
				insn.addr_size);
	/* one chunk stays within one guest page */
	if (vcpu->rflags & RFLAGS_DF)
		max = offset_in_page(la) / exit->io.size + 1;
	else
		max = (PAGE_SIZE - offset_in_page(la)) / exit->io.size;
	n = max(min(n, max), 1U);
	vcpu->pend.count = n;
	vcpu->pend.gva = la;
	run->io.count = n;

	if (exit->io.in) {
		vcpu->pending = VCPU_PENDING_PIO_IN;
		return 0;
	}
	if (vcpu->rflags & RFLAGS_DF) {
		u8 *dst = vcpu->pio_data;
		u32 i;

		/* elements leave in execution order: downwards in memory */
		for (i = 0; i < n; i++)
			if (read_linear(vcpu, &s, la - (u64)i * exit->io.size,
					dst + i * exit->io.size, exit->io.size,
					0) != exit->io.size)
				return vireo_emulation_failed(vcpu);
	} else if (read_linear(vcpu, &s, la, vcpu->pio_data,
			       n * exit->io.size, 0) != n * exit->io.size) {
		return vireo_emulation_failed(vcpu);
	}
	vcpu->pending = VCPU_PENDING_PIO_OUT;
	return 0;
}

/* Finish a string I/O chunk: step the registers, maybe the instruction. */
static void finish_string(struct vireo_vcpu *vcpu, int reg, bool rep)
{
	u64 mask = size_mask(vcpu->pend.addr_size);
	u64 *rcx = &vcpu->regs[VCPU_RCX];

	string_advance(vcpu, reg, vcpu->pend.count);
	if (!rep) {
		vcpu->rip += vcpu->pend.insn_len;
		return;
	}
	*rcx = (*rcx & ~mask) | ((*rcx - vcpu->pend.count) & mask);
	/* more to do: run the instruction again for the next chunk */
	if (!(*rcx & mask))
		vcpu->rip += vcpu->pend.insn_len;
}

/* 0 when done, 1 when an internal error exit was set up instead. */
static int complete_pio(struct vireo_vcpu *vcpu)
{
	bool string = vcpu->pend.count > 0;
	bool rep = vcpu->pend.rep;
	struct kvm_sregs s;
	u8 *src;
	u32 i;

	if (!string) {
		if (vcpu->pending == VCPU_PENDING_PIO_IN) {
			u64 val = 0;

			memcpy(&val, vcpu->pio_data, vcpu->pend.size);
			write_reg(vcpu, VCPU_RAX, false, vcpu->pend.size, val);
		}
		vcpu->rip += vcpu->pend.insn_len;
		return 0;
	}
	if (vcpu->pending == VCPU_PENDING_PIO_OUT) {
		finish_string(vcpu, VCPU_RSI, rep);
		return 0;
	}
	/* INS: the data goes to ES:RDI */
	vcpu->vm->backend->get_sregs(vcpu, &s);
	src = vcpu->pio_data;
	for (i = 0; i < vcpu->pend.count; i++) {
		u64 la = vcpu->pend.gva;

		if (vcpu->rflags & RFLAGS_DF)
			la -= (u64)i * vcpu->pend.size;
		else
			la += (u64)i * vcpu->pend.size;
		if (write_linear(vcpu, &s, la, src + i * vcpu->pend.size,
				 vcpu->pend.size))
			return vireo_emulation_failed(vcpu) + 1;
	}
	finish_string(vcpu, VCPU_RDI, rep);
	return 0;
}

/*
 * Whatever the last exit to userspace left: finish it now.  Non-zero
 * when the VMM must see run->exit_reason first: the finish failed, or
 * the instruction needs another exit (the next piece of an MMIO access).
 */
static int complete_pending(struct vireo_vcpu *vcpu)
{
	enum vireo_pending p = vcpu->pending;
	int ret = 0;

	vcpu->pending = VCPU_PENDING_NONE;
	switch (p) {
	case VCPU_PENDING_PIO_IN:
	case VCPU_PENDING_PIO_OUT:
		vcpu->pending = p;
		ret = complete_pio(vcpu);
		vcpu->pending = VCPU_PENDING_NONE;
		break;
	case VCPU_PENDING_MMIO_READ:
	case VCPU_PENDING_MMIO_WRITE:
		/* it may leave another exit pending */
		vcpu->pending = p;
		ret = vireo_complete_mmio(vcpu);
		break;
	default:
		break;
	}
	return ret;
}

/* ---- CPUID, MSRs, XSETBV ---- */

static void handle_cpuid(struct vireo_vcpu *vcpu)
{
	struct kvm_sregs s;
	bool osxsave = false;

	/* only leaf 1 depends on the guest's state: CR4.OSXSAVE */
	if ((u32)vcpu->regs[VCPU_RAX] == 1) {
		vcpu->vm->backend->get_sregs(vcpu, &s);
		osxsave = s.cr4 & X86_CR4_OSXSAVE;
	}
	vireo_emulate_cpuid(vcpu, osxsave);
}

static u32 insn_len_or(const struct vireo_exit *exit, u32 dflt)
{
	return exit->insn_len ? exit->insn_len : dflt;
}

static void inject_gp(struct vireo_vcpu *vcpu)
{
	vireo_queue_exception(vcpu, GP_VECTOR, true, 0);
}

static void handle_rdmsr(struct vireo_vcpu *vcpu, const struct vireo_exit *exit)
{
	u64 val;

	if (vireo_get_msr(vcpu, vcpu->regs[VCPU_RCX], &val, false)) {
		inject_gp(vcpu);
		return;
	}
	vcpu->regs[VCPU_RAX] = (u32)val;
	vcpu->regs[VCPU_RDX] = val >> 32;
	vcpu->rip += insn_len_or(exit, 2);
}

static void handle_wrmsr(struct vireo_vcpu *vcpu, const struct vireo_exit *exit)
{
	u64 val = (vcpu->regs[VCPU_RDX] << 32) | (u32)vcpu->regs[VCPU_RAX];

	if (vireo_set_msr(vcpu, vcpu->regs[VCPU_RCX], val, false)) {
		inject_gp(vcpu);
		return;
	}
	vcpu->rip += insn_len_or(exit, 2);
}

static void handle_xsetbv(struct vireo_vcpu *vcpu,
			  const struct vireo_exit *exit)
{
	u64 val = (vcpu->regs[VCPU_RDX] << 32) | (u32)vcpu->regs[VCPU_RAX];

	if ((u32)vcpu->regs[VCPU_RCX] != XCR_XFEATURE_ENABLED_MASK ||
	    !boot_cpu_has(X86_FEATURE_XSAVE) ||
	    !vireo_xcr0_valid(vcpu, val)) {
		inject_gp(vcpu);
		return;
	}
	vcpu->xcr0 = val;
	vcpu->rip += insn_len_or(exit, 3);
}

/* The linear address of RIP, as KVM_EXIT_DEBUG reports it. */
static u64 linear_rip(struct vireo_vcpu *vcpu)
{
	struct kvm_sregs s;

	vcpu->vm->backend->get_sregs(vcpu, &s);
	return vireo_cpu_mode(vcpu, &s) == VIREO_MODE_64 ? vcpu->rip :
	       (u32)(s.cs.base + vcpu->rip);
}

/* An intercepted #DB or #BP: the VMM's debugger, or the guest's own. */
static int handle_exception(struct vireo_vcpu *vcpu,
			    const struct vireo_exit *exit)
{
	u32 dbg = vcpu->dbg.guest_debug;
	struct kvm_run *run = vcpu->run;

	if ((exit->exc.vector == DB_VECTOR &&
	     (dbg & (KVM_GUESTDBG_SINGLESTEP | KVM_GUESTDBG_USE_HW_BP))) ||
	    (exit->exc.vector == BP_VECTOR && (dbg & KVM_GUESTDBG_USE_SW_BP))) {
		run->exit_reason = KVM_EXIT_DEBUG;
		run->debug.arch.exception = exit->exc.vector;
		run->debug.arch.pc = linear_rip(vcpu);
		run->debug.arch.dr6 = exit->exc.dr6;
		run->debug.arch.dr7 = vcpu->dbg.eff_dr7;
		return 0;
	}
	if (exit->exc.vector == DB_VECTOR) {
		vcpu->dbg.dr6 = exit->exc.dr6 | DR6_RESET_VALUE;
		vireo_queue_exception(vcpu, DB_VECTOR, false, 0);
	} else {
		vireo_queue_exception(vcpu, exit->exc.vector, false, 0);
		vcpu->ev.inject.type = VIREO_EV_SOFT_EXCEPTION;
		vcpu->ev.inject.insn_len = insn_len_or(exit, 1);
	}
	return 1;
}

/* ---- the run loop ---- */

static int stuck_fault(struct vireo_vcpu *vcpu, u64 gpa)
{
	return exit_internal_error(vcpu,
				   KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON,
				   2, VIREO_EXIT_TDP_FAULT, gpa);
}

/*
 * Handle one exit.  Returns 1 to enter the guest again, 0 to return to
 * userspace with run->exit_reason set, or a negative errno.
 */
static int handle_exit(struct vireo_vcpu *vcpu, struct vireo_exit *exit)
{
	struct kvm_run *run = vcpu->run;
	int ret;

	switch (exit->reason) {
	case VIREO_EXIT_NONE:
		return 1;
	case VIREO_EXIT_IO:
		return handle_io(vcpu, exit);
	case VIREO_EXIT_TDP_FAULT:
		ret = vireo_tdp_map(vcpu->vm, exit->tdp.gpa, exit->tdp.write);
		if (ret == -ENOENT) {
			exit->tdp.mmio = 1;
			return vireo_handle_mmio(vcpu, exit->tdp.gpa);
		}
		return ret ? ret : 1;
	case VIREO_EXIT_HLT:
		vcpu->rip += insn_len_or(exit, 1);
		/* with the in-kernel APIC the run loop sleeps instead */
		if (vcpu->apic) {
			vcpu->mp_state = KVM_MP_STATE_HALTED;
			return 1;
		}
		run->exit_reason = KVM_EXIT_HLT;
		return 0;
	case VIREO_EXIT_CPUID:
		handle_cpuid(vcpu);
		vcpu->rip += insn_len_or(exit, 2);
		return 1;
	case VIREO_EXIT_MSR_READ:
		handle_rdmsr(vcpu, exit);
		return 1;
	case VIREO_EXIT_MSR_WRITE:
		handle_wrmsr(vcpu, exit);
		return 1;
	case VIREO_EXIT_XSETBV:
		handle_xsetbv(vcpu, exit);
		return 1;
	case VIREO_EXIT_IRQ_WINDOW:
		/* the run loop decides whether userspace wants to know */
		return 1;
	case VIREO_EXIT_DR_ACCESS:
		/* hand the debug registers over and run the MOV DR again */
		vcpu->dbg.guest_owns = true;
		return 1;
	case VIREO_EXIT_EXCEPTION:
		return handle_exception(vcpu, exit);
	case VIREO_EXIT_HYPERCALL:
		/* no hypercalls yet: the answer KVM gives unknown ones */
		vcpu->regs[VCPU_RAX] = (u64)-KVM_ENOSYS_RET;
		vcpu->rip += insn_len_or(exit, 3);
		return 1;
	case VIREO_EXIT_SHUTDOWN:
		run->exit_reason = KVM_EXIT_SHUTDOWN;
		return 0;
	case VIREO_EXIT_FAIL_ENTRY:
		run->exit_reason = KVM_EXIT_FAIL_ENTRY;
		run->fail_entry.hardware_entry_failure_reason =
			exit->fail_reason;
		run->fail_entry.cpu = vcpu->last_cpu;
		return 0;
	case VIREO_EXIT_BACKEND:
		vcpu->vm->backend->handle_exit(vcpu, exit);
		if (exit->reason == VIREO_EXIT_BACKEND)
			return 1;
		fallthrough;
	case VIREO_EXIT_UNHANDLED:
	default:
		return exit_internal_error(vcpu,
				KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON,
				2, exit->raw[0], exit->raw[1]);
	}
}

/*
 * The guest is past the instruction an exit stopped at (done for it
 * here or in userspace): an STI or MOV SS shadow that covered that
 * instruction is over, or the shadow of "STI; HLT" would hold back the
 * interrupt that ends the HLT.
 */
static void end_shadow(struct vireo_vcpu *vcpu)
{
	const struct vireo_backend *b = vcpu->vm->backend;

	if (b->get_interrupt_shadow(vcpu))
		b->set_interrupt_shadow(vcpu, 0);
}

/* KVM's test for ready_for_interrupt_injection and IRQ_WINDOW_OPEN */
static bool ready_for_interrupt(struct vireo_vcpu *vcpu)
{
	return interrupt_allowed(vcpu) && !vcpu->ev.irq_queued &&
	       !vcpu->ev.inject.valid;
}

/*
 * With the in-kernel irqchip (interrupts off): the APIC's highest
 * deliverable vector, else the PIC's through ExtINT, goes in if the
 * guest can take it now; what waits asks for a window (or, held back by
 * the TPR alone, for the guest's CR8 writes).
 */
static void prepare_apic_interrupt(struct vireo_vcpu *vcpu)
{
	struct vireo_event *inj = &vcpu->ev.inject;
	int vector = -1;

	if (!inj->valid && interrupt_allowed(vcpu)) {
		vector = vireo_lapic_pending_vector(vcpu);
		if (vector >= 0)
			vireo_lapic_ack(vcpu, vector);
		else if (extint_pending(vcpu))
			vector = vireo_pic_ack(vcpu->vm);
	}
	if (vector >= 0) {
		memset(inj, 0, sizeof(*inj));
		inj->valid = true;
		inj->type = VIREO_EV_INTR;
		inj->vector = vector;
	}
	vcpu->ev.irq_window = vireo_lapic_has_interrupt(vcpu) ||
			      extint_pending(vcpu);
	vcpu->ev.tpr_window = vcpu->ev.irq_window ? 0 :
			      vireo_lapic_tpr_window(vcpu);
}

/*
 * Pick the event to deliver on this entry (interrupts off): what the
 * last exit interrupted, else an NMI, else the VMM's interrupt.  What
 * cannot go in yet asks for a window.
 */
static void prepare_events(struct vireo_vcpu *vcpu)
{
	const struct vireo_backend *b = vcpu->vm->backend;
	struct vireo_event *inj = &vcpu->ev.inject;

	if (vcpu->apic && atomic_xchg(&vcpu->nmi_queued, 0))
		vcpu->ev.nmi_pending = true;
	if (!inj->valid && vcpu->ev.nmi_pending && b->nmi_allowed(vcpu)) {
		memset(inj, 0, sizeof(*inj));
		inj->valid = true;
		inj->type = VIREO_EV_NMI;
		inj->vector = NMI_VECTOR;
		vcpu->ev.nmi_pending = false;
	}
	if (!inj->valid && vcpu->ev.irq_queued && interrupt_allowed(vcpu)) {
		memset(inj, 0, sizeof(*inj));
		inj->valid = true;
		inj->type = VIREO_EV_INTR;
		inj->vector = vcpu->ev.irq_vector;
		vcpu->ev.irq_queued = false;
	}
	vcpu->ev.nmi_window = vcpu->ev.nmi_pending;
	if (vcpu->apic) {
		prepare_apic_interrupt(vcpu);
		return;
	}
	vcpu->ev.irq_window = vcpu->ev.irq_queued ||
			      (READ_ONCE(vcpu->run->request_interrupt_window) &&
			       !ready_for_interrupt(vcpu));
}

/*
 * Debug registers for this entry (interrupts off).  DR7 goes in through
 * the VMCS/VMCB (dbg.eff_dr7); DR0-3 are loaded here when someone uses
 * them: the VMM's debugger or a guest that touched them.
 */
static void load_debug(struct vireo_vcpu *vcpu)
{
	u32 gd = vcpu->dbg.guest_debug;
	bool load = false;
	const u64 *db;
	int i;

	vcpu->dbg.intercept_db = gd & (KVM_GUESTDBG_SINGLESTEP |
				       KVM_GUESTDBG_USE_HW_BP);
	vcpu->dbg.intercept_bp = gd & KVM_GUESTDBG_USE_SW_BP;
	if (gd & KVM_GUESTDBG_USE_HW_BP) {
		vcpu->dbg.eff_dr7 = vcpu->dbg.debug_dr7;
		db = vcpu->dbg.debug_db;
		load = true;
	} else {
		vcpu->dbg.eff_dr7 = vcpu->dbg.dr7;
		db = vcpu->dbg.db;
		load = vcpu->dbg.guest_owns ||
		       (vcpu->dbg.dr7 & DR7_ENABLE_BITS);
	}
	if ((gd & KVM_GUESTDBG_SINGLESTEP) && !(vcpu->rflags & X86_EFLAGS_TF)) {
		vcpu->rflags |= X86_EFLAGS_TF;
		vcpu->dbg.set_tf = true;
	}
	/* no host breakpoint may fire on our values */
	if (hw_breakpoint_active())
		set_debugreg(0, 7);
	if (load)
		for (i = 0; i < 4; i++)
			set_debugreg(db[i], i);
}

/* After the exit: take back what the guest owned, restore the host's. */
static void save_debug(struct vireo_vcpu *vcpu)
{
	int i;

	if (vcpu->dbg.guest_owns) {
		for (i = 0; i < 4; i++)
			get_debugreg(vcpu->dbg.db[i], i);
		vcpu->dbg.guest_owns = false;
	}
	if (vcpu->dbg.set_tf) {
		vcpu->rflags &= ~X86_EFLAGS_TF;
		vcpu->dbg.set_tf = false;
	}
	if (hw_breakpoint_active())
		hw_breakpoint_restore();
}

/* Guest values of the MSRs and XCR0 the hardware does not switch. */
static void load_guest_msrs(struct vireo_vcpu *vcpu, u64 host_xcr0)
{
	vireo_uret_set(VIREO_URET_TSC_AUX, vcpu->msr.tsc_aux);
	if (boot_cpu_has(X86_FEATURE_XSAVE) && vcpu->xcr0 != host_xcr0)
		xsetbv(XCR_XFEATURE_ENABLED_MASK, vcpu->xcr0);
	if (boot_cpu_has(X86_FEATURE_MSR_SPEC_CTRL) &&
	    vcpu->msr.spec_ctrl != this_cpu_read(x86_spec_ctrl_current))
		wrmsrl(MSR_IA32_SPEC_CTRL, vcpu->msr.spec_ctrl);
}

static void load_host_msrs(struct vireo_vcpu *vcpu, u64 host_xcr0)
{
	if (boot_cpu_has(X86_FEATURE_XSAVE) && vcpu->xcr0 != host_xcr0)
		xsetbv(XCR_XFEATURE_ENABLED_MASK, host_xcr0);
	if (boot_cpu_has(X86_FEATURE_MSR_SPEC_CTRL) &&
	    vcpu->msr.spec_ctrl != this_cpu_read(x86_spec_ctrl_current))
		wrmsrl(MSR_IA32_SPEC_CTRL,
		       this_cpu_read(x86_spec_ctrl_current));
}

/* Enter the guest once; false if something asks us not to. */
static bool enter_guest(struct vireo_vcpu *vcpu, struct vireo_exit *exit)
{
	const struct vireo_backend *b = vcpu->vm->backend;
	u64 host_xcr0 = vireo_host_xcr0;
	u8 tpr = 0;
	int cpu;

	preempt_disable();
	local_irq_disable();
	WRITE_ONCE(vcpu->mode, VCPU_IN_GUEST);
	/* pairs with vireo_flush_all_vcpus(): request, barrier, mode */
	smp_mb();
	if (signal_pending(current) || need_resched()) {
		WRITE_ONCE(vcpu->mode, VCPU_OUTSIDE_GUEST);
		local_irq_enable();
		preempt_enable();
		return false;
	}
	if (test_thread_flag(TIF_NEED_FPU_LOAD))
		switch_fpu_return();
	cpu = smp_processor_id();
	if (test_and_clear_bit(VCPU_REQ_TLB_FLUSH, &vcpu->requests) ||
	    vcpu->last_cpu != cpu)
		b->flush_tlb(vcpu);
	vcpu->last_cpu = cpu;

	if (vcpu->apic) {
		/* only this thread changes the TPR: it holds until the exit */
		tpr = vireo_lapic_get_tpr(vcpu);
		b->set_cr8(vcpu, tpr >> 4);
	}
	prepare_events(vcpu);
	load_debug(vcpu);
	load_guest_msrs(vcpu, host_xcr0);

	b->vcpu_run(vcpu, exit);

	/* the guest's CR8 writes are its APIC's TPR */
	if (vcpu->apic) {
		u64 cr8 = b->get_cr8(vcpu);

		if (cr8 != tpr >> 4)
			vireo_lapic_set_tpr(vcpu, cr8 << 4);
	}

	load_host_msrs(vcpu, host_xcr0);
	save_debug(vcpu);
	WRITE_ONCE(vcpu->mode, VCPU_OUTSIDE_GUEST);
	local_irq_enable();
	preempt_enable();
	return true;
}

/* What kvm_run says about the vCPU on every return to userspace. */
static void post_run(struct vireo_vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;

	run->if_flag = !!(vcpu->rflags & X86_EFLAGS_IF);
	run->cr8 = vcpu->vm->backend->get_cr8(vcpu);
	run->apic_base = vireo_lapic_get_base(vcpu);
	run->ready_for_interrupt_injection = ready_for_interrupt(vcpu);
	run->flags = 0;
}

int vireo_arch_vcpu_run(struct vireo_vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	struct vireo_exit *exit = &vcpu->exit;
	u64 last_fault = ~0ULL, rip = vcpu->rip;
	int repeats = 0;
	int ret;

	/* the guest's FPU, for the emulator's SSE moves too */
	fpu_swap_kvm_fpstate(&vcpu->guest_fpu, true);
	/* an exit that could not be finished goes back to userspace */
	ret = complete_pending(vcpu);
	if (vcpu->rip != rip)
		end_shadow(vcpu);
	if (ret) {
		ret = 0;
		goto out;
	}
	vcpu->has_run = true;
	/* as KVM: a VM with no memory at all cannot run */
	if (!READ_ONCE(vcpu->vm->nr_slots)) {
		ret = -ENOSPC;
		goto out;
	}
	if (vireo_run_immediate_exit(run)) {
		run->exit_reason = KVM_EXIT_INTR;
		ret = -EINTR;
		goto out;
	}

	/* as KVM: an AP never started sleeps once, then says try again */
	if (vcpu->apic && vcpu->mp_state == KVM_MP_STATE_UNINITIALIZED) {
		ret = vcpu_block(vcpu);
		apic_accept_events(vcpu);
		if (ret)
			run->exit_reason = KVM_EXIT_INTR;
		else
			ret = -EAGAIN;
		goto out;
	}
	for (;;) {
		if (signal_pending(current)) {
			run->exit_reason = KVM_EXIT_INTR;
			ret = -EINTR;
			break;
		}
		cond_resched();
		if (vcpu->apic && !vcpu_runnable(vcpu)) {
			ret = vcpu_block(vcpu);
			if (ret) {
				run->exit_reason = KVM_EXIT_INTR;
				break;
			}
			continue;
		}
		vireo_kvmclock_update(vcpu);
		if (vcpu->vm->backend->pre_entry) {
			ret = vcpu->vm->backend->pre_entry(vcpu);
			if (ret)
				break;
		}
		memset(exit, 0, sizeof(*exit));
		if (!enter_guest(vcpu, exit))
			continue;

		trace_vireo_exit(vcpu->id, exit->reason, vcpu->rip,
				 exit->reason == VIREO_EXIT_TDP_FAULT ?
				 exit->tdp.gpa : exit->raw[0]);
		rip = vcpu->rip;
		ret = handle_exit(vcpu, exit);
		if (vcpu->rip != rip)
			end_shadow(vcpu);

		if (exit->reason == VIREO_EXIT_TDP_FAULT && !exit->tdp.mmio) {
			/* a fault we keep "fixing" means our tables are wrong */
			if (exit->tdp.gpa >> PAGE_SHIFT == last_fault &&
			    ++repeats > MAX_REPEATED_FAULTS) {
				ret = stuck_fault(vcpu, exit->tdp.gpa);
				break;
			}
			if (exit->tdp.gpa >> PAGE_SHIFT != last_fault)
				repeats = 0;
			last_fault = exit->tdp.gpa >> PAGE_SHIFT;
		} else {
			last_fault = ~0ULL;
		}
		if (ret <= 0)
			break;
		if (!vcpu->apic && READ_ONCE(run->request_interrupt_window) &&
		    ready_for_interrupt(vcpu)) {
			run->exit_reason = KVM_EXIT_IRQ_WINDOW_OPEN;
			ret = 0;
			break;
		}
	}
out:
	fpu_swap_kvm_fpstate(&vcpu->guest_fpu, false);
	post_run(vcpu);
	trace_vireo_userspace(vcpu->id, run->exit_reason, ret);
	return ret;
}
