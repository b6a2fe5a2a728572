// SPDX-License-Identifier: GPL-2.0-only
/*
 * vireo-svm.ko: the AMD-V backend.
 */
#define pr_fmt(fmt) "vireo-svm: " fmt

#include <linux/gfp.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/percpu.h>
#include <linux/slab.h>
#include <asm/asm.h>
#include <asm/io.h>
#include <asm/msr.h>
#include <asm/processor.h>

#include <vireo/backend.h>
#include <vireo/vireo.h>

#include "vmcb.h"

/* CPUID 0x80000001 ECX */
#define CPUID_SVM			BIT(2)
/* CPUID 0x8000000A EDX: the SVM feature leaf */
#define SVM_FEAT_NPT			BIT(0)
#define SVM_FEAT_NRIPS			BIT(3)
#define SVM_FEAT_VMCB_CLEAN		BIT(5)
#define SVM_FEAT_FLUSH_BY_ASID		BIT(6)
#define SVM_FEAT_DECODE_ASSISTS		BIT(7)
/* VM_CR MSR */
#define VM_CR_SVMDIS			BIT_ULL(4)

#define PAT_POWER_ON			0x0007040600070406ULL
#define UD_VECTOR			6
#define DR_INTERCEPT_ALL		0xffffffffU
#define EXC_INTERCEPT_DB		BIT(1)
#define EXC_INTERCEPT_BP		BIT(3)
#define IOPM_PAGES_ORDER		2	/* 12 KiB used */
#define MSRPM_PAGES_ORDER		1	/* 8 KiB */

/* data[1] of the internal error when the CPU lost the guest's state */
#define SVM_STATE_LOST		0x4c4f5354	/* "LOST" */

static u32 svm_features;
static u32 max_asid;

/* Per CPU: the VMRUN host save area, our VMSAVE/VMLOAD area, ASIDs. */
struct svm_cpu {
	struct page *hsave;
	struct page *host_state;
	u64 asid_generation;
	u32 next_asid;
};

static DEFINE_PER_CPU(struct svm_cpu, svm_cpus);

/* Everything intercepted: shared, read-only. */
static struct page *iopm_pages;
static struct page *msrpm_pages;

struct svm_vcpu {
	struct vireo_vcpu vcpu;		/* first: the core allocates us */
	struct vmcb *vmcb;
	u64 vmcb_pa;
	u64 asid_generation;
	u32 asid;
	bool new_asid;
	/* the guest is in its NMI handler until its IRET */
	bool nmi_masked;
	/* its EFER.LME, kept out of the VMCB: svm_sync_lme() */
	bool lme_hidden;
};

struct svm_vm {
	struct vireo_vm vm;		/* first: the core allocates us */
	u64 npt_root;
};

static inline struct svm_vcpu *to_svm(struct vireo_vcpu *vcpu)
{
	return container_of(vcpu, struct svm_vcpu, vcpu);
}

static inline struct svm_vm *to_svm_vm(struct vireo_vm *vm)
{
	return container_of(vm, struct svm_vm, vm);
}

void vireo_svm_vmrun(u64 vmcb_pa, u64 *regs, u64 host_save_pa);

static int svm_hardware_enable(void)
{
	struct svm_cpu *sc = this_cpu_ptr(&svm_cpus);
	u64 efer;

	rdmsrl(MSR_EFER, efer);
	if (efer & EFER_SVME)
		return -EBUSY;	/* another hypervisor has SVM on */
	wrmsrl(MSR_EFER, efer | EFER_SVME);
	wrmsrl(MSR_VM_HSAVE_PA, page_to_phys(sc->hsave));
	/*
	 * Whoever used SVM here before may have left translations tagged
	 * with any ASID: the first allocation wraps and flushes them all.
	 */
	sc->next_asid = max_asid + 1;
	return 0;
}

static void svm_hardware_disable(void)
{
	u64 efer;

	wrmsrl(MSR_VM_HSAVE_PA, 0);
	rdmsrl(MSR_EFER, efer);
	wrmsrl(MSR_EFER, efer & ~EFER_SVME);
}

static void svm_emergency_disable(void)
{
	u64 efer;

	rdmsrl(MSR_EFER, efer);
	if (!(efer & EFER_SVME))
		return;
	/* GIF may be clear if we were interrupted around VMRUN. */
	asm volatile("1: stgi\n"
		     "2:\n\t"
		     _ASM_EXTABLE(1b, 2b)
		     : : : "memory");
	wrmsrl(MSR_EFER, efer & ~EFER_SVME);
}

static int svm_check_hardware(void)
{
	u64 vm_cr;

	if (cpuid_eax(0x80000000) < 0x8000000a ||
	    !(cpuid_ecx(0x80000001) & CPUID_SVM)) {
		pr_err("this CPU has no AMD-V (SVM)\n");
		return -EOPNOTSUPP;
	}
	if (rdmsrl_safe(MSR_VM_CR, &vm_cr) || (vm_cr & VM_CR_SVMDIS)) {
		pr_err("AMD-V is disabled by the firmware (VM_CR.SVMDIS)\n");
		return -EOPNOTSUPP;
	}
	svm_features = cpuid_edx(0x8000000a);
	if (!(svm_features & SVM_FEAT_NPT)) {
		pr_err("this CPU lacks nested paging (NPT), which Vireo needs\n");
		return -EOPNOTSUPP;
	}
	max_asid = cpuid_ebx(0x8000000a) - 1;
	if (!max_asid || max_asid == U32_MAX) {
		pr_err("this CPU has no ASIDs for guests\n");
		return -EOPNOTSUPP;
	}
	return 0;
}

