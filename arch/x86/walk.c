// SPDX-License-Identifier: GPL-2.0-only
/*
 * Guest page-table walker: translates a guest linear address the way the
 * guest's own MMU would, for the accesses the core emulates (string I/O,
 * MMIO operands).  The tables live in guest memory and are hostile: each
 * entry is read with vireo_read_guest(), a walk is at most four levels,
 * and nothing in an entry is trusted beyond the bits the architecture
 * defines.
 *
 * Accessed and dirty bits are NOT set for now: a walk here leaves the
 * guest's tables untouched, so a guest that scans them for accessed or
 * dirty pages does not see the accesses the core emulates (string I/O
 * into a page it has not written itself, for one).
 *
 * Reserved bits are checked where it is cheap: above MAXPHYADDR is taken
 * to be 52 (the architectural limit) rather than the guest's CPUID, so an
 * address bit between the real MAXPHYADDR and 51 is not reported.
 * Protection keys are not checked.
 */
#include <linux/bits.h>
#include <linux/errno.h>
#include <linux/kvm.h>
#include <linux/types.h>
#include <asm/byteorder.h>
#include <asm/cpufeature.h>
#include <asm/msr-index.h>
#include <asm/processor-flags.h>

#include <vireo/insn.h>
#include <vireo/mmu.h>
#include <vireo/vireo.h>

#define PTE_P		BIT_ULL(0)
#define PTE_RW		BIT_ULL(1)
#define PTE_US		BIT_ULL(2)
#define PTE_PS		BIT_ULL(7)
#define PTE_XD		BIT_ULL(63)

/* physical address bits of a PAE or 4-level entry (MAXPHYADDR 52) */
#define PTE_ADDR	GENMASK_ULL(51, 12)

/* #PF error code bits */
#define PFERR_P		BIT(0)
#define PFERR_W		BIT(1)
#define PFERR_U		BIT(2)
#define PFERR_RSVD	BIT(3)
#define PFERR_ID	BIT(4)

struct walk {
	struct vireo_vcpu *vcpu;
	const struct kvm_sregs *sregs;
	u32 access;
	bool nxe;		/* EFER.NXE, and the format has an XD bit */
	/* the rights every level so far grants */
	bool user, write, exec;
	u32 *pf_error;
};

/* Read one entry; -ENXIO when the table is outside guest memory. */
static int read_entry(struct walk *w, u64 gpa, bool wide, u64 *entry)
{
	int ret;

	if (wide) {
		__le64 v;

		ret = vireo_read_guest(w->vcpu->vm, gpa, &v, sizeof(v));
		*entry = le64_to_cpu(v);
	} else {
		__le32 v;

		ret = vireo_read_guest(w->vcpu->vm, gpa, &v, sizeof(v));
		*entry = le32_to_cpu(v);
	}
	if (ret == -EFAULT)
		return -ENXIO;	/* -EFAULT means a guest #PF to our callers */
	return ret;
}

/* Fail the walk with a #PF whose error code has @bits besides the access. */
static int fault(struct walk *w, u32 bits)
{
	const struct kvm_sregs *s = w->sregs;
	u32 err = bits | (w->access & (VIREO_ACC_WRITE | VIREO_ACC_USER));

	if (w->access & VIREO_ACC_FETCH) {
		err &= ~PFERR_W;
		/* I/D is reported only with SMEP or with PAE and NXE */
		if ((s->cr4 & X86_CR4_SMEP) ||
		    ((s->cr4 & X86_CR4_PAE) && (s->efer & EFER_NX)))
			err |= PFERR_ID;
	}
	*w->pf_error = err;
	return -EFAULT;
}

/* Take in the rights of one present entry. */
static void accumulate(struct walk *w, u64 entry)
{
	w->user &= !!(entry & PTE_US);
	w->write &= !!(entry & PTE_RW);
	if (w->nxe)
		w->exec &= !(entry & PTE_XD);
}

/* The rights the walk found against the access asked for. */
static int check_rights(struct walk *w)
{
	const struct kvm_sregs *s = w->sregs;
	bool user = w->access & VIREO_ACC_USER;

	if (user && !w->user)
		return fault(w, PFERR_P);
	if (w->access & VIREO_ACC_FETCH) {
		if (!w->exec)
			return fault(w, PFERR_P);
		/* SMEP: no supervisor fetch from a user page */
		if (!user && w->user && (s->cr4 & X86_CR4_SMEP))
			return fault(w, PFERR_P);
		return 0;
	}
	/* SMAP: no supervisor data access to a user page unless EFLAGS.AC */
	if (!user && w->user && (s->cr4 & X86_CR4_SMAP) &&
	    !(w->vcpu->rflags & X86_EFLAGS_AC))
		return fault(w, PFERR_P);
	/* supervisor writes ignore R/W unless CR0.WP */
	if ((w->access & VIREO_ACC_WRITE) && !w->write &&
	    (user || (s->cr0 & X86_CR0_WP)))
		return fault(w, PFERR_P);
	return 0;
}

/*
 * PAE and 4-level tables: 512 8-byte entries, 9 address bits per level,
 * from @level (4: PML4, 2: page directory) down to the page.
 */
