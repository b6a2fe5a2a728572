// SPDX-License-Identifier: GPL-2.0-only
/*
 * CPUID: what Vireo can offer a guest (KVM_GET_SUPPORTED_CPUID), the
 * table a VMM gives each vCPU (KVM_SET_CPUID2 / KVM_GET_CPUID2), and the
 * guest's CPUID instruction answered from that table.
 */
#define pr_fmt(fmt) "vireo: " fmt

#include <linux/kvm.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <asm/kvm_para.h>
#include <asm/processor.h>

#include <vireo/core.h>

/* KVM's bound on a CPUID table */
#define VIREO_MAX_CPUID_ENTRIES	256
#define HYPERVISOR_BASE		0x40000000
/* "KVMKVMKVM\0\0\0": guests look for KVM's paravirtual interface here */
#define SIG_EBX			0x4b4d564b
#define SIG_ECX			0x564b4d56
#define SIG_EDX			0x0000004d

/* CPUID.1:ECX and EDX bits a guest does not get */
#define F1_ECX_HIDDEN	(BIT(3) |	/* MONITOR: intercepted, #UD */ \
			 BIT(4) |	/* DS-CPL */ \
			 BIT(5) |	/* VMX: no nested virtualization */ \
			 BIT(6) |	/* SMX */ \
			 BIT(7) |	/* EIST */ \
			 BIT(8) |	/* TM2 */ \
			 BIT(14) |	/* xTPR update control */ \
			 BIT(15) |	/* PDCM */ \
			 BIT(27))	/* OSXSAVE: follows the guest's CR4 */
#define F1_ECX_HYPERVISOR	BIT(31)
#define F1_ECX_X2APIC		BIT(21)	/* the in-kernel APIC has it */
#define F1_EDX_HIDDEN	(BIT(21) |	/* debug store */ \
			 BIT(22) |	/* ACPI thermal MSRs */ \
			 BIT(29) |	/* TM */ \
			 BIT(31))	/* PBE */
/* CPUID.7.0:ECX */
#define F7_ECX_HIDDEN	(BIT(3) |	/* PKU: PKRU is not switched yet */ \
			 BIT(4) |	/* OSPKE */ \
			 BIT(5) |	/* WAITPKG */ \
			 BIT(16) |	/* LA57: the page walker has 4 levels */ \
			 BIT(30))	/* SGX launch control */
/* CPUID.7.0:EBX */
#define F7_EBX_HIDDEN	(BIT(2) |	/* SGX */ \
			 BIT(25))	/* Intel PT */
/* CPUID.80000001h:ECX */
#define F81_ECX_HIDDEN	(BIT(2) |	/* SVM: no nested virtualization */ \
			 BIT(13))	/* MWAITX */

/*
 * Features whose registers live in XSAVE components: a guest gets them
 * only with the component in the XCR0 we offer (none where the host's
 * kernel does not use XSAVE, as under Bochs).
 */
#define F1_ECX_XSAVE		BIT(26)
#define F1_ECX_AVX_FAMILY	(BIT(12) |	/* FMA */ \
				 BIT(28) |	/* AVX */ \
				 BIT(29))	/* F16C */
#define F7_EBX_AVX2		BIT(5)
#define F7_EBX_AVX512		(BIT(16) | BIT(17) | BIT(21) | BIT(26) | \
				 BIT(27) | BIT(28) | BIT(30) | BIT(31))
#define F7_ECX_AVX512		(BIT(1) | BIT(6) | BIT(11) | BIT(12) | \
				 BIT(14))
#define F7_EDX_AVX512		(BIT(2) | BIT(3) | BIT(8) | BIT(23))
#define F7_1_EAX_AVX		(BIT(4) |	/* AVX-VNNI */ \
				 BIT(5))	/* AVX512-BF16 */