static void svm_free_pages(void)
{
	struct svm_cpu *sc;
	int cpu;

	for_each_possible_cpu(cpu) {
		sc = per_cpu_ptr(&svm_cpus, cpu);
		if (sc->hsave)
			__free_page(sc->hsave);
		if (sc->host_state)
			__free_page(sc->host_state);
		sc->hsave = NULL;
		sc->host_state = NULL;
	}
	if (iopm_pages)
		__free_pages(iopm_pages, IOPM_PAGES_ORDER);
	if (msrpm_pages)
		__free_pages(msrpm_pages, MSRPM_PAGES_ORDER);
	iopm_pages = NULL;
	msrpm_pages = NULL;
}

static int svm_alloc_pages(void)
{
	struct svm_cpu *sc;
	int cpu;

	for_each_possible_cpu(cpu) {
		sc = per_cpu_ptr(&svm_cpus, cpu);
		sc->hsave = alloc_pages_node(cpu_to_node(cpu),
					     GFP_KERNEL | __GFP_ZERO, 0);
		sc->host_state = alloc_pages_node(cpu_to_node(cpu),
						  GFP_KERNEL | __GFP_ZERO, 0);
		if (!sc->hsave || !sc->host_state)
			goto nomem;
	}
	iopm_pages = alloc_pages(GFP_KERNEL, IOPM_PAGES_ORDER);
	msrpm_pages = alloc_pages(GFP_KERNEL, MSRPM_PAGES_ORDER);
	if (!iopm_pages || !msrpm_pages)
		goto nomem;
	memset(page_address(iopm_pages), 0xff, PAGE_SIZE << IOPM_PAGES_ORDER);
	memset(page_address(msrpm_pages), 0xff,
	       PAGE_SIZE << MSRPM_PAGES_ORDER);
	return 0;
nomem:
	svm_free_pages();
	return -ENOMEM;
}

/* ---- VMs ---- */

static int svm_vm_init(struct vireo_vm *vm)
{
	return 0;
}

static void svm_vm_destroy(struct vireo_vm *vm)
{
}

static u64 svm_tdp_entry(u64 hpa, bool leaf, bool writable, bool executable)
{
	/*
	 * NPT entries are long-mode page table entries; guest accesses
	 * count as user accesses, so U is always set.
	 */
	u64 e = hpa | _PAGE_PRESENT | _PAGE_USER;

	if (!leaf)
		return e | _PAGE_RW;
	if (writable)
		e |= _PAGE_RW;
	if (!executable)
		e |= _PAGE_NX;
	return e;
}

static void svm_set_tdp_root(struct vireo_vm *vm, u64 root_hpa)
{
	to_svm_vm(vm)->npt_root = root_hpa;
}

/* ---- segments ---- */

static void seg_to_kvm(const struct vmcb_seg *v, struct kvm_segment *k)
{
	k->base = v->base;
	k->limit = v->limit;
	k->selector = v->selector;
	k->type = SEG_ATTR_TYPE(v->attrib);
	k->s = !!(v->attrib & SEG_ATTR_S);
	k->dpl = (v->attrib >> SEG_ATTR_DPL_SHIFT) & 3;
	k->present = !!(v->attrib & SEG_ATTR_P);
	k->avl = !!(v->attrib & SEG_ATTR_AVL);
	k->l = !!(v->attrib & SEG_ATTR_L);
	k->db = !!(v->attrib & SEG_ATTR_DB);
	k->g = !!(v->attrib & SEG_ATTR_G);
	k->unusable = !k->present;
}

static void seg_from_kvm(struct vmcb_seg *v, const struct kvm_segment *k)
{
	v->base = k->base;
	v->limit = k->limit;
	v->selector = k->selector;
	v->attrib = 0;
	if (k->unusable)
		return;
	v->attrib = (k->type & 0xf) | (k->s ? SEG_ATTR_S : 0) |
		    ((k->dpl & 3) << SEG_ATTR_DPL_SHIFT) |
		    (k->present ? SEG_ATTR_P : 0) |
		    (k->avl ? SEG_ATTR_AVL : 0) | (k->l ? SEG_ATTR_L : 0) |
		    (k->db ? SEG_ATTR_DB : 0) | (k->g ? SEG_ATTR_G : 0);
}

static void set_seg(struct vmcb_seg *v, u16 sel, u64 base, u32 limit,
		    u16 attrib)
{
	v->selector = sel;
	v->base = base;
	v->limit = limit;
	v->attrib = attrib;
}

/*
 * QEMU's emulated #VMEXIT loads the host's CR0 while the guest's CR4 and
 * EFER are still in place, and drops it when they say LME without PAE:
 * the host CPU then runs on with the guest's CR0 and hangs (found by
 * fuzz_abi: a guest in real mode with EFER.LME set).  LME does nothing
 * until paging is turned on, which #GPs without PAE: while paging and
 * PAE are both off, the guest's LME stays out of the VMCB, and its CR0
 * writes exit, so that the one that would turn paging on gets the #GP
 * it would on a CPU.  Harmless on hardware; the guest sees its LME.
 */
static void svm_sync_lme(struct svm_vcpu *svm)
{
	struct vmcb_save *save = &svm->vmcb->save;
	bool lme = svm->lme_hidden || (save->efer & EFER_LME);

	svm->lme_hidden = lme && !(save->cr0 & X86_CR0_PG) &&
			  !(save->cr4 & X86_CR4_PAE);
	if (svm->lme_hidden) {
		save->efer &= ~(u64)EFER_LME;
		svm->vmcb->control.intercept_cr |= INTERCEPT_CR0_WRITE;
	} else {
		if (lme)
			save->efer |= EFER_LME;
		svm->vmcb->control.intercept_cr &= ~INTERCEPT_CR0_WRITE;
	}
}