static int walk_wide(struct walk *w, u64 table, int level, u64 va, u64 *gpa)
{
	for (; level >= 1; level--) {
		unsigned int shift = 12 + 9 * (level - 1);
		u64 entry, rsvd = 0, mask;
		bool leaf = level == 1;
		int ret;

		ret = read_entry(w, table + ((va >> shift) & 511) * 8, true,
				 &entry);
		if (ret)
			return ret;
		if (!(entry & PTE_P))
			return fault(w, 0);
		if (!w->nxe)
			rsvd |= PTE_XD;
		if (level > 1 && (entry & PTE_PS)) {
			if (level == 4 ||
			    (level == 3 && !boot_cpu_has(X86_FEATURE_GBPAGES))) {
				rsvd |= PTE_PS;
			} else {
				/* a 1 GiB or 2 MiB page: bits shift-1..13 are 0 */
				leaf = true;
				rsvd |= GENMASK_ULL(shift - 1, 13);
			}
		}
		if (entry & rsvd)
			return fault(w, PFERR_P | PFERR_RSVD);
		accumulate(w, entry);
		if (leaf) {
			ret = check_rights(w);
			if (ret)
				return ret;
			mask = BIT_ULL(shift) - 1;
			*gpa = (entry & PTE_ADDR & ~mask) | (va & mask);
			return 0;
		}
		table = entry & PTE_ADDR;
	}
	return -EIO;	/* not reached: level 1 is always a leaf */
}

/* 32-bit paging: two levels of 1024 4-byte entries. */
static int walk_32(struct walk *w, u32 va, u64 *gpa)
{
	const struct kvm_sregs *s = w->sregs;
	u64 pde, pte;
	int ret;

	ret = read_entry(w, (s->cr3 & 0xfffff000) + (va >> 22) * 4, false,
			 &pde);
	if (ret)
		return ret;
	if (!(pde & PTE_P))
		return fault(w, 0);
	accumulate(w, pde);
	if ((pde & PTE_PS) && (s->cr4 & X86_CR4_PSE)) {
		/*
		 * 4 MiB page.  PSE-36: bits 20:13 are physical address bits
		 * 39:32, bit 21 is reserved (MAXPHYADDR taken as 40 or more).
		 */
		if (pde & BIT(21))
			return fault(w, PFERR_P | PFERR_RSVD);
		ret = check_rights(w);
		if (ret)
			return ret;
		*gpa = (pde & 0xffc00000) | (((pde >> 13) & 0xff) << 32) |
		       (va & 0x3fffff);
		return 0;
	}
	ret = read_entry(w, (pde & 0xfffff000) + ((va >> 12) & 1023) * 4,
			 false, &pte);
	if (ret)
		return ret;
	if (!(pte & PTE_P))
		return fault(w, 0);
	accumulate(w, pte);
	ret = check_rights(w);
	if (ret)
		return ret;
	*gpa = (pte & 0xfffff000) | (va & 0xfff);
	return 0;
}

/* PAE paging: four PDPTEs at CR3, then two levels of 8-byte entries. */
static int walk_pae(struct walk *w, u32 va, u64 *gpa)
{
	u64 pdpte;
	int ret;

	ret = read_entry(w, (w->sregs->cr3 & 0xffffffe0) + (va >> 30) * 8,
			 true, &pdpte);
	if (ret)
		return ret;
	if (!(pdpte & PTE_P))
		return fault(w, 0);
	/*
	 * A PDPTE has no rights bits: 2:1, 8:5 and 63:52 are reserved, but
	 * AMD CPUs (and QEMU's model of them) set the accessed bit 5 when
	 * they walk, so 6:5 are tolerated.
	 */
	if (pdpte & (GENMASK_ULL(2, 1) | GENMASK_ULL(8, 7) |
		     GENMASK_ULL(63, 52)))
		return fault(w, PFERR_P | PFERR_RSVD);
	return walk_wide(w, pdpte & PTE_ADDR, 2, va, gpa);
}

int vireo_gva_to_gpa(struct vireo_vcpu *vcpu, const struct kvm_sregs *sregs,
		     u64 gva, u32 access, u64 *gpa, u32 *pf_error)
{
	struct walk w = {
		.vcpu = vcpu,
		.sregs = sregs,
		.access = access,
		.user = true,
		.write = true,
		.exec = true,
		.pf_error = pf_error,
	};

	*pf_error = 0;
	if (!(sregs->cr0 & X86_CR0_PG)) {
		/* no paging, and so no long mode: linear addresses are 32-bit */
		*gpa = (u32)gva;
		return 0;
	}
	if (sregs->efer & EFER_LMA) {
		if (sregs->cr4 & X86_CR4_LA57)
			return -EOPNOTSUPP;
		/* non-canonical: #GP or #SS, not a page fault */
		if ((u64)((s64)(gva << 16) >> 16) != gva)
			return -EINVAL;
		w.nxe = sregs->efer & EFER_NX;
		return walk_wide(&w, sregs->cr3 & PTE_ADDR, 4, gva, gpa);
	}
	if (sregs->cr4 & X86_CR4_PAE) {
		w.nxe = sregs->efer & EFER_NX;
		return walk_pae(&w, (u32)gva, gpa);
	}
	return walk_32(&w, (u32)gva, gpa);
}
