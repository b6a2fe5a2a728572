// SPDX-License-Identifier: GPL-2.0-only
/*
 * The vCPU state a VMM reads and writes beyond registers: FPU and
 * extended state (KVM_GET/SET_FPU, _XSAVE, _XSAVE2, _XCRS), debug
 * registers and guest debugging, pending events, the MP state.
 */
#define pr_fmt(fmt) "vireo: " fmt

#include <linux/kvm.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <asm/cpufeature.h>
#include <asm/fpu/api.h>
#include <asm/fpu/xcr.h>
#include <asm/fpu/xstate.h>
#include <asm/irq_vectors.h>

#include <vireo/core.h>

#define XSAVE_LEGACY_SIZE	512
#define XSAVE_HDR_SIZE		64
#define XFEATURE_FP_SSE		(XFEATURE_MASK_FP | XFEATURE_MASK_SSE)
/* offsets in the legacy (FXSAVE) area */
#define FX_FCW			0
#define FX_FSW			2
#define FX_FTW			4
#define FX_FOP			6
#define FX_FIP			8
#define FX_FDP			16
#define FX_MXCSR		24
#define FX_ST			32
#define FX_XMM			160
#define XSAVE_XSTATE_BV		512

/* ---- extended state ---- */

/* The user features a guest may have: the host's, minus dynamic ones. */
u64 vireo_supported_xcr0(void)
{
	if (!boot_cpu_has(X86_FEATURE_XSAVE))
		return XFEATURE_FP_SSE;
	return vireo_host_xcr0 &
	       (XFEATURE_FP_SSE | XFEATURE_MASK_YMM | XFEATURE_AVX512);
}

/* XCR0 bits this vCPU's CPUID grants (leaf 0xD), within what we offer */
u64 vireo_guest_xcr0_mask(struct vireo_vcpu *vcpu)
{
	u64 mask = 0;
	int i;

	for (i = 0; i < vcpu->cpuid_nent; i++) {
		const struct kvm_cpuid_entry2 *e = &vcpu->cpuid[i];

		if (e->function == 0xd && e->index == 0)
			mask = e->eax | ((u64)e->edx << 32);
	}
	return (mask & vireo_supported_xcr0()) | XFEATURE_MASK_FP;
}

/* The architectural rules for XCR0, as XSETBV checks them. */
bool vireo_xcr0_valid(struct vireo_vcpu *vcpu, u64 xcr0)
{
	if (!(xcr0 & XFEATURE_MASK_FP))
		return false;
	if ((xcr0 & XFEATURE_MASK_YMM) && !(xcr0 & XFEATURE_MASK_SSE))
		return false;
	if (xcr0 & ~vireo_guest_xcr0_mask(vcpu))
		return false;
	if (xcr0 & XFEATURE_AVX512) {
		if ((xcr0 & XFEATURE_AVX512) != XFEATURE_AVX512)
			return false;
		if (!(xcr0 & XFEATURE_MASK_YMM))
			return false;
	}
	return true;
}

/* What KVM_CAP_XSAVE2 answers: the size of KVM_GET_XSAVE2's buffer. */
int vireo_xsave2_size(void)
{
	u64 mask = vireo_supported_xcr0();
	u32 eax, ebx, ecx, edx, size = XSAVE_LEGACY_SIZE + XSAVE_HDR_SIZE;
	int i;

	for (i = 2; i < 64; i++) {
		if (!(mask & BIT_ULL(i)))
			continue;
		cpuid_count(0xd, i, &eax, &ebx, &ecx, &edx);
		size = max(size, eax + ebx);
	}
	return max_t(u32, size, sizeof(struct kvm_xsave));
}

static void get_xsave(struct vireo_vcpu *vcpu, void *buf, unsigned int size)
{
	memset(buf, 0, size);
	fpu_copy_guest_fpstate_to_uabi(&vcpu->guest_fpu, buf, size,
				       vireo_supported_xcr0(), 0);
}

static int set_xsave(struct vireo_vcpu *vcpu, const void *buf)
{
	u32 pkru = 0;

	return fpu_copy_uabi_to_guest_fpstate(&vcpu->guest_fpu, buf,
					      vireo_supported_xcr0(), &pkru);
}