/* a new EFER from outside the guest's own LME handling: VMM or WRMSR */
static void svm_set_efer(struct svm_vcpu *svm, u64 efer)
{
	svm->vmcb->save.efer = efer | EFER_SVME;
	svm->lme_hidden = false;
	svm_sync_lme(svm);
}

/* the guest's EFER as it sees it */
static u64 svm_guest_efer(struct svm_vcpu *svm)
{
	return (svm->vmcb->save.efer & ~(u64)EFER_SVME) |
	       (svm->lme_hidden ? EFER_LME : 0);
}

static void svm_get_sregs(struct vireo_vcpu *vcpu, struct kvm_sregs *s)
{
	struct svm_vcpu *svm = to_svm(vcpu);
	struct vmcb_save *save = &svm->vmcb->save;

	seg_to_kvm(&save->cs, &s->cs);
	seg_to_kvm(&save->ds, &s->ds);
	seg_to_kvm(&save->es, &s->es);
	seg_to_kvm(&save->fs, &s->fs);
	seg_to_kvm(&save->gs, &s->gs);
	seg_to_kvm(&save->ss, &s->ss);
	seg_to_kvm(&save->tr, &s->tr);
	seg_to_kvm(&save->ldtr, &s->ldt);
	/* a task register is always usable */
	s->tr.unusable = 0;
	s->gdt.base = save->gdtr.base;
	s->gdt.limit = save->gdtr.limit;
	s->idt.base = save->idtr.base;
	s->idt.limit = save->idtr.limit;
	s->cr0 = save->cr0;
	s->cr2 = save->cr2;
	s->cr3 = save->cr3;
	s->cr4 = save->cr4;
	s->cr8 = svm->vmcb->control.int_ctl & 0xf;
	s->efer = svm_guest_efer(svm);
	memset(s->interrupt_bitmap, 0, sizeof(s->interrupt_bitmap));
}

static int svm_set_sregs(struct vireo_vcpu *vcpu, const struct kvm_sregs *s)
{
	struct svm_vcpu *svm = to_svm(vcpu);
	struct vmcb_save *save = &svm->vmcb->save;

	seg_from_kvm(&save->cs, &s->cs);
	seg_from_kvm(&save->ds, &s->ds);
	seg_from_kvm(&save->es, &s->es);
	seg_from_kvm(&save->fs, &s->fs);
	seg_from_kvm(&save->gs, &s->gs);
	seg_from_kvm(&save->ss, &s->ss);
	seg_from_kvm(&save->tr, &s->tr);
	seg_from_kvm(&save->ldtr, &s->ldt);
	save->cpl = (s->cr0 & X86_CR0_PE) ? s->ss.dpl & 3 : 0;
	save->gdtr.base = s->gdt.base;
	save->gdtr.limit = s->gdt.limit;
	save->idtr.base = s->idt.base;
	save->idtr.limit = s->idt.limit;
	save->cr0 = s->cr0;
	save->cr2 = s->cr2;
	save->cr3 = s->cr3;
	save->cr4 = s->cr4;
	svm_set_efer(svm, s->efer);
	svm->vmcb->control.int_ctl =
		(svm->vmcb->control.int_ctl & ~0xfULL) | (s->cr8 & 0xf);
	return 0;
}

/* ---- vCPUs ---- */

static void svm_reset(struct svm_vcpu *svm)
{
	struct vmcb_control *c = &svm->vmcb->control;
	struct vmcb_save *save = &svm->vmcb->save;

	c->intercept_misc1 = INTERCEPT_INTR | INTERCEPT_NMI | INTERCEPT_SMI |
			     INTERCEPT_INIT | INTERCEPT_CPUID |
			     INTERCEPT_INVD | INTERCEPT_HLT |
			     INTERCEPT_INVLPGA | INTERCEPT_IOIO |
			     INTERCEPT_MSR | INTERCEPT_SHUTDOWN;
	c->intercept_misc2 = INTERCEPT_VMRUN | INTERCEPT_VMMCALL |
			     INTERCEPT_VMLOAD | INTERCEPT_VMSAVE |
			     INTERCEPT_STGI | INTERCEPT_CLGI |
			     INTERCEPT_SKINIT | INTERCEPT_MONITOR |
			     INTERCEPT_MWAIT | INTERCEPT_MWAIT_COND |
			     INTERCEPT_XSETBV;
	c->iopm_base_pa = page_to_phys(iopm_pages);
	c->msrpm_base_pa = page_to_phys(msrpm_pages);
	c->int_ctl = V_INTR_MASKING;
	c->nested_ctl = NESTED_CTL_NP_ENABLE;
	c->nested_cr3 = to_svm_vm(svm->vcpu.vm)->npt_root;

	/* the architectural state after RESET */
	set_seg(&save->cs, 0xf000, 0xffff0000, 0xffff,
		SEG_ATTR_P | SEG_ATTR_S | 0xb);
	set_seg(&save->ds, 0, 0, 0xffff, SEG_ATTR_P | SEG_ATTR_S | 0x3);
	save->es = save->ds;
	save->fs = save->ds;
	save->gs = save->ds;
	save->ss = save->ds;
	set_seg(&save->gdtr, 0, 0, 0xffff, 0);
	set_seg(&save->idtr, 0, 0, 0xffff, 0);
	set_seg(&save->ldtr, 0, 0, 0xffff, SEG_ATTR_P | 0x2);
	set_seg(&save->tr, 0, 0, 0xffff, SEG_ATTR_P | 0xb);
	save->cpl = 0;
	save->efer = EFER_SVME;
	svm->lme_hidden = false;
	save->cr0 = X86_CR0_NW | X86_CR0_CD | X86_CR0_ET;
	save->cr2 = 0;
	save->cr3 = 0;
	save->cr4 = 0;
	save->dr6 = 0xffff0ff0;
	save->dr7 = 0x400;
	save->g_pat = PAT_POWER_ON;
	c->intercept_dr = DR_INTERCEPT_ALL;
	/* CR4 bits follow the guest's CPUID: see svm_write_cr4() */
	c->intercept_cr = INTERCEPT_CR4_WRITE;
}