static void mask_xstate_features(struct kvm_cpuid_entry2 *e)
{
	u64 xcr0 = vireo_host_xcr0 ? vireo_supported_xcr0() : 0;
	bool avx = (xcr0 & XFEATURE_MASK_YMM) == XFEATURE_MASK_YMM;
	bool avx512 = (xcr0 & XFEATURE_AVX512) == XFEATURE_AVX512;

	switch (e->function) {
	case 1:
		if (!xcr0)
			e->ecx &= ~F1_ECX_XSAVE;
		if (!avx)
			e->ecx &= ~F1_ECX_AVX_FAMILY;
		break;
	case 7:
		if (e->index == 0) {
			if (!avx)
				e->ebx &= ~F7_EBX_AVX2;
			if (!avx512) {
				e->ebx &= ~F7_EBX_AVX512;
				e->ecx &= ~F7_ECX_AVX512;
				e->edx &= ~F7_EDX_AVX512;
			}
		} else if (e->index == 1 && !avx) {
			e->eax &= ~F7_1_EAX_AVX;
		}
		break;
	case 0xd:
		if (!xcr0) {
			e->eax = 0;
			e->ebx = 0;
			e->ecx = 0;
			e->edx = 0;
		}
		break;
	}
}

/* Leaves whose answer depends on ECX, and how many subleaves we list. */
static bool leaf_indexed(u32 leaf)
{
	switch (leaf) {
	case 4: case 7: case 0xb: case 0xd: case 0xf: case 0x10:
	case 0x12: case 0x14: case 0x17: case 0x18: case 0x1d: case 0x1e:
	case 0x1f: case 0x20: case 0x8000001d: case 0x80000020:
		return true;
	default:
		return false;
	}
}

/* Whether subleaf @sub of @leaf exists, from the host's answer. */
static bool subleaf_exists(u32 leaf, u32 sub, u32 eax, u32 ebx, u32 ecx)
{
	if (sub == 0)
		return true;
	switch (leaf) {
	case 4:
	case 0x8000001d:
		return eax & 0x1f;		/* cache type 0: no more */
	case 0xb:
	case 0x1f:
		return (ecx >> 8) & 0xff;	/* level type 0: no more */
	case 0xd:
		return sub < 64;
	default:
		return sub < 8 && (eax | ebx | ecx);
	}
}

static void mask_leaf(struct kvm_cpuid_entry2 *e)
{
	switch (e->function) {
	case 1:
		/* KVM leaves the hypervisor bit to the VMM, so do we */
		e->ecx &= ~(F1_ECX_HIDDEN | F1_ECX_HYPERVISOR);
		e->ecx |= F1_ECX_X2APIC;
		e->edx &= ~F1_EDX_HIDDEN;
		e->ebx &= 0x00ffffff;	/* the APIC ID is the VMM's to set */
		break;
	case 5:		/* MONITOR/MWAIT */
	case 6:		/* thermal and power */
	case 0xa:	/* architectural PMU: not virtualized yet */
		e->eax = 0;
		e->ebx = 0;
		e->ecx = 0;
		e->edx = 0;
		break;
	case 7:
		if (e->index == 0) {
			e->ebx &= ~F7_EBX_HIDDEN;
			e->ecx &= ~F7_ECX_HIDDEN;
		}
		break;
	case 0xd:
		if (e->index == 0) {
			/* the XCR0 bits a guest may set (state.c) */
			e->eax &= (u32)vireo_supported_xcr0();
			e->edx &= vireo_supported_xcr0() >> 32;
		} else if (e->index == 1) {
			/* XSAVES and IA32_XSS are not switched */
			e->eax &= ~BIT(3);
			e->ecx = 0;
			e->edx = 0;
		}
		break;
	case 0x80000001:
		e->ecx &= ~F81_ECX_HIDDEN;
		break;
	case 0x8000000a:	/* SVM features */
		e->eax = 0;
		e->ebx = 0;
		e->ecx = 0;
		e->edx = 0;
		break;
	}
}

static int add_entry(struct kvm_cpuid_entry2 *out, int *n, int max,
		     u32 leaf, u32 sub)
{
	struct kvm_cpuid_entry2 *e;

	if (*n >= max)
		return -E2BIG;
	e = &out[(*n)++];
	memset(e, 0, sizeof(*e));
	e->function = leaf;
	e->index = sub;
	cpuid_count(leaf, sub, &e->eax, &e->ebx, &e->ecx, &e->edx);
	if (leaf_indexed(leaf))
		e->flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
	mask_leaf(e);
	mask_xstate_features(e);
	return 0;
}