static long xsave_ioctl(struct vireo_vcpu *vcpu, unsigned int ioctl,
			void __user *argp)
{
	unsigned int size = sizeof(struct kvm_xsave);
	void *buf;
	long ret = 0;

	if (ioctl == KVM_GET_XSAVE2 ||
	    (ioctl == KVM_SET_XSAVE && vcpu->guest_fpu.uabi_size > size))
		size = max(size, vcpu->guest_fpu.uabi_size);
	if (ioctl == KVM_SET_XSAVE) {
		buf = memdup_user(argp, size);
		if (IS_ERR(buf))
			return PTR_ERR(buf);
		ret = set_xsave(vcpu, buf);
		kfree(buf);
		return ret;
	}
	buf = kzalloc(size, GFP_KERNEL_ACCOUNT);
	if (!buf)
		return -ENOMEM;
	get_xsave(vcpu, buf, size);
	if (copy_to_user(argp, buf, size))
		ret = -EFAULT;
	kfree(buf);
	return ret;
}

/* KVM_GET_FPU / KVM_SET_FPU: the legacy area of the XSAVE image */
static long fpu_ioctl(struct vireo_vcpu *vcpu, bool set, void __user *argp)
{
	struct kvm_xsave *image;
	struct kvm_fpu *fpu;
	long ret = 0;
	u8 *xs;
	int i;

	image = kzalloc(sizeof(*image), GFP_KERNEL_ACCOUNT);
	fpu = kzalloc(sizeof(*fpu), GFP_KERNEL_ACCOUNT);
	if (!image || !fpu) {
		ret = -ENOMEM;
		goto out;
	}
	xs = (u8 *)image->region;
	get_xsave(vcpu, xs, sizeof(*image));
	if (!set) {
		for (i = 0; i < 8; i++)
			memcpy(fpu->fpr[i], xs + FX_ST + 16 * i, 16);
		memcpy(&fpu->fcw, xs + FX_FCW, 2);
		memcpy(&fpu->fsw, xs + FX_FSW, 2);
		fpu->ftwx = xs[FX_FTW];
		memcpy(&fpu->last_opcode, xs + FX_FOP, 2);
		memcpy(&fpu->last_ip, xs + FX_FIP, 8);
		memcpy(&fpu->last_dp, xs + FX_FDP, 8);
		memcpy(fpu->xmm, xs + FX_XMM, sizeof(fpu->xmm));
		memcpy(&fpu->mxcsr, xs + FX_MXCSR, 4);
		if (copy_to_user(argp, fpu, sizeof(*fpu)))
			ret = -EFAULT;
		goto out;
	}
	if (copy_from_user(fpu, argp, sizeof(*fpu))) {
		ret = -EFAULT;
		goto out;
	}
	for (i = 0; i < 8; i++)
		memcpy(xs + FX_ST + 16 * i, fpu->fpr[i], 16);
	memcpy(xs + FX_FCW, &fpu->fcw, 2);
	memcpy(xs + FX_FSW, &fpu->fsw, 2);
	xs[FX_FTW] = fpu->ftwx;
	memcpy(xs + FX_FOP, &fpu->last_opcode, 2);
	memcpy(xs + FX_FIP, &fpu->last_ip, 8);
	memcpy(xs + FX_FDP, &fpu->last_dp, 8);
	memcpy(xs + FX_XMM, fpu->xmm, sizeof(fpu->xmm));
	memcpy(xs + FX_MXCSR, &fpu->mxcsr, 4);
	/* the x87 and SSE state are now given, not in their init state */
	*(u64 *)(xs + XSAVE_XSTATE_BV) |= XFEATURE_FP_SSE;
	ret = set_xsave(vcpu, xs);
out:
	kfree(fpu);
	kfree(image);
	return ret;
}

static long xcrs_ioctl(struct vireo_vcpu *vcpu, bool set, void __user *argp)
{
	struct kvm_xcrs xcrs;
	u32 i;

	if (!boot_cpu_has(X86_FEATURE_XSAVE))
		return -EINVAL;
	if (!set) {
		memset(&xcrs, 0, sizeof(xcrs));
		xcrs.nr_xcrs = 1;
		xcrs.xcrs[0].xcr = XCR_XFEATURE_ENABLED_MASK;
		xcrs.xcrs[0].value = vcpu->xcr0;
		return copy_to_user(argp, &xcrs, sizeof(xcrs)) ? -EFAULT : 0;
	}
	if (copy_from_user(&xcrs, argp, sizeof(xcrs)))
		return -EFAULT;
	if (xcrs.nr_xcrs > KVM_MAX_XCRS || xcrs.flags)
		return -EINVAL;
	for (i = 0; i < xcrs.nr_xcrs; i++) {
		if (xcrs.xcrs[i].xcr != XCR_XFEATURE_ENABLED_MASK ||
		    !vireo_xcr0_valid(vcpu, xcrs.xcrs[i].value))
			return -EINVAL;
		vcpu->xcr0 = xcrs.xcrs[i].value;
	}
	return 0;
}