static int svm_vcpu_create(struct vireo_vcpu *vcpu)
{
	struct svm_vcpu *svm = to_svm(vcpu);
	struct page *page;

	page = alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO);
	if (!page)
		return -ENOMEM;
	svm->vmcb = page_address(page);
	svm->vmcb_pa = page_to_phys(page);
	svm->new_asid = true;
	svm_reset(svm);
	return 0;
}

static void svm_vcpu_free(struct vireo_vcpu *vcpu)
{
	struct svm_vcpu *svm = to_svm(vcpu);

	if (svm->vmcb)
		free_page((unsigned long)svm->vmcb);
	svm->vmcb = NULL;
}

static void svm_vcpu_load(struct vireo_vcpu *vcpu, int cpu)
{
}

static void svm_vcpu_put(struct vireo_vcpu *vcpu)
{
}

static void svm_flush_tlb(struct vireo_vcpu *vcpu)
{
	/* A fresh ASID leaves every old translation behind. */
	to_svm(vcpu)->new_asid = true;
}

static void svm_pick_asid(struct svm_vcpu *svm)
{
	struct svm_cpu *sc = this_cpu_ptr(&svm_cpus);
	struct vmcb_control *c = &svm->vmcb->control;

	if (!svm->new_asid && svm->asid_generation == sc->asid_generation)
		return;
	if (sc->next_asid > max_asid) {
		sc->asid_generation++;
		sc->next_asid = 1;
		c->tlb_ctl = TLB_CONTROL_FLUSH_ALL;
	}
	svm->asid = sc->next_asid++;
	svm->asid_generation = sc->asid_generation;
	svm->new_asid = false;
	c->asid = svm->asid;
}

/* The length of an intercepted instruction, when the CPU says it. */
static u32 next_rip_len(struct svm_vcpu *svm)
{
	if (!(svm_features & SVM_FEAT_NRIPS))
		return 0;
	return svm->vmcb->control.next_rip - svm->vmcb->save.rip;
}

/*
 * The source register and length of an intercepted MOV to CR@cr: decode
 * assists name the register; without them the instruction is read from
 * guest memory.
 */
static bool svm_mov_to_cr(struct svm_vcpu *svm, int cr, struct vireo_mov_cr *m)
{
	u64 info1 = svm->vmcb->control.exit_info_1;

	if ((svm_features & SVM_FEAT_DECODE_ASSISTS) && (info1 & BIT_ULL(63)) &&
	    next_rip_len(svm)) {
		m->gpr = info1 & 15;
		m->len = next_rip_len(svm);
		return true;
	}
	return !vireo_decode_mov_cr(&svm->vcpu, m) && m->to_cr && m->cr == cr;
}

/*
 * The guest's MOV to CR4: the bits its CPUID withholds are reserved
 * (vireo_cr4_valid()).
 */
static void svm_write_cr4(struct svm_vcpu *svm, struct vireo_exit *exit)
{
	struct vireo_vcpu *vcpu = &svm->vcpu;
	struct vmcb_save *save = &svm->vmcb->save;
	bool lma = save->efer & EFER_LMA;
	struct vireo_mov_cr m;
	u64 val;

	if (!svm_mov_to_cr(svm, 4, &m)) {
		exit->reason = VIREO_EXIT_UNHANDLED;
		return;
	}
	val = vcpu->regs[m.gpr];
	if (!(lma && (save->cs.attrib & SEG_ATTR_L)))
		val = (u32)val;
	if (!vireo_cr4_valid(vcpu, val) || (lma && !(val & X86_CR4_PAE)) ||
	    ((val & ~save->cr4 & X86_CR4_PCIDE) &&
	     (!lma || (save->cr3 & 0xfff)))) {
		vireo_queue_exception(vcpu, GP_VECTOR, true, 0);
		return;
	}
	/* paging bits may change what the guest's TLB holds */
	if ((val ^ save->cr4) & (X86_CR4_PGE | X86_CR4_PSE | X86_CR4_PAE |
				 X86_CR4_PCIDE | X86_CR4_SMEP | X86_CR4_SMAP))
		svm->new_asid = true;
	save->cr4 = val;
	svm_sync_lme(svm);
	vcpu->rip += m.len;
}

/*
 * MOV to CR0, intercepted only while svm_sync_lme() hides the guest's
 * LME (paging and PAE off): turning paging on is then a #GP.  LMSW and
 * CLTS in that state are not decoded (an internal error exit).
 */
static void svm_write_cr0(struct svm_vcpu *svm, struct vireo_exit *exit)
{
	struct vireo_vcpu *vcpu = &svm->vcpu;
	struct vmcb_save *save = &svm->vmcb->save;
	struct vireo_mov_cr m;
	u64 val;

	if (!svm_mov_to_cr(svm, 0, &m)) {
		exit->reason = VIREO_EXIT_UNHANDLED;
		return;
	}
	/* not in long mode: 32 bits */
	val = (u32)vcpu->regs[m.gpr];
	if ((val & X86_CR0_PG) || ((val & X86_CR0_NW) && !(val & X86_CR0_CD))) {
		vireo_queue_exception(vcpu, GP_VECTOR, true, 0);
		return;
	}
	save->cr0 = val | X86_CR0_ET;
	svm_sync_lme(svm);
	vcpu->rip += m.len;
}