static int add_leaves(struct kvm_cpuid_entry2 *out, int *n, int max,
		      u32 first, u32 last)
{
	u32 leaf, sub;
	int ret;

	for (leaf = first; leaf <= last; leaf++) {
		if (!leaf_indexed(leaf)) {
			ret = add_entry(out, n, max, leaf, 0);
			if (ret)
				return ret;
			continue;
		}
		for (sub = 0; sub < 64; sub++) {
			u32 a, b, c, d;

			cpuid_count(leaf, sub, &a, &b, &c, &d);
			if (!subleaf_exists(leaf, sub, a, b, c))
				break;
			ret = add_entry(out, n, max, leaf, sub);
			if (ret)
				return ret;
		}
	}
	return 0;
}

static int fill_supported(struct kvm_cpuid_entry2 *out, int max)
{
	u32 basic = min_t(u32, cpuid_eax(0), 0x20);
	u32 ext = min_t(u32, cpuid_eax(0x80000000), 0x80000021);
	struct kvm_cpuid_entry2 *e;
	int n = 0, ret;

	ret = add_leaves(out, &n, max, 0, basic);
	if (ret)
		return ret;
	out[0].eax = basic;

	if (n + 2 > max)
		return -E2BIG;
	e = &out[n++];
	memset(e, 0, sizeof(*e));
	e->function = HYPERVISOR_BASE;
	e->eax = HYPERVISOR_BASE + 1;
	e->ebx = SIG_EBX;
	e->ecx = SIG_ECX;
	e->edx = SIG_EDX;
	e = &out[n++];
	memset(e, 0, sizeof(*e));
	e->function = HYPERVISOR_BASE + 1;
	/* kvmclock (arch/x86/msr.c) */
	e->eax = BIT(KVM_FEATURE_CLOCKSOURCE) | BIT(KVM_FEATURE_NOP_IO_DELAY) |
		 BIT(KVM_FEATURE_CLOCKSOURCE2) |
		 BIT(KVM_FEATURE_CLOCKSOURCE_STABLE_BIT);

	if (ext >= 0x80000000) {
		int first = n;

		ret = add_leaves(out, &n, max, 0x80000000, ext);
		if (ret)
			return ret;
		out[first].eax = ext;
	}
	return n;
}

/* KVM_GET_SUPPORTED_CPUID on the device fd */
long vireo_get_supported_cpuid(struct kvm_cpuid2 __user *argp)
{
	struct kvm_cpuid_entry2 *entries;
	struct kvm_cpuid2 hdr;
	int n, ret = 0;

	if (copy_from_user(&hdr, argp, sizeof(hdr)))
		return -EFAULT;
	if (hdr.nent < 1)
		return -E2BIG;
	hdr.nent = min_t(u32, hdr.nent, VIREO_MAX_CPUID_ENTRIES);
	entries = kvcalloc(hdr.nent, sizeof(*entries), GFP_KERNEL_ACCOUNT);
	if (!entries)
		return -ENOMEM;
	n = fill_supported(entries, hdr.nent);
	if (n < 0) {
		ret = n;
		goto out;
	}
	hdr.nent = n;
	if (copy_to_user(argp, &hdr, sizeof(hdr)) ||
	    copy_to_user(argp->entries, entries, n * sizeof(*entries)))
		ret = -EFAULT;
out:
	kvfree(entries);
	return ret;
}

long vireo_set_cpuid2(struct vireo_vcpu *vcpu, struct kvm_cpuid2 __user *argp)
{
	struct kvm_cpuid_entry2 *entries = NULL;
	struct kvm_cpuid2 hdr;
	size_t size;

	if (copy_from_user(&hdr, argp, sizeof(hdr)))
		return -EFAULT;
	if (hdr.nent > VIREO_MAX_CPUID_ENTRIES)
		return -E2BIG;
	size = hdr.nent * sizeof(*entries);
	if (hdr.nent) {
		entries = vmemdup_user(argp->entries, size);
		if (IS_ERR(entries))
			return PTR_ERR(entries);
	}
	/*
	 * As KVM: once the vCPU has run, its CPUID may only be "set" to
	 * what it already is.
	 */
	if (vcpu->has_run) {
		bool same = hdr.nent == vcpu->cpuid_nent &&
			    (!size || !memcmp(entries, vcpu->cpuid, size));

		kvfree(entries);
		return same ? 0 : -EINVAL;
	}
	kvfree(vcpu->cpuid);
	vcpu->cpuid = entries;
	vcpu->cpuid_nent = hdr.nent;
	return 0;
}