/* ---- debug registers ---- */

#define DR6_FIXED_1		0xfffe0ff0ULL
#define DR7_FIXED_1		0x400ULL
#define GUESTDBG_VALID		(KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP | \
				 KVM_GUESTDBG_USE_SW_BP | \
				 KVM_GUESTDBG_USE_HW_BP | \
				 KVM_GUESTDBG_INJECT_DB | \
				 KVM_GUESTDBG_INJECT_BP)

static long debugregs_ioctl(struct vireo_vcpu *vcpu, bool set,
			    void __user *argp)
{
	struct kvm_debugregs d;

	if (!set) {
		memset(&d, 0, sizeof(d));
		memcpy(d.db, vcpu->dbg.db, sizeof(d.db));
		d.dr6 = vcpu->dbg.dr6;
		d.dr7 = vcpu->dbg.dr7;
		return copy_to_user(argp, &d, sizeof(d)) ? -EFAULT : 0;
	}
	if (copy_from_user(&d, argp, sizeof(d)))
		return -EFAULT;
	if (d.flags || (d.dr6 >> 32) || (d.dr7 >> 32))
		return -EINVAL;
	memcpy(vcpu->dbg.db, d.db, sizeof(d.db));
	vcpu->dbg.dr6 = d.dr6 | DR6_FIXED_1;
	vcpu->dbg.dr7 = (d.dr7 & ~0xd800ULL) | DR7_FIXED_1;
	return 0;
}

static long guest_debug_ioctl(struct vireo_vcpu *vcpu, void __user *argp)
{
	struct kvm_guest_debug g;

	if (copy_from_user(&g, argp, sizeof(g)))
		return -EFAULT;
	if (g.control & ~GUESTDBG_VALID)
		return -EINVAL;
	if (g.control & (KVM_GUESTDBG_INJECT_DB | KVM_GUESTDBG_INJECT_BP)) {
		if (vcpu->ev.inject.valid)
			return -EBUSY;
		if (g.control & KVM_GUESTDBG_INJECT_DB)
			vireo_queue_exception(vcpu, 1, false, 0);
		else
			vireo_queue_exception(vcpu, 3, false, 0);
		vcpu->ev.inject.type = (g.control & KVM_GUESTDBG_INJECT_DB) ?
			VIREO_EV_EXCEPTION : VIREO_EV_SOFT_EXCEPTION;
		vcpu->ev.inject.insn_len = 1;
	}
	if (!(g.control & KVM_GUESTDBG_ENABLE))
		g.control = 0;
	vcpu->dbg.guest_debug = g.control;
	memcpy(vcpu->dbg.debug_db, g.arch.debugreg, sizeof(vcpu->dbg.debug_db));
	vcpu->dbg.debug_dr7 = (g.arch.debugreg[7] & 0xffffffff) | DR7_FIXED_1;
	return 0;
}

/* ---- events ---- */

static long get_events(struct vireo_vcpu *vcpu, void __user *argp)
{
	const struct vireo_backend *b = vcpu->vm->backend;
	const struct vireo_event *inj = &vcpu->ev.inject;
	struct kvm_vcpu_events e;

	memset(&e, 0, sizeof(e));
	if (inj->valid) {
		switch (inj->type) {
		case VIREO_EV_EXCEPTION:
		case VIREO_EV_SOFT_EXCEPTION:
		case VIREO_EV_PRIV_SOFT:
			e.exception.injected = 1;
			e.exception.nr = inj->vector;
			e.exception.has_error_code = inj->has_error;
			e.exception.error_code = inj->error_code;
			break;
		case VIREO_EV_INTR:
		case VIREO_EV_SOFT_INTR:
			e.interrupt.injected = 1;
			e.interrupt.nr = inj->vector;
			e.interrupt.soft = inj->type == VIREO_EV_SOFT_INTR;
			break;
		case VIREO_EV_NMI:
			e.nmi.injected = 1;
			break;
		}
	}
	if (!e.interrupt.injected && vcpu->ev.irq_queued) {
		e.interrupt.injected = 1;
		e.interrupt.nr = vcpu->ev.irq_vector;
	}
	e.interrupt.shadow = b->get_interrupt_shadow(vcpu);
	e.nmi.pending = vcpu->ev.nmi_pending;
	e.nmi.masked = b->get_nmi_mask(vcpu);
	e.flags = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW;
	return copy_to_user(argp, &e, sizeof(e)) ? -EFAULT : 0;
}