/*
 * MOV to CR8, intercepted only while an APIC interrupt waits for the
 * TPR to drop (ev.tpr_window): the new TPR goes to V_TPR.
 */
static void svm_write_cr8(struct svm_vcpu *svm, struct vireo_exit *exit)
{
	struct vireo_vcpu *vcpu = &svm->vcpu;
	struct vireo_mov_cr m;
	u64 val;

	if (!svm_mov_to_cr(svm, 8, &m)) {
		exit->reason = VIREO_EXIT_UNHANDLED;
		return;
	}
	val = vcpu->regs[m.gpr];
	if (val & ~(u64)V_TPR_MASK) {
		vireo_queue_exception(vcpu, GP_VECTOR, true, 0);
		return;
	}
	svm->vmcb->control.int_ctl =
		(svm->vmcb->control.int_ctl & ~(u64)V_TPR_MASK) | val;
	vcpu->rip += m.len;
}

/* The MSRs that live in the VMCB. */
static u64 *vmcb_msr(struct vmcb_save *save, u32 index)
{
	switch (index) {
	case MSR_FS_BASE:
		return &save->fs.base;
	case MSR_GS_BASE:
		return &save->gs.base;
	case MSR_KERNEL_GS_BASE:
		return &save->kernel_gs_base;
	case MSR_STAR:
		return &save->star;
	case MSR_LSTAR:
		return &save->lstar;
	case MSR_CSTAR:
		return &save->cstar;
	case MSR_SYSCALL_MASK:
		return &save->sfmask;
	case MSR_IA32_SYSENTER_CS:
		return &save->sysenter_cs;
	case MSR_IA32_SYSENTER_ESP:
		return &save->sysenter_esp;
	case MSR_IA32_SYSENTER_EIP:
		return &save->sysenter_eip;
	case MSR_IA32_CR_PAT:
		return &save->g_pat;
	case MSR_IA32_DEBUGCTLMSR:
		return &save->dbgctl;
	default:
		return NULL;
	}
}

static int svm_get_msr(struct vireo_vcpu *vcpu, u32 index, u64 *data)
{
	struct vmcb_save *save = &to_svm(vcpu)->vmcb->save;
	u64 *field;

	if (index == MSR_EFER) {
		*data = svm_guest_efer(to_svm(vcpu));
		return 0;
	}
	field = vmcb_msr(save, index);
	if (!field)
		return 1;
	*data = *field;
	return 0;
}

static bool pat_valid(u64 pat)
{
	int i;

	for (i = 0; i < 8; i++) {
		u8 t = pat >> (8 * i);

		if (t > 7 || t == 2 || t == 3)
			return false;
	}
	return true;
}

static int svm_set_msr(struct vireo_vcpu *vcpu, u32 index, u64 data,
		       bool host)
{
	struct vmcb_save *save = &to_svm(vcpu)->vmcb->save;
	u64 *field;

	switch (index) {
	case MSR_EFER:
		/* SCE, LME, LMA (the CPU's), NXE; SVME stays ours */
		if (data & ~(u64)(EFER_SCE | EFER_LME | EFER_LMA | EFER_NX))
			return -EINVAL;
		if (!host) {
			if ((save->cr0 & X86_CR0_PG) &&
			    ((data ^ save->efer) & EFER_LME))
				return -EINVAL;
			data = (data & ~(u64)EFER_LMA) |
			       (save->efer & EFER_LMA);
		}
		svm_set_efer(to_svm(vcpu), data);
		return 0;
	case MSR_IA32_CR_PAT:
		if (!pat_valid(data))
			return -EINVAL;
		break;
	case MSR_IA32_DEBUGCTLMSR:
		/* no LBR virtualization: only "off" */
		if (data)
			return -EINVAL;
		break;
	case MSR_FS_BASE:
	case MSR_GS_BASE:
	case MSR_KERNEL_GS_BASE:
	case MSR_LSTAR:
	case MSR_CSTAR:
	case MSR_IA32_SYSENTER_ESP:
	case MSR_IA32_SYSENTER_EIP:
		if (!__is_canonical_address(data, 48))
			return -EINVAL;
		break;
	}
	field = vmcb_msr(save, index);
	if (!field)
		return 1;
	*field = data;
	return 0;
}

/* ---- events ---- */

static u64 svm_get_cr8(struct vireo_vcpu *vcpu)
{
	return to_svm(vcpu)->vmcb->control.int_ctl & V_TPR_MASK;
}

/* V_TPR: the guest's CR8 writes land there without an exit */
static void svm_set_cr8(struct vireo_vcpu *vcpu, u64 cr8)
{
	struct vmcb_control *c = &to_svm(vcpu)->vmcb->control;

	c->int_ctl = (c->int_ctl & ~(u64)V_TPR_MASK) | (cr8 & V_TPR_MASK);
}

static u32 svm_get_interrupt_shadow(struct vireo_vcpu *vcpu)
{
	if (to_svm(vcpu)->vmcb->control.int_state & INT_STATE_SHADOW)
		return KVM_X86_SHADOW_INT_MOV_SS | KVM_X86_SHADOW_INT_STI;
	return 0;
}

static void svm_set_interrupt_shadow(struct vireo_vcpu *vcpu, u32 shadow)
{
	struct vmcb_control *c = &to_svm(vcpu)->vmcb->control;

	if (shadow)
		c->int_state |= INT_STATE_SHADOW;
	else
		c->int_state &= ~(u64)INT_STATE_SHADOW;
}