long vireo_get_cpuid2(struct vireo_vcpu *vcpu, struct kvm_cpuid2 __user *argp)
{
	struct kvm_cpuid2 hdr;

	if (copy_from_user(&hdr, argp, sizeof(hdr)))
		return -EFAULT;
	/* as KVM: E2BIG leaves nent as it was */
	if (hdr.nent < vcpu->cpuid_nent)
		return -E2BIG;
	hdr.nent = vcpu->cpuid_nent;
	if (copy_to_user(argp, &hdr, sizeof(hdr)) ||
	    copy_to_user(argp->entries, vcpu->cpuid,
			 vcpu->cpuid_nent * sizeof(*vcpu->cpuid)))
		return -EFAULT;
	return 0;
}

static const struct kvm_cpuid_entry2 *find_entry(struct vireo_vcpu *vcpu,
						 u32 leaf, u32 sub)
{
	const struct kvm_cpuid_entry2 *e;
	int i;

	for (i = 0; i < vcpu->cpuid_nent; i++) {
		e = &vcpu->cpuid[i];
		if (e->function != leaf)
			continue;
		if ((e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) &&
		    e->index != sub)
			continue;
		return e;
	}
	return NULL;
}

/* Whether the VMM's table grants a feature: @reg 0-3 is EAX-EDX. */
bool vireo_cpuid_has(struct vireo_vcpu *vcpu, u32 leaf, u32 sub, int reg,
		     int bit)
{
	const struct kvm_cpuid_entry2 *e = find_entry(vcpu, leaf, sub);
	u32 v;

	if (!e)
		return false;
	v = reg == 0 ? e->eax : reg == 1 ? e->ebx : reg == 2 ? e->ecx : e->edx;
	return v & BIT(bit);
}

/*
 * CPUID.(0DH,0).EBX: the size of the XSAVE area for the features the
 * guest's XCR0 enables now (the legacy area and header, then each
 * component at the offset the table gives).
 */
static u32 xsave_size_for(struct vireo_vcpu *vcpu, u64 xcr0)
{
	const struct kvm_cpuid_entry2 *c;
	u32 size = 512 + 64;
	int i;

	for (i = 2; i < 64; i++) {
		if (!(xcr0 & BIT_ULL(i)))
			continue;
		c = find_entry(vcpu, 0xd, i);
		if (c && c->eax && c->ebx + c->eax > size)
			size = c->ebx + c->eax;
	}
	return size;
}

/*
 * The guest executed CPUID: answer from the VMM's table.  A leaf the
 * table lacks reads as zeros, except that on an Intel guest a basic leaf
 * above the highest one answers like the highest one; with no table at
 * all every leaf reads as zeros, as on KVM.
 */
void vireo_emulate_cpuid(struct vireo_vcpu *vcpu, bool guest_osxsave)
{
	u32 leaf = vcpu->regs[VCPU_RAX], sub = vcpu->regs[VCPU_RCX];
	const struct kvm_cpuid_entry2 *e, *max;
	u32 eax = 0, ebx = 0, ecx = 0, edx = 0;

	e = find_entry(vcpu, leaf, sub);
	if (!e && leaf < HYPERVISOR_BASE) {
		max = find_entry(vcpu, 0, 0);
		/* "Genu"ineIntel */
		if (max && max->ebx == 0x756e6547 && leaf > max->eax)
			e = find_entry(vcpu, max->eax, sub);
	}
	if (e) {
		eax = e->eax;
		ebx = e->ebx;
		ecx = e->ecx;
		edx = e->edx;
		if (e->function == 1) {
			ecx &= ~BIT(27);
			if (guest_osxsave && (e->ecx & BIT(26)))
				ecx |= BIT(27);
		}
		/* as the CPU: the size follows XCR0 (KVM does the same) */
		if (e->function == 0xd && e->index == 0 && ebx)
			ebx = xsave_size_for(vcpu, vcpu->xcr0);
	}
	vcpu->regs[VCPU_RAX] = eax;
	vcpu->regs[VCPU_RBX] = ebx;
	vcpu->regs[VCPU_RCX] = ecx;
	vcpu->regs[VCPU_RDX] = edx;
}