static long set_events(struct vireo_vcpu *vcpu, void __user *argp)
{
	const struct vireo_backend *b = vcpu->vm->backend;
	struct vireo_event *inj = &vcpu->ev.inject;
	struct kvm_vcpu_events e;

	if (copy_from_user(&e, argp, sizeof(e)))
		return -EFAULT;
	if (e.flags & ~(KVM_VCPUEVENT_VALID_NMI_PENDING |
			KVM_VCPUEVENT_VALID_SIPI_VECTOR |
			KVM_VCPUEVENT_VALID_SHADOW))
		return -EINVAL;
	/* an NMI is not an exception: KVM_NMI or nmi.injected carry it */
	if ((e.exception.injected || e.exception.pending) &&
	    (e.exception.nr >= 32 || e.exception.nr == NMI_VECTOR))
		return -EINVAL;
	if ((e.exception.injected || e.exception.pending) &&
	    (e.interrupt.injected || e.nmi.injected))
		return -EINVAL;

	memset(inj, 0, sizeof(*inj));
	vcpu->ev.irq_queued = false;
	if (e.exception.injected || e.exception.pending) {
		inj->valid = true;
		inj->vector = e.exception.nr;
		inj->type = (e.exception.nr == 3 || e.exception.nr == 4) ?
			    VIREO_EV_SOFT_EXCEPTION : VIREO_EV_EXCEPTION;
		inj->insn_len = 1;
		inj->has_error = e.exception.has_error_code;
		inj->error_code = e.exception.error_code;
	} else if (e.interrupt.injected) {
		if (e.interrupt.soft) {
			inj->valid = true;
			inj->type = VIREO_EV_SOFT_INTR;
			inj->vector = e.interrupt.nr;
			inj->insn_len = 2;	/* INT n */
		} else {
			vcpu->ev.irq_queued = true;
			vcpu->ev.irq_vector = e.interrupt.nr;
		}
	} else if (e.nmi.injected) {
		inj->valid = true;
		inj->type = VIREO_EV_NMI;
		inj->vector = 2;
	}
	if (e.flags & KVM_VCPUEVENT_VALID_NMI_PENDING)
		vcpu->ev.nmi_pending = e.nmi.pending;
	b->set_nmi_mask(vcpu, e.nmi.masked);
	if (e.flags & KVM_VCPUEVENT_VALID_SHADOW)
		b->set_interrupt_shadow(vcpu, e.interrupt.shadow &
					(KVM_X86_SHADOW_INT_MOV_SS |
					 KVM_X86_SHADOW_INT_STI));
	return 0;
}

/* ---- the ioctls ---- */

long vireo_state_ioctl(struct vireo_vcpu *vcpu, unsigned int ioctl,
		       void __user *argp)
{
	struct kvm_interrupt irq;

	switch (ioctl) {
	case KVM_GET_FPU:
	case KVM_SET_FPU:
		return fpu_ioctl(vcpu, ioctl == KVM_SET_FPU, argp);
	case KVM_GET_XSAVE:
	case KVM_GET_XSAVE2:
	case KVM_SET_XSAVE:
		return xsave_ioctl(vcpu, ioctl, argp);
	case KVM_GET_XCRS:
	case KVM_SET_XCRS:
		return xcrs_ioctl(vcpu, ioctl == KVM_SET_XCRS, argp);
	case KVM_GET_DEBUGREGS:
	case KVM_SET_DEBUGREGS:
		return debugregs_ioctl(vcpu, ioctl == KVM_SET_DEBUGREGS, argp);
	case KVM_SET_GUEST_DEBUG:
		return guest_debug_ioctl(vcpu, argp);
	case KVM_GET_VCPU_EVENTS:
		return get_events(vcpu, argp);
	case KVM_SET_VCPU_EVENTS:
		return set_events(vcpu, argp);
	case KVM_INTERRUPT:
		/* the in-kernel PIC and APIC own the INTR line */
		if (vcpu->apic)
			return -ENXIO;
		if (copy_from_user(&irq, argp, sizeof(irq)))
			return -EFAULT;
		if (irq.irq >= 256)
			return -EINVAL;
		vcpu->ev.irq_queued = true;
		vcpu->ev.irq_vector = irq.irq;
		return 0;
	case KVM_NMI:
		vcpu->ev.nmi_pending = true;
		return 0;
	default:
		return -ENOIOCTLCMD;
	}
}