/* AMD-V does not track NMI blocking: we do, until the guest's IRET. */
static void svm_set_nmi_mask(struct vireo_vcpu *vcpu, bool masked)
{
	struct svm_vcpu *svm = to_svm(vcpu);

	svm->nmi_masked = masked;
	if (masked)
		svm->vmcb->control.intercept_misc1 |= INTERCEPT_IRET;
	else
		svm->vmcb->control.intercept_misc1 &= ~INTERCEPT_IRET;
}

static bool svm_get_nmi_mask(struct vireo_vcpu *vcpu)
{
	return to_svm(vcpu)->nmi_masked;
}

static bool svm_nmi_allowed(struct vireo_vcpu *vcpu)
{
	return !to_svm(vcpu)->nmi_masked && !svm_get_interrupt_shadow(vcpu);
}

/* vcpu->ev.inject into EVENTINJ, and the interrupt window. */
static void svm_load_events(struct svm_vcpu *svm)
{
	struct vireo_vcpu *vcpu = &svm->vcpu;
	struct vireo_event *inj = &vcpu->ev.inject;
	struct vmcb_control *c = &svm->vmcb->control;
	u64 ev = 0;

	if (inj->valid) {
		switch (inj->type) {
		case VIREO_EV_INTR:
			ev = EVTINJ_TYPE_INTR;
			break;
		case VIREO_EV_NMI:
			ev = EVTINJ_TYPE_NMI;
			svm_set_nmi_mask(vcpu, true);
			break;
		case VIREO_EV_SOFT_INTR:
			ev = EVTINJ_TYPE_SOFT;
			break;
		default:
			ev = EVTINJ_TYPE_EXCEPTION;
			/* real mode delivers no error codes */
			if (inj->has_error && (svm->vmcb->save.cr0 & X86_CR0_PE))
				ev |= EVTINJ_ERROR_VALID |
				      ((u64)inj->error_code << 32);
			break;
		}
		ev |= inj->vector | EVTINJ_VALID;
		inj->valid = false;
	}
	c->event_inj = ev;

	/*
	 * A virtual interrupt the guest cannot see (VINTR intercepted)
	 * makes the CPU exit as soon as the guest could take it.
	 */
	if (vcpu->ev.irq_window) {
		c->int_ctl |= V_IRQ | V_IGN_TPR | (0xfULL << V_INTR_PRIO_SHIFT);
		c->intercept_misc1 |= INTERCEPT_VINTR;
	} else {
		c->int_ctl &= ~(u64)(V_IRQ | V_IGN_TPR |
				     (0xfULL << V_INTR_PRIO_SHIFT));
		c->intercept_misc1 &= ~INTERCEPT_VINTR;
	}
	/* guest CR8 writes do not exit; while the TPR holds one back, they must */
	if (vcpu->ev.tpr_window)
		c->intercept_cr |= INTERCEPT_CR8_WRITE;
	else
		c->intercept_cr &= ~INTERCEPT_CR8_WRITE;
}

/*
 * An event whose delivery the exit interrupted goes back to the core.
 * Software interrupts and INT3/INTO are not: RIP still points at the
 * instruction, which simply runs again.
 */
static void svm_save_events(struct svm_vcpu *svm)
{
	struct vireo_event *inj = &svm->vcpu.ev.inject;
	u64 info = svm->vmcb->control.exit_int_info;
	u8 vector = info & EVTINJ_VECTOR_MASK;

	memset(inj, 0, sizeof(*inj));
	if (!(info & EVTINJ_VALID))
		return;
	switch (info & EVTINJ_TYPE_MASK) {
	case EVTINJ_TYPE_INTR:
		inj->type = VIREO_EV_INTR;
		break;
	case EVTINJ_TYPE_NMI:
		inj->type = VIREO_EV_NMI;
		break;
	case EVTINJ_TYPE_EXCEPTION:
		if (vector == BP_VECTOR || vector == OF_VECTOR)
			return;
		inj->type = VIREO_EV_EXCEPTION;
		break;
	default:
		return;
	}
	inj->valid = true;
	inj->vector = vector;
	inj->has_error = !!(info & EVTINJ_ERROR_VALID);
	inj->error_code = info >> 32;
}

/* Debug registers and exception intercepts for this entry. */
static void svm_load_debug(struct svm_vcpu *svm)
{
	struct vireo_vcpu *vcpu = &svm->vcpu;
	struct vmcb_control *c = &svm->vmcb->control;

	svm->vmcb->save.dr7 = vcpu->dbg.eff_dr7;
	svm->vmcb->save.dr6 = vcpu->dbg.dr6;
	c->intercept_dr = vcpu->dbg.guest_owns ? 0 : DR_INTERCEPT_ALL;
	c->intercept_exceptions = (vcpu->dbg.intercept_db ? EXC_INTERCEPT_DB : 0) |
				  (vcpu->dbg.intercept_bp ? EXC_INTERCEPT_BP : 0);
}

static void svm_save_debug(struct svm_vcpu *svm)
{
	struct vireo_vcpu *vcpu = &svm->vcpu;

	if (!vcpu->dbg.intercept_db)
		vcpu->dbg.dr6 = svm->vmcb->save.dr6;
	if (!(vcpu->dbg.guest_debug & KVM_GUESTDBG_USE_HW_BP))
		vcpu->dbg.dr7 = svm->vmcb->save.dr7;
}

/*
 * Every VMRUN of ours has V_INTR_MASKING set, and a #VMEXIT keeps it.
 * QEMU's emulated AMD-V (TCG, the SVM test host) was seen to run a
 * #VMEXIT twice: the second stores the host's state (RIP, RSP, RAX, CR3,
 * ...) over the guest's, with an int_ctl of 0.  The guest's state is lost
 * then: the vCPU goes back to its RESET state, so that no host value
 * reaches the VMM, and its run ends with an internal error.
 */
static bool svm_state_lost(struct svm_vcpu *svm, struct vireo_exit *exit,
			   u64 code)
{
	struct vireo_vcpu *vcpu = &svm->vcpu;

	if (likely(svm->vmcb->control.int_ctl & V_INTR_MASKING))
		return false;
	pr_err_ratelimited("vCPU %d: the VMCB holds the host's state after #VMEXIT %#llx, not the guest's: the CPU lost it\n",
			   vcpu->id, code);
	svm_reset(svm);
	svm->vmcb->control.event_inj = 0;
	svm->vmcb->control.exit_int_info = 0;
	memset(&vcpu->ev.inject, 0, sizeof(vcpu->ev.inject));
	svm->nmi_masked = false;
	svm->new_asid = true;
	vcpu->rip = 0xfff0;
	vcpu->rflags = X86_EFLAGS_FIXED;
	vcpu->regs[VCPU_RSP] = 0;
	vcpu->regs[VCPU_RAX] = 0;
	exit->reason = VIREO_EXIT_UNHANDLED;
	exit->raw[0] = code;
	exit->raw[1] = SVM_STATE_LOST;
	return true;
}

static void svm_vcpu_run(struct vireo_vcpu *vcpu, struct vireo_exit *exit)
{
	struct svm_vcpu *svm = to_svm(vcpu);
	struct vmcb_control *c = &svm->vmcb->control;
	struct vmcb_save *save = &svm->vmcb->save;
	struct svm_cpu *sc = this_cpu_ptr(&svm_cpus);
	u64 code, info1, info2;

	/* (the same, stored while the vCPU was out of the guest) */
	if (svm_state_lost(svm, exit, SVM_EXIT_INVALID))
		return;
	svm_pick_asid(svm);
	save->rip = vcpu->rip;
	save->rflags = vcpu->rflags;
	save->rsp = vcpu->regs[VCPU_RSP];
	save->rax = vcpu->regs[VCPU_RAX];
	c->tsc_offset = vcpu->msr.tsc_offset;
	svm_load_events(svm);
	svm_load_debug(svm);
	c->clean = 0;

	asm volatile("vmsave %%rax" : : "a" (page_to_phys(sc->host_state))
		     : "memory");
	asm volatile("clgi" : : : "memory");
	vireo_svm_vmrun(svm->vmcb_pa, vcpu->regs,
			page_to_phys(sc->host_state));
	asm volatile("stgi" : : : "memory");

	c->tlb_ctl = TLB_CONTROL_DO_NOTHING;
	if (svm_state_lost(svm, exit, c->exit_code))
		return;
	vcpu->rip = save->rip;
	vcpu->rflags = save->rflags;
	vcpu->regs[VCPU_RSP] = save->rsp;
	vcpu->regs[VCPU_RAX] = save->rax;

	c->event_inj = 0;
	svm_save_events(svm);
	svm_save_debug(svm);

	code = c->exit_code;
	info1 = c->exit_info_1;
	info2 = c->exit_info_2;
	exit->reason = VIREO_EXIT_NONE;
	switch (code) {
	case SVM_EXIT_INTR:
	case SVM_EXIT_NMI:
	case SVM_EXIT_SMI:
	case SVM_EXIT_INIT:
		/* the host takes it once GIF and IF are set again */
		break;
	case SVM_EXIT_CPUID:
		exit->reason = VIREO_EXIT_CPUID;
		exit->insn_len = next_rip_len(svm);
		break;
	case SVM_EXIT_HLT:
		exit->reason = VIREO_EXIT_HLT;
		exit->insn_len = next_rip_len(svm);
		break;
	case SVM_EXIT_IOIO:
		exit->reason = VIREO_EXIT_IO;
		exit->io.port = info1 >> IOIO_PORT_SHIFT;
		/* SZ8, SZ16, SZ32 are bits 4, 5, 6: 1, 2 or 4 once shifted */
		exit->io.size = (info1 & IOIO_SIZE_MASK) >> IOIO_SIZE_SHIFT;
		exit->io.in = !!(info1 & IOIO_TYPE_IN);
		exit->io.string = !!(info1 & IOIO_STR);
		exit->io.rep = !!(info1 & IOIO_REP);
		/* EXITINFO2 holds the next RIP for every IOIO exit */
		exit->insn_len = info2 - save->rip;
		break;
	case SVM_EXIT_MSR:
		exit->reason = info1 == 1 ? VIREO_EXIT_MSR_WRITE :
					    VIREO_EXIT_MSR_READ;
		exit->insn_len = next_rip_len(svm);
		break;
	case SVM_EXIT_VINTR:
		c->int_ctl &= ~(u64)V_IRQ;
		c->intercept_misc1 &= ~INTERCEPT_VINTR;
		exit->reason = VIREO_EXIT_IRQ_WINDOW;
		break;
	case SVM_EXIT_IRET:
		/* the NMI handler returns: NMIs are open again */
		svm_set_nmi_mask(vcpu, false);
		break;
	case SVM_EXIT_WRITE_CR0:
	case SVM_EXIT_WRITE_CR4:
	case SVM_EXIT_WRITE_CR8:
		/* decoding may read guest memory: svm_handle_exit(), later */
		exit->reason = VIREO_EXIT_BACKEND;
		exit->raw[0] = code;
		exit->raw[1] = info1;
		break;
	case SVM_EXIT_READ_DR0 ... SVM_EXIT_WRITE_DR15:
		exit->reason = VIREO_EXIT_DR_ACCESS;
		break;
	case SVM_EXIT_EXCP_DB:
		exit->reason = VIREO_EXIT_EXCEPTION;
		exit->exc.vector = DB_VECTOR;
		exit->exc.dr6 = save->dr6;
		break;
	case SVM_EXIT_EXCP_BP:
		exit->reason = VIREO_EXIT_EXCEPTION;
		exit->exc.vector = BP_VECTOR;
		exit->insn_len = next_rip_len(svm) ?: 1;
		break;
	case SVM_EXIT_XSETBV:
		exit->reason = VIREO_EXIT_XSETBV;
		exit->insn_len = next_rip_len(svm);
		break;
	case SVM_EXIT_VMMCALL:
		exit->reason = VIREO_EXIT_HYPERCALL;
		exit->insn_len = next_rip_len(svm);
		break;
	case SVM_EXIT_INVD:
		/* never drop the host's dirty cache lines: a no-op */
		vcpu->rip += next_rip_len(svm) ?: 2;
		break;
	case SVM_EXIT_VMRUN:
	case SVM_EXIT_VMLOAD:
	case SVM_EXIT_VMSAVE:
	case SVM_EXIT_STGI:
	case SVM_EXIT_CLGI:
	case SVM_EXIT_SKINIT:
	case SVM_EXIT_INVLPGA:
	case SVM_EXIT_MONITOR:
	case SVM_EXIT_MWAIT:
	case SVM_EXIT_MWAIT_COND:
		/* the guest has no SVM and no MONITOR/MWAIT */
		vireo_queue_exception(vcpu, UD_VECTOR, false, 0);
		break;
	case SVM_EXIT_SHUTDOWN:
		exit->reason = VIREO_EXIT_SHUTDOWN;
		break;
	case SVM_EXIT_NPF:
		exit->reason = VIREO_EXIT_TDP_FAULT;
		exit->tdp.gpa = info2;
		exit->tdp.write = !!(info1 & NPF_WRITE);
		exit->tdp.fetch = !!(info1 & NPF_FETCH);
		exit->tdp.present = !!(info1 & NPF_PRESENT);
		break;
	case SVM_EXIT_INVALID:
		exit->reason = VIREO_EXIT_FAIL_ENTRY;
		exit->fail_reason = code;
		break;
	default:
		exit->reason = VIREO_EXIT_UNHANDLED;
		exit->raw[0] = code;
		exit->raw[1] = info1;
		break;
	}
}

/* The exits svm_vcpu_run() left for later (interrupts on): MOV to CR. */
static void svm_handle_exit(struct vireo_vcpu *vcpu, struct vireo_exit *exit)
{
	struct svm_vcpu *svm = to_svm(vcpu);

	if (exit->raw[0] == SVM_EXIT_WRITE_CR0)
		svm_write_cr0(svm, exit);
	else if (exit->raw[0] == SVM_EXIT_WRITE_CR4)
		svm_write_cr4(svm, exit);
	else if (exit->raw[0] == SVM_EXIT_WRITE_CR8)
		svm_write_cr8(svm, exit);
	else
		exit->reason = VIREO_EXIT_UNHANDLED;
}

static const struct vireo_backend svm_backend = {
	.name = "svm",
	.id = VIREO_BACKEND_SVM,
	.owner = THIS_MODULE,
	.hardware_enable = svm_hardware_enable,
	.hardware_disable = svm_hardware_disable,
	.emergency_disable = svm_emergency_disable,
	.vm_size = sizeof(struct svm_vm),
	.vcpu_size = sizeof(struct svm_vcpu),
	.vm_init = svm_vm_init,
	.vm_destroy = svm_vm_destroy,
	.vcpu_create = svm_vcpu_create,
	.vcpu_free = svm_vcpu_free,
	.vcpu_load = svm_vcpu_load,
	.vcpu_put = svm_vcpu_put,
	.vcpu_run = svm_vcpu_run,
	.handle_exit = svm_handle_exit,
	.get_sregs = svm_get_sregs,
	.set_sregs = svm_set_sregs,
	.get_msr = svm_get_msr,
	.set_msr = svm_set_msr,
	.get_interrupt_shadow = svm_get_interrupt_shadow,
	.get_cr8 = svm_get_cr8,
	.set_cr8 = svm_set_cr8,
	.set_interrupt_shadow = svm_set_interrupt_shadow,
	.get_nmi_mask = svm_get_nmi_mask,
	.set_nmi_mask = svm_set_nmi_mask,
	.nmi_allowed = svm_nmi_allowed,
	.tdp_entry = svm_tdp_entry,
	.set_tdp_root = svm_set_tdp_root,
	.flush_tlb = svm_flush_tlb,
};

static const char *yes_no(u32 feature)
{
	return (svm_features & feature) ? "yes" : "no";
}

static int __init svm_init(void)
{
	int ret;

	ret = svm_check_hardware();
	if (ret)
		return ret;
	ret = svm_alloc_pages();
	if (ret)
		return ret;
	ret = vireo_register_backend(&svm_backend);
	if (ret) {
		svm_free_pages();
		return ret;
	}
	pr_info("AMD-V with NPT; NRIP save %s, decode assists %s, VMCB clean bits %s, flush by ASID %s\n",
		yes_no(SVM_FEAT_NRIPS), yes_no(SVM_FEAT_DECODE_ASSISTS),
		yes_no(SVM_FEAT_VMCB_CLEAN), yes_no(SVM_FEAT_FLUSH_BY_ASID));
	return 0;
}

static void __exit svm_exit(void)
{
	vireo_unregister_backend(&svm_backend);
	svm_free_pages();
}

module_init(svm_init);
module_exit(svm_exit);

MODULE_DESCRIPTION("Vireo hypervisor: AMD-V backend");
MODULE_AUTHOR("The Vireo developers");
MODULE_LICENSE("GPL");
