// SPDX-License-Identifier: GPL-2.0-only
/*
 * vireo-vmx.ko: the Intel VT-x backend.
 */
#define pr_fmt(fmt) "vireo-vmx: " fmt

#include <linux/bitmap.h>
#include <linux/gfp.h>
#include <linux/list.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/percpu.h>
#include <linux/slab.h>
#include <linux/smp.h>
#include <linux/spinlock.h>
#include <asm/asm.h>
#include <asm/debugreg.h>
#include <asm/desc.h>
#include <asm/io.h>
#include <asm/msr.h>
#include <asm/perf_event.h>
#include <asm/processor.h>
#include <asm/segment.h>
#include <asm/special_insns.h>
#include <asm/tlbflush.h>

#include <vireo/backend.h>
#include <vireo/mmu.h>
#include <vireo/vireo.h>

#include "vmcs.h"

/* IA32_VMX_BASIC */
#define VMX_BASIC_REVISION_MASK		GENMASK_ULL(30, 0)
#define VMX_BASIC_REGION_SIZE(v)	(((v) >> 32) & 0x1fff)
#define VMX_BASIC_32BIT_ADDR		BIT_ULL(48)
#define VMX_BASIC_MEMTYPE(v)		(((v) >> 50) & 0xf)
#define VMX_MEMTYPE_WB			6
/* allowed-1 halves of the processor-based control MSRs */
#define VMX_PROC_SECONDARY		BIT(31)
#define VMX_PROC2_EPT			BIT(1)
#define VMX_PROC2_VPID			BIT(5)
#define VMX_PROC2_UNRESTRICTED		BIT(7)
/* IA32_VMX_EPT_VPID_CAP */
#define VMX_EPT_WALK_4			BIT_ULL(6)
#define VMX_EPT_WB			BIT_ULL(14)

static bool enable_vpid = true;
module_param_named(vpid, enable_vpid, bool, 0444);
MODULE_PARM_DESC(vpid, "Tag guest TLB entries with VPIDs when the CPU has them (default: on)");

#define PAT_POWER_ON			0x0007040600070406ULL
#define UD_VECTOR			6
#define GP_VECTOR			13
#define NR_VPIDS			BIT(16)

static u32 vmcs_revision;
static bool have_vpid;
static u64 ept_vpid_cap;
static DEFINE_PER_CPU(struct page *, vmxon_page);

/* The controls every VMCS gets, computed once against the CPU's MSRs. */
static u32 pin_ctls, proc_ctls, proc2_ctls, exit_ctls, entry_ctls;
static u32 window_ctls;	/* interrupt/NMI-window exiting, if available */
static u64 cr0_fixed0, cr0_fixed1, cr4_fixed0, cr4_fixed1;
/* CR0/CR4 bits the host owns (the guest sees its read shadow there) */
static unsigned long cr0_host_mask, cr4_host_mask;
static struct page *msr_bitmap;		/* all ones: every MSR exits */

static DEFINE_SPINLOCK(vpid_lock);
static unsigned long *vpid_bitmap;

/* Per CPU: the current VMCS, the VMCSs active here, the host tables. */
struct vmx_cpu {
	u64 current_vmcs;
	struct list_head loaded;
	struct desc_ptr gdt, idt;
};

static DEFINE_PER_CPU(struct vmx_cpu, vmx_cpus);

struct vmx_vcpu {
	struct vireo_vcpu vcpu;		/* first: the core allocates us */
	struct page *vmcs;
	u64 vmcs_pa;
	int loaded_cpu;			/* where the VMCS is active, or -1 */
	bool launched;
	struct list_head loaded_link;
	u16 vpid;
	u64 cr2, cr8;
	u64 guest_kernel_gs_base;
	/* SYSCALL MSRs, loaded until the next return to userspace */
	u64 star, lstar, cstar, sfmask;
	u32 proc_ctls;
	/* what the VMCS holds, to write only what changes */
	u64 cur_tsc_offset, cur_dr7;
	u32 cur_exc_bitmap;
	bool pdptrs_stale;		/* PAE paging set from outside */
	u32 entry_ctls;
};

struct vmx_vm {
	struct vireo_vm vm;		/* first: the core allocates us */
	u64 eptp;
};

static inline struct vmx_vcpu *to_vmx(struct vireo_vcpu *vcpu)
{
	return container_of(vcpu, struct vmx_vcpu, vcpu);
}

static inline struct vmx_vm *to_vmx_vm(struct vireo_vm *vm)
{
	return container_of(vm, struct vmx_vm, vm);
}

/* ---- VMX instructions ---- */

static inline u64 vmcs_read(unsigned long field)
{
	unsigned long value = 0;

	asm volatile("1: vmread %[field], %[value]\n"
		     "2:\n\t"
		     _ASM_EXTABLE(1b, 2b)
		     : [value] "+r" (value)
		     : [field] "r" (field)
		     : "cc");
	return value;
}

static inline void vmcs_write(unsigned long field, u64 value)
{
	asm volatile("1: vmwrite %[value], %[field]\n"
		     "2:\n\t"
		     _ASM_EXTABLE(1b, 2b)
		     : : [field] "r" (field), [value] "rm" (value)
		     : "cc", "memory");
}

/* 0 on success */
static inline int vmcs_load(u64 pa)
{
	u8 fail = 1;

	asm volatile("1: vmptrld %[pa]\n\t"
		     "setna %[fail]\n"
		     "2:\n\t"
		     _ASM_EXTABLE(1b, 2b)
		     : [fail] "+q" (fail) : [pa] "m" (pa) : "cc", "memory");
	return fail;
}

static inline void vmcs_clear(u64 pa)
{
	asm volatile("1: vmclear %[pa]\n"
		     "2:\n\t"
		     _ASM_EXTABLE(1b, 2b)
		     : : [pa] "m" (pa) : "cc", "memory");
}

static inline void ept_flush(unsigned long type, u64 eptp)
{
	struct { u64 eptp, reserved; } desc = { eptp, 0 };

	asm volatile("1: invept %[desc], %[type]\n"
		     "2:\n\t"
		     _ASM_EXTABLE(1b, 2b)
		     : : [desc] "m" (desc), [type] "r" (type)
		     : "cc", "memory");
}

static inline void vpid_flush(unsigned long type, u16 vpid)
{
	struct { u64 vpid, gva; } desc = { vpid, 0 };

	asm volatile("1: invvpid %[desc], %[type]\n"
		     "2:\n\t"
		     _ASM_EXTABLE(1b, 2b)
		     : : [desc] "m" (desc), [type] "r" (type)
		     : "cc", "memory");
}

/* 0: done, 1: VMfail, 2: the instruction faulted */
static int cpu_vmxon(u64 pa)
{
	u8 ret = 2;

	asm volatile("1: vmxon %[pa]\n\t"
		     "setna %[ret]\n"
		     "2:\n\t"
		     _ASM_EXTABLE(1b, 2b)
		     : [ret] "+q" (ret)
		     : [pa] "m" (pa)
		     : "cc", "memory");
	return ret;
}

static void cpu_vmxoff(void)
{
	asm volatile("1: vmxoff\n"
		     "2:\n\t"
		     _ASM_EXTABLE(1b, 2b)
		     : : : "cc", "memory");
}

static bool vmx_firmware_allows(void)
{
	u64 fc;

	return !rdmsrl_safe(MSR_IA32_FEAT_CTL, &fc) &&
	       (fc & FEAT_CTL_LOCKED) &&
	       (fc & FEAT_CTL_VMX_ENABLED_OUTSIDE_SMX);
}

/* Make a VMCS inactive on this CPU (its launch state is lost with it). */
static void vmx_clear_local(struct vmx_vcpu *vmx)
{
	struct vmx_cpu *vc = this_cpu_ptr(&vmx_cpus);

	vmcs_clear(vmx->vmcs_pa);
	if (vc->current_vmcs == vmx->vmcs_pa)
		vc->current_vmcs = 0;
	list_del(&vmx->loaded_link);
	vmx->launched = false;
	/* the VMCS is free to be loaded elsewhere once this is seen */
	smp_store_release(&vmx->loaded_cpu, -1);
}

static void vmx_clear_ipi(void *data)
{
	struct vmx_vcpu *vmx = data;

	if (READ_ONCE(vmx->loaded_cpu) == smp_processor_id())
		vmx_clear_local(vmx);
}

/* Make the VMCS inactive wherever it is active.  Interrupts on. */
static void vmx_clear_remote(struct vmx_vcpu *vmx)
{
	int cpu = READ_ONCE(vmx->loaded_cpu);

	if (cpu >= 0)
		smp_call_function_single(cpu, vmx_clear_ipi, vmx, 1);
}

static int vmx_hardware_enable(void)
{
	u64 pa = page_to_phys(this_cpu_read(vmxon_page));
	struct vmx_cpu *vc;

	if (cr4_read_shadow() & X86_CR4_VMXE)
		return -EBUSY;	/* another hypervisor is in VMX operation */
	if (!vmx_firmware_allows())
		return -EOPNOTSUPP;

	intel_pt_handle_vmx(1);
	cr4_set_bits(X86_CR4_VMXE);
	if (cpu_vmxon(pa)) {
		cr4_clear_bits(X86_CR4_VMXE);
		intel_pt_handle_vmx(0);
		return -EIO;
	}
	vc = this_cpu_ptr(&vmx_cpus);
	vc->current_vmcs = 0;
	INIT_LIST_HEAD(&vc->loaded);
	native_store_gdt(&vc->gdt);
	store_idt(&vc->idt);
	return 0;
}

static void vmx_hardware_disable(void)
{
	struct vmx_cpu *vc = this_cpu_ptr(&vmx_cpus);
	struct vmx_vcpu *vmx, *next;

	list_for_each_entry_safe(vmx, next, &vc->loaded, loaded_link)
		vmx_clear_local(vmx);
	cpu_vmxoff();
	cr4_clear_bits(X86_CR4_VMXE);
	intel_pt_handle_vmx(0);
}

static void vmx_emergency_disable(void)
{
	struct vmx_cpu *vc = this_cpu_ptr(&vmx_cpus);
	struct vmx_vcpu *vmx;

	if (cr4_read_shadow() & X86_CR4_VMXE) {
		/* a kdump kernel may want what the VMCSs cache */
		if (vc->loaded.next)
			list_for_each_entry(vmx, &vc->loaded, loaded_link)
				vmcs_clear(vmx->vmcs_pa);
		cpu_vmxoff();
		cr4_clear_bits(X86_CR4_VMXE);
	}
}

/*
 * Fit the controls we want to what the CPU allows: bits the CPU requires
 * (allowed-0 settings, low half of the MSR) are added; bits it cannot
 * set (allowed-1 settings, high half) are dropped.  A required bit of
 * ours that cannot be set fails.
 */
static int adjust_ctls(u32 msr, u32 want, u32 required, u32 *out)
{
	u32 lo, hi;

	if (rdmsr_safe(msr, &lo, &hi))
		return -EOPNOTSUPP;
	*out = (want | lo) & hi;
	if ((*out & required) != required) {
		pr_err("VMX control MSR %#x lacks %#x\n", msr,
		       required & ~*out);
		return -EOPNOTSUPP;
	}
	return 0;
}

static int vmx_setup_controls(u64 basic)
{
	bool true_ctls = basic & BIT_ULL(55);
	u32 proc2_want;
	int ret;

	ret = adjust_ctls(true_ctls ? MSR_IA32_VMX_TRUE_PINBASED_CTLS :
					MSR_IA32_VMX_PINBASED_CTLS,
			  PIN_EXTINT_EXITING | PIN_NMI_EXITING |
			  PIN_VIRTUAL_NMIS,
			  PIN_EXTINT_EXITING | PIN_NMI_EXITING, &pin_ctls);
	ret = ret ?: adjust_ctls(true_ctls ? MSR_IA32_VMX_TRUE_PROCBASED_CTLS :
					     MSR_IA32_VMX_PROCBASED_CTLS,
			  PROC_HLT_EXITING | PROC_MWAIT_EXITING |
			  PROC_CR8_LOAD_EXITING | PROC_CR8_STORE_EXITING |
			  PROC_MOV_DR_EXITING | PROC_UNCOND_IO_EXITING |
			  PROC_USE_MSR_BITMAPS | PROC_MONITOR_EXITING |
			  PROC_TSC_OFFSETTING | PROC_SECONDARY,
			  PROC_HLT_EXITING | PROC_CR8_LOAD_EXITING |
			  PROC_CR8_STORE_EXITING | PROC_MOV_DR_EXITING |
			  PROC_UNCOND_IO_EXITING | PROC_USE_MSR_BITMAPS |
			  PROC_TSC_OFFSETTING | PROC_SECONDARY, &proc_ctls);
	/* the windows are switched on when needed, if the CPU has them */
	if (!ret)
		ret = adjust_ctls(true_ctls ? MSR_IA32_VMX_TRUE_PROCBASED_CTLS :
					      MSR_IA32_VMX_PROCBASED_CTLS,
				  PROC_INTR_WINDOW_EXITING |
				  PROC_NMI_WINDOW_EXITING,
				  PROC_INTR_WINDOW_EXITING, &window_ctls);
	window_ctls &= PROC_INTR_WINDOW_EXITING | PROC_NMI_WINDOW_EXITING;
	if (!(pin_ctls & PIN_VIRTUAL_NMIS))
		window_ctls &= ~PROC_NMI_WINDOW_EXITING;
	/* with EPT the guest owns CR3 */
	proc_ctls &= ~(PROC_CR3_LOAD_EXITING | PROC_CR3_STORE_EXITING);
	/* no XSAVES: the guest would save with the host's IA32_XSS */
	proc2_want = PROC2_EPT | PROC2_UNRESTRICTED | PROC2_RDTSCP |
		     PROC2_INVPCID |
		     (have_vpid ? PROC2_VPID : 0);
	ret = ret ?: adjust_ctls(MSR_IA32_VMX_PROCBASED_CTLS2, proc2_want,
				 PROC2_EPT | PROC2_UNRESTRICTED, &proc2_ctls);
	ret = ret ?: adjust_ctls(true_ctls ? MSR_IA32_VMX_TRUE_EXIT_CTLS :
					     MSR_IA32_VMX_EXIT_CTLS,
			  EXIT_SAVE_DEBUG | EXIT_HOST_ADDR_SPACE |
			  EXIT_SAVE_PAT | EXIT_LOAD_PAT | EXIT_SAVE_EFER |
			  EXIT_LOAD_EFER,
			  EXIT_HOST_ADDR_SPACE | EXIT_SAVE_EFER |
			  EXIT_LOAD_EFER, &exit_ctls);
	ret = ret ?: adjust_ctls(true_ctls ? MSR_IA32_VMX_TRUE_ENTRY_CTLS :
					     MSR_IA32_VMX_ENTRY_CTLS,
			  ENTRY_LOAD_DEBUG | ENTRY_LOAD_PAT | ENTRY_LOAD_EFER,
			  ENTRY_LOAD_EFER, &entry_ctls);
	if (ret)
		return ret;
	/* only the pair: PAT is loaded and saved, or neither */
	if (!(exit_ctls & EXIT_LOAD_PAT) || !(entry_ctls & ENTRY_LOAD_PAT)) {
		exit_ctls &= ~(EXIT_LOAD_PAT | EXIT_SAVE_PAT);
		entry_ctls &= ~ENTRY_LOAD_PAT;
	}
	entry_ctls &= ~ENTRY_IA32E;
	have_vpid = proc2_ctls & PROC2_VPID;

	rdmsrl(MSR_IA32_VMX_CR0_FIXED0, cr0_fixed0);
	rdmsrl(MSR_IA32_VMX_CR0_FIXED1, cr0_fixed1);
	rdmsrl(MSR_IA32_VMX_CR4_FIXED0, cr4_fixed0);
	rdmsrl(MSR_IA32_VMX_CR4_FIXED1, cr4_fixed1);
	/* unrestricted guest: PE and PG are the guest's */
	cr0_fixed0 &= ~(u64)(X86_CR0_PE | X86_CR0_PG);
	cr0_host_mask = (cr0_fixed0 | ~cr0_fixed1) & 0xffffffffUL;
	/* and the features a guest's CPUID may withhold: see set_cr4 */
	cr4_host_mask = (cr4_fixed0 | ~cr4_fixed1 | X86_CR4_VMXE |
			 X86_CR4_SMXE | X86_CR4_LA57 | X86_CR4_PKE |
			 X86_CR4_CET | X86_CR4_FSGSBASE | X86_CR4_SMEP |
			 X86_CR4_SMAP | X86_CR4_UMIP | X86_CR4_PCIDE |
			 X86_CR4_OSXSAVE) & 0xffffffffUL;
	return 0;
}

static int vmx_check_hardware(void)
{
	u64 basic, ept_cap;
	u32 lo, proc, proc2;

	if (!(cpuid_ecx(1) & BIT(5))) {
		pr_err("this CPU has no VT-x (VMX)\n");
		return -EOPNOTSUPP;
	}
	if (!vmx_firmware_allows()) {
		pr_err("VT-x is disabled by the firmware (IA32_FEATURE_CONTROL)\n");
		return -EOPNOTSUPP;
	}
	if (rdmsrl_safe(MSR_IA32_VMX_BASIC, &basic) ||
	    rdmsr_safe(MSR_IA32_VMX_PROCBASED_CTLS, &lo, &proc)) {
		pr_err("cannot read the VMX capability MSRs\n");
		return -EOPNOTSUPP;
	}
	if (VMX_BASIC_REGION_SIZE(basic) > PAGE_SIZE ||
	    (basic & VMX_BASIC_32BIT_ADDR) ||
	    VMX_BASIC_MEMTYPE(basic) != VMX_MEMTYPE_WB) {
		pr_err("unsupported VMCS layout (IA32_VMX_BASIC %#llx)\n",
		       basic);
		return -EOPNOTSUPP;
	}
	if (!(proc & VMX_PROC_SECONDARY) ||
	    rdmsr_safe(MSR_IA32_VMX_PROCBASED_CTLS2, &lo, &proc2) ||
	    !(proc2 & VMX_PROC2_EPT) || !(proc2 & VMX_PROC2_UNRESTRICTED) ||
	    rdmsrl_safe(MSR_IA32_VMX_EPT_VPID_CAP, &ept_cap) ||
	    !(ept_cap & VMX_EPT_WALK_4) || !(ept_cap & VMX_EPT_WB)) {
		pr_err("this CPU lacks EPT or unrestricted guest, which Vireo needs\n");
		return -EOPNOTSUPP;
	}
	vmcs_revision = basic & VMX_BASIC_REVISION_MASK;
	have_vpid = enable_vpid && (proc2 & VMX_PROC2_VPID);
	ept_vpid_cap = ept_cap;
	return vmx_setup_controls(basic);
}

static void vmx_free_regions(void)
{
	int cpu;

	if (msr_bitmap)
		__free_page(msr_bitmap);
	msr_bitmap = NULL;
	bitmap_free(vpid_bitmap);
	vpid_bitmap = NULL;

	for_each_possible_cpu(cpu) {
		if (per_cpu(vmxon_page, cpu))
			__free_page(per_cpu(vmxon_page, cpu));
		per_cpu(vmxon_page, cpu) = NULL;
	}
}

static int vmx_alloc_regions(void)
{
	struct page *page;
	int cpu;

	msr_bitmap = alloc_page(GFP_KERNEL);
	vpid_bitmap = bitmap_zalloc(NR_VPIDS, GFP_KERNEL);
	if (!msr_bitmap || !vpid_bitmap) {
		vmx_free_regions();
		return -ENOMEM;
	}
	memset(page_address(msr_bitmap), 0xff, PAGE_SIZE);

	for_each_possible_cpu(cpu) {
		page = alloc_pages_node(cpu_to_node(cpu),
					GFP_KERNEL | __GFP_ZERO, 0);
		if (!page) {
			vmx_free_regions();
			return -ENOMEM;
		}
		*(u32 *)page_address(page) = vmcs_revision;
		per_cpu(vmxon_page, cpu) = page;
	}
	return 0;
}

/* ---- VMs and TLBs ---- */

static int vmx_vm_init(struct vireo_vm *vm)
{
	return 0;
}

static void vmx_vm_destroy(struct vireo_vm *vm)
{
}

static u64 vmx_tdp_entry(u64 hpa, bool leaf, bool writable, bool executable)
{
	if (!leaf)
		return hpa | EPT_READ | EPT_WRITE | EPT_EXEC;
	return hpa | EPT_READ | EPT_MT_WB | (writable ? EPT_WRITE : 0) |
	       (executable ? EPT_EXEC : 0);
}

static void vmx_set_tdp_root(struct vireo_vm *vm, u64 root_hpa)
{
	to_vmx_vm(vm)->eptp = root_hpa | EPTP_WB_4LEVEL;
}

static void vmx_flush_tlb(struct vireo_vcpu *vcpu)
{
	struct vmx_vcpu *vmx = to_vmx(vcpu);

	/* guest-physical and combined mappings tagged with our EPTP */
	if (ept_vpid_cap & EPT_CAP_INVEPT_SINGLE)
		ept_flush(1, to_vmx_vm(vcpu->vm)->eptp);
	else
		ept_flush(2, 0);
	if (!vmx->vpid)
		return;
	/* linear mappings tagged with the vCPU's VPID */
	if (ept_vpid_cap & VPID_CAP_INVVPID_SINGLE)
		vpid_flush(1, vmx->vpid);
	else
		vpid_flush(2, 0);
}

/* ---- loading a VMCS ---- */

/* The host state that differs between CPUs. */
static void vmx_set_host_cpu_state(void)
{
	struct vmx_cpu *vc = this_cpu_ptr(&vmx_cpus);
	struct desc_struct *gdt = (struct desc_struct *)vc->gdt.address;
	struct ldttss_desc *tss = (struct ldttss_desc *)&gdt[GDT_ENTRY_TSS];
	u64 tr_base, v;

	tr_base = tss->base0 | ((u64)tss->base1 << 16) |
		  ((u64)tss->base2 << 24) | ((u64)tss->base3 << 32);
	vmcs_write(HOST_TR_BASE, tr_base);
	vmcs_write(HOST_GDTR_BASE, vc->gdt.address);
	vmcs_write(HOST_IDTR_BASE, vc->idt.address);
	rdmsrl(MSR_IA32_SYSENTER_ESP, v);
	vmcs_write(HOST_SYSENTER_ESP, v);
	rdmsrl(MSR_GS_BASE, v);
	vmcs_write(HOST_GS_BASE, v);
	vmcs_write(HOST_CR4, cr4_read_shadow());
}

static void vmx_vcpu_load(struct vireo_vcpu *vcpu, int cpu)
{
	struct vmx_vcpu *vmx = to_vmx(vcpu);
	struct vmx_cpu *vc = this_cpu_ptr(&vmx_cpus);
	bool moved = vmx->loaded_cpu != cpu;
	unsigned long flags;

	if (moved) {
		vmx_clear_remote(vmx);
		local_irq_save(flags);
		list_add(&vmx->loaded_link, &vc->loaded);
		vmx->loaded_cpu = cpu;
		local_irq_restore(flags);
	}
	if (vc->current_vmcs != vmx->vmcs_pa) {
		if (vmcs_load(vmx->vmcs_pa))
			pr_err_ratelimited("VMPTRLD failed\n");
		vc->current_vmcs = vmx->vmcs_pa;
	}
	if (moved)
		vmx_set_host_cpu_state();
}

static void vmx_vcpu_put(struct vireo_vcpu *vcpu)
{
	/* the VMCS stays active here until it moves or dies */
}

/* ---- segments and control registers ---- */

static u32 ar_from_kvm(const struct kvm_segment *k)
{
	if (k->unusable || !k->present)
		return AR_UNUSABLE;
	return (k->type & 0xf) | (k->s << 4) | ((k->dpl & 3) << 5) |
	       (k->present << 7) | (k->avl << 12) | (k->l << 13) |
	       (k->db << 14) | (k->g << 15);
}

static void seg_get(int n, struct kvm_segment *k)
{
	u32 ar = vmcs_read(SEG_AR(n));

	k->base = vmcs_read(SEG_BASE(n));
	k->limit = vmcs_read(SEG_LIMIT(n));
	k->selector = vmcs_read(SEG_SELECTOR(n));
	k->type = ar & 0xf;
	k->s = (ar >> 4) & 1;
	k->dpl = (ar >> 5) & 3;
	k->present = (ar >> 7) & 1;
	k->avl = (ar >> 12) & 1;
	k->l = (ar >> 13) & 1;
	k->db = (ar >> 14) & 1;
	k->g = (ar >> 15) & 1;
	k->unusable = (ar >> 16) & 1;
}

static void seg_set(int n, const struct kvm_segment *k)
{
	vmcs_write(SEG_BASE(n), k->base);
	vmcs_write(SEG_LIMIT(n), k->limit);
	vmcs_write(SEG_SELECTOR(n), k->selector);
	vmcs_write(SEG_AR(n), ar_from_kvm(k));
}

static void seg_reset(int n, u16 sel, u64 base, u32 ar)
{
	vmcs_write(SEG_SELECTOR(n), sel);
	vmcs_write(SEG_BASE(n), base);
	vmcs_write(SEG_LIMIT(n), 0xffff);
	vmcs_write(SEG_AR(n), ar);
}

static u64 guest_cr0(struct vmx_vcpu *vmx)
{
	return (vmcs_read(GUEST_CR0) & ~cr0_host_mask) |
	       (vmcs_read(CR0_READ_SHADOW) & cr0_host_mask);
}

static u64 guest_cr4(struct vmx_vcpu *vmx)
{
	return (vmcs_read(GUEST_CR4) & ~cr4_host_mask) |
	       (vmcs_read(CR4_READ_SHADOW) & cr4_host_mask);
}

static void set_cr0(struct vmx_vcpu *vmx, u64 cr0)
{
	vmcs_write(CR0_READ_SHADOW, cr0);
	vmcs_write(GUEST_CR0, (cr0 | cr0_fixed0) & cr0_fixed1);
}

static void set_cr4(struct vmx_vcpu *vmx, u64 cr4)
{
	vmcs_write(CR4_READ_SHADOW, cr4);
	vmcs_write(GUEST_CR4, (cr4 | cr4_fixed0) & cr4_fixed1);
}

static void set_efer(struct vmx_vcpu *vmx, u64 efer)
{
	vmcs_write(GUEST_IA32_EFER, efer);
	if (efer & EFER_LMA)
		vmx->entry_ctls |= ENTRY_IA32E;
	else
		vmx->entry_ctls &= ~ENTRY_IA32E;
	vmcs_write(ENTRY_CONTROLS, vmx->entry_ctls);
}

static bool pae_paging(u64 cr0, u64 cr4, u64 efer)
{
	return (cr0 & X86_CR0_PG) && (cr4 & X86_CR4_PAE) &&
	       !(efer & EFER_LMA);
}

static void vmx_get_sregs(struct vireo_vcpu *vcpu, struct kvm_sregs *s)
{
	struct vmx_vcpu *vmx = to_vmx(vcpu);

	seg_get(SEG_CS, &s->cs);
	seg_get(SEG_DS, &s->ds);
	seg_get(SEG_ES, &s->es);
	seg_get(SEG_FS, &s->fs);
	seg_get(SEG_GS, &s->gs);
	seg_get(SEG_SS, &s->ss);
	seg_get(SEG_TR, &s->tr);
	seg_get(SEG_LDTR, &s->ldt);
	s->gdt.base = vmcs_read(GUEST_GDTR_BASE);
	s->gdt.limit = vmcs_read(GUEST_GDTR_LIMIT);
	s->idt.base = vmcs_read(GUEST_IDTR_BASE);
	s->idt.limit = vmcs_read(GUEST_IDTR_LIMIT);
	s->cr0 = guest_cr0(vmx);
	s->cr2 = vmx->cr2;
	s->cr3 = vmcs_read(GUEST_CR3);
	s->cr4 = guest_cr4(vmx);
	s->cr8 = vmx->cr8;
	s->efer = vmcs_read(GUEST_IA32_EFER);
	memset(s->interrupt_bitmap, 0, sizeof(s->interrupt_bitmap));
}

static int vmx_set_sregs(struct vireo_vcpu *vcpu, const struct kvm_sregs *s)
{
	struct vmx_vcpu *vmx = to_vmx(vcpu);

	/* VMX operation is ours, not the guest's */
	if (s->cr4 & X86_CR4_VMXE)
		return -EINVAL;
	seg_set(SEG_CS, &s->cs);
	seg_set(SEG_DS, &s->ds);
	seg_set(SEG_ES, &s->es);
	seg_set(SEG_FS, &s->fs);
	seg_set(SEG_GS, &s->gs);
	seg_set(SEG_SS, &s->ss);
	seg_set(SEG_TR, &s->tr);
	seg_set(SEG_LDTR, &s->ldt);
	vmcs_write(GUEST_GDTR_BASE, s->gdt.base);
	vmcs_write(GUEST_GDTR_LIMIT, s->gdt.limit);
	vmcs_write(GUEST_IDTR_BASE, s->idt.base);
	vmcs_write(GUEST_IDTR_LIMIT, s->idt.limit);
	set_cr0(vmx, s->cr0);
	set_cr4(vmx, s->cr4);
	vmcs_write(GUEST_CR3, s->cr3);
	set_efer(vmx, s->efer);
	vmx->cr2 = s->cr2;
	vmx->cr8 = s->cr8 & 0xf;
	/* with EPT, entering PAE paging loads the PDPTEs from the VMCS */
	vmx->pdptrs_stale = pae_paging(s->cr0, s->cr4, s->efer);
	return 0;
}

/* Read the four PAE PDPTEs the guest's CR3 points at into the VMCS. */
static int vmx_pre_entry(struct vireo_vcpu *vcpu)
{
	struct vmx_vcpu *vmx = to_vmx(vcpu);
	u64 pdpte[4] = { 0 };
	int i;

	if (!vmx->pdptrs_stale)
		return 0;
	vmx->pdptrs_stale = false;
	/* outside guest memory: the entry fails and says so */
	vireo_read_guest(vcpu->vm, vmcs_read(GUEST_CR3) & ~0x1fULL, pdpte,
			 sizeof(pdpte));
	for (i = 0; i < 4; i++)
		vmcs_write(GUEST_PDPTR0 + 2 * i, pdpte[i]);
	return 0;
}

/* ---- vCPUs ---- */

static void vmx_setup_vmcs(struct vmx_vcpu *vmx)
{
	struct vireo_vcpu *vcpu = &vmx->vcpu;
	u64 v;

	/* controls */
	vmcs_write(PIN_BASED_CONTROLS, pin_ctls);
	vmx->proc_ctls = proc_ctls;
	vmcs_write(PROC_BASED_CONTROLS, proc_ctls);
	vmcs_write(SECONDARY_CONTROLS, proc2_ctls);
	vmcs_write(EXIT_CONTROLS, exit_ctls);
	vmx->entry_ctls = entry_ctls;
	vmcs_write(ENTRY_CONTROLS, vmx->entry_ctls);
	vmcs_write(EXCEPTION_BITMAP, 0);
	vmcs_write(CR3_TARGET_COUNT, 0);
	vmcs_write(EXIT_MSR_STORE_COUNT, 0);
	vmcs_write(EXIT_MSR_LOAD_COUNT, 0);
	vmcs_write(ENTRY_MSR_LOAD_COUNT, 0);
	vmcs_write(ENTRY_INTR_INFO, 0);
	vmcs_write(MSR_BITMAP, page_to_phys(msr_bitmap));
	vmcs_write(EPT_POINTER, to_vmx_vm(vcpu->vm)->eptp);
	if (vmx->vpid)
		vmcs_write(VMCS_VPID, vmx->vpid);
	vmcs_write(CR0_GUEST_HOST_MASK, cr0_host_mask);
	vmcs_write(CR4_GUEST_HOST_MASK, cr4_host_mask);
	vmcs_write(TSC_OFFSET, 0);
	vmx->cur_tsc_offset = 0;
	vmx->cur_exc_bitmap = 0;
	vmx->cur_dr7 = 0x400;

	/* host state that is the same on every CPU */
	vmcs_write(HOST_CR0, read_cr0());
	vmcs_write(HOST_CR3, __read_cr3());
	vmcs_write(HOST_CR4, cr4_read_shadow());
	vmcs_write(HOST_CS_SELECTOR, __KERNEL_CS);
	vmcs_write(HOST_SS_SELECTOR, __KERNEL_DS);
	vmcs_write(HOST_DS_SELECTOR, 0);
	vmcs_write(HOST_ES_SELECTOR, 0);
	vmcs_write(HOST_FS_SELECTOR, 0);
	vmcs_write(HOST_GS_SELECTOR, 0);
	vmcs_write(HOST_TR_SELECTOR, GDT_ENTRY_TSS * 8);
	vmcs_write(HOST_RIP, (unsigned long)vireo_vmx_exit_point);
	rdmsrl(MSR_IA32_SYSENTER_CS, v);
	vmcs_write(HOST_IA32_SYSENTER_CS, v);
	rdmsrl(MSR_IA32_SYSENTER_EIP, v);
	vmcs_write(HOST_SYSENTER_EIP, v);
	rdmsrl(MSR_EFER, v);
	vmcs_write(HOST_IA32_EFER, v);
	if (exit_ctls & EXIT_LOAD_PAT) {
		rdmsrl(MSR_IA32_CR_PAT, v);
		vmcs_write(HOST_IA32_PAT, v);
	}

	/* the guest after RESET: real mode at F000:FFF0 */
	seg_reset(SEG_CS, 0xf000, 0xffff0000, 0x9b);
	seg_reset(SEG_DS, 0, 0, 0x93);
	seg_reset(SEG_ES, 0, 0, 0x93);
	seg_reset(SEG_FS, 0, 0, 0x93);
	seg_reset(SEG_GS, 0, 0, 0x93);
	seg_reset(SEG_SS, 0, 0, 0x93);
	seg_reset(SEG_LDTR, 0, 0, 0x82);
	seg_reset(SEG_TR, 0, 0, 0x8b);
	vmcs_write(GUEST_GDTR_BASE, 0);
	vmcs_write(GUEST_GDTR_LIMIT, 0xffff);
	vmcs_write(GUEST_IDTR_BASE, 0);
	vmcs_write(GUEST_IDTR_LIMIT, 0xffff);
	set_cr0(vmx, X86_CR0_NW | X86_CR0_CD | X86_CR0_ET);
	set_cr4(vmx, 0);
	vmcs_write(GUEST_CR3, 0);
	set_efer(vmx, 0);
	vmcs_write(GUEST_DR7, 0x400);
	vmcs_write(GUEST_IA32_DEBUGCTL, 0);
	vmcs_write(GUEST_IA32_PAT, PAT_POWER_ON);
	vmcs_write(GUEST_SYSENTER_CS, 0);
	vmcs_write(GUEST_SYSENTER_ESP, 0);
	vmcs_write(GUEST_SYSENTER_EIP, 0);
	vmcs_write(GUEST_INTERRUPTIBILITY, 0);
	vmcs_write(GUEST_ACTIVITY_STATE, 0);
	vmcs_write(GUEST_PENDING_DBG, 0);
	vmcs_write(VMCS_LINK_POINTER, ~0ULL);
	vmcs_write(GUEST_RFLAGS, 2);
}

static u16 vpid_alloc(void)
{
	unsigned long id;

	if (!have_vpid)
		return 0;
	spin_lock(&vpid_lock);
	id = find_next_zero_bit(vpid_bitmap, NR_VPIDS, 1);
	if (id < NR_VPIDS)
		__set_bit(id, vpid_bitmap);
	else
		id = 0;		/* shared untagged: flushed on every switch */
	spin_unlock(&vpid_lock);
	return id;
}

static void vpid_free(u16 vpid)
{
	if (!vpid)
		return;
	spin_lock(&vpid_lock);
	__clear_bit(vpid, vpid_bitmap);
	spin_unlock(&vpid_lock);
}

static int vmx_vcpu_create(struct vireo_vcpu *vcpu)
{
	struct vmx_vcpu *vmx = to_vmx(vcpu);
	struct vmx_cpu *vc;
	u64 prev;

	vmx->vmcs = alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO);
	if (!vmx->vmcs)
		return -ENOMEM;
	*(u32 *)page_address(vmx->vmcs) = vmcs_revision;
	vmx->vmcs_pa = page_to_phys(vmx->vmcs);
	vmx->loaded_cpu = -1;
	INIT_LIST_HEAD(&vmx->loaded_link);
	vmx->vpid = vpid_alloc();

	/* fill the new VMCS here, then leave it inactive */
	preempt_disable();
	vc = this_cpu_ptr(&vmx_cpus);
	prev = vc->current_vmcs;
	vmcs_clear(vmx->vmcs_pa);
	if (vmcs_load(vmx->vmcs_pa)) {
		preempt_enable();
		vpid_free(vmx->vpid);
		__free_page(vmx->vmcs);
		vmx->vmcs = NULL;
		return -EIO;
	}
	vmx_setup_vmcs(vmx);
	vmcs_clear(vmx->vmcs_pa);
	vc->current_vmcs = 0;
	if (prev && !vmcs_load(prev))
		vc->current_vmcs = prev;
	preempt_enable();
	return 0;
}

static void vmx_vcpu_free(struct vireo_vcpu *vcpu)
{
	struct vmx_vcpu *vmx = to_vmx(vcpu);

	if (!vmx->vmcs)
		return;
	vmx_clear_remote(vmx);
	vpid_free(vmx->vpid);
	__free_page(vmx->vmcs);
	vmx->vmcs = NULL;
}

/* ---- exits ---- */

static u64 *gpr(struct vireo_vcpu *vcpu, int n)
{
	return &vcpu->regs[n & 15];
}

static void skip_insn(struct vireo_vcpu *vcpu)
{
	vcpu->rip += vmcs_read(EXIT_INSTRUCTION_LEN);
}

static void inject_gp(struct vireo_vcpu *vcpu)
{
	vireo_queue_exception(vcpu, GP_VECTOR, true, 0);
}

static void inject_ud(struct vireo_vcpu *vcpu)
{
	vireo_queue_exception(vcpu, UD_VECTOR, false, 0);
}

/* MOV to/from CR0, CR4, CR8, CLTS, LMSW: the host-owned bits exit. */
static void vmx_cr_access(struct vmx_vcpu *vmx, u64 qual)
{
	struct vireo_vcpu *vcpu = &vmx->vcpu;
	u64 *reg = gpr(vcpu, CR_QUAL_GPR(qual));
	u64 val, old, efer;

	switch (CR_QUAL_TYPE(qual)) {
	case CR_TYPE_MOV_TO:
		val = *reg;
		switch (CR_QUAL_NUM(qual)) {
		case 0:
			val &= 0xffffffffULL;
			efer = vmcs_read(GUEST_IA32_EFER);
			if (((val & X86_CR0_PG) && !(val & X86_CR0_PE)) ||
			    ((val & X86_CR0_NW) && !(val & X86_CR0_CD)) ||
			    ((val & X86_CR0_PG) && (efer & EFER_LME) &&
			     !(guest_cr4(vmx) & X86_CR4_PAE))) {
				inject_gp(vcpu);
				return;
			}
			old = guest_cr0(vmx);
			set_cr0(vmx, val);
			/* we changed paging for the guest: follow it */
			if ((old ^ val) & X86_CR0_PG) {
				if (efer & EFER_LME)
					set_efer(vmx, (val & X86_CR0_PG) ?
						 efer | EFER_LMA :
						 efer & ~EFER_LMA);
				vmx->pdptrs_stale =
					pae_paging(val, guest_cr4(vmx), efer);
				vmx_flush_tlb(vcpu);
			}
			break;
		case 4:
			if (!vireo_cr4_valid(vcpu, val) ||
			    ((vmcs_read(GUEST_IA32_EFER) & EFER_LMA) &&
			     !(val & X86_CR4_PAE))) {
				inject_gp(vcpu);
				return;
			}
			set_cr4(vmx, val);
			efer = vmcs_read(GUEST_IA32_EFER);
			vmx->pdptrs_stale = pae_paging(guest_cr0(vmx), val,
						       efer);
			vmx_flush_tlb(vcpu);
			break;
		case 8:
			if (val >> 4) {
				inject_gp(vcpu);
				return;
			}
			vmx->cr8 = val;
			break;
		default:
			inject_ud(vcpu);
			return;
		}
		break;
	case CR_TYPE_MOV_FROM:
		if (CR_QUAL_NUM(qual) == 8)
			*reg = vmx->cr8;
		else
			inject_ud(vcpu);
		break;
	case CR_TYPE_CLTS:
		set_cr0(vmx, guest_cr0(vmx) & ~(u64)X86_CR0_TS);
		break;
	case CR_TYPE_LMSW:
		/* the low four bits; PE can be set, not cleared */
		old = guest_cr0(vmx);
		val = (old & ~0xeULL) | (CR_QUAL_LMSW_DATA(qual) & 0xf);
		set_cr0(vmx, val);
		break;
	}
	skip_insn(vcpu);
}

/* The MSRs we switch for the guest ourselves. */
static u64 *soft_msr(struct vmx_vcpu *vmx, u32 index)
{
	switch (index) {
	case MSR_KERNEL_GS_BASE:
		return &vmx->guest_kernel_gs_base;
	case MSR_STAR:
		return &vmx->star;
	case MSR_LSTAR:
		return &vmx->lstar;
	case MSR_CSTAR:
		return &vmx->cstar;
	case MSR_SYSCALL_MASK:
		return &vmx->sfmask;
	default:
		return NULL;
	}
}

/* The MSRs the VMCS holds. */
static unsigned long vmcs_msr_field(u32 index)
{
	switch (index) {
	case MSR_FS_BASE:
		return SEG_BASE(SEG_FS);
	case MSR_GS_BASE:
		return SEG_BASE(SEG_GS);
	case MSR_IA32_SYSENTER_CS:
		return GUEST_SYSENTER_CS;
	case MSR_IA32_SYSENTER_ESP:
		return GUEST_SYSENTER_ESP;
	case MSR_IA32_SYSENTER_EIP:
		return GUEST_SYSENTER_EIP;
	case MSR_IA32_CR_PAT:
		return GUEST_IA32_PAT;
	case MSR_IA32_DEBUGCTLMSR:
		return GUEST_IA32_DEBUGCTL;
	default:
		return 0;
	}
}

static int vmx_get_msr(struct vireo_vcpu *vcpu, u32 index, u64 *data)
{
	struct vmx_vcpu *vmx = to_vmx(vcpu);
	unsigned long field;
	u64 *p;

	if (index == MSR_EFER) {
		*data = vmcs_read(GUEST_IA32_EFER);
		return 0;
	}
	p = soft_msr(vmx, index);
	if (p) {
		*data = *p;
		return 0;
	}
	field = vmcs_msr_field(index);
	if (!field)
		return 1;
	*data = vmcs_read(field);
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

static int vmx_set_msr(struct vireo_vcpu *vcpu, u32 index, u64 data,
		       bool host)
{
	struct vmx_vcpu *vmx = to_vmx(vcpu);
	unsigned long field;
	u64 *p, efer;

	switch (index) {
	case MSR_EFER:
		if (data & ~(u64)(EFER_SCE | EFER_LME | EFER_LMA | EFER_NX))
			return -EINVAL;
		efer = vmcs_read(GUEST_IA32_EFER);
		if (!host) {
			/* LMA is the CPU's; LME may not change under paging */
			data = (data & ~(u64)EFER_LMA) | (efer & EFER_LMA);
			if ((guest_cr0(vmx) & X86_CR0_PG) &&
			    ((data ^ efer) & EFER_LME))
				return -EINVAL;
		}
		set_efer(vmx, data);
		return 0;
	case MSR_IA32_CR_PAT:
		if (!pat_valid(data))
			return -EINVAL;
		break;
	case MSR_IA32_DEBUGCTLMSR:
		/* no LBR or BTF for the guest: only "off" */
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
	p = soft_msr(vmx, index);
	if (p) {
		*p = data;
		return 0;
	}
	field = vmcs_msr_field(index);
	if (!field)
		return 1;
	vmcs_write(field, data);
	return 0;
}

/* ---- events ---- */

static u64 vmx_get_cr8(struct vireo_vcpu *vcpu)
{
	return to_vmx(vcpu)->cr8;
}

/* CR8 accesses exit (CR8-load/store exiting): vmx->cr8 is the TPR */
static void vmx_set_cr8(struct vireo_vcpu *vcpu, u64 cr8)
{
	to_vmx(vcpu)->cr8 = cr8 & 0xf;
}

static u32 vmx_get_interrupt_shadow(struct vireo_vcpu *vcpu)
{
	u32 v = vmcs_read(GUEST_INTERRUPTIBILITY);

	return ((v & INTERRUPTIBILITY_STI) ? KVM_X86_SHADOW_INT_STI : 0) |
	       ((v & INTERRUPTIBILITY_MOV_SS) ? KVM_X86_SHADOW_INT_MOV_SS : 0);
}

static void vmx_set_interrupt_shadow(struct vireo_vcpu *vcpu, u32 shadow)
{
	u32 v = vmcs_read(GUEST_INTERRUPTIBILITY);

	v &= ~(INTERRUPTIBILITY_STI | INTERRUPTIBILITY_MOV_SS);
	if (shadow & KVM_X86_SHADOW_INT_STI)
		v |= INTERRUPTIBILITY_STI;
	else if (shadow & KVM_X86_SHADOW_INT_MOV_SS)
		v |= INTERRUPTIBILITY_MOV_SS;
	vmcs_write(GUEST_INTERRUPTIBILITY, v);
}

static bool vmx_get_nmi_mask(struct vireo_vcpu *vcpu)
{
	return vmcs_read(GUEST_INTERRUPTIBILITY) & INTERRUPTIBILITY_NMI;
}

static void vmx_set_nmi_mask(struct vireo_vcpu *vcpu, bool masked)
{
	u32 v = vmcs_read(GUEST_INTERRUPTIBILITY);

	if (!(pin_ctls & PIN_VIRTUAL_NMIS))
		return;
	if (masked)
		v |= INTERRUPTIBILITY_NMI;
	else
		v &= ~INTERRUPTIBILITY_NMI;
	vmcs_write(GUEST_INTERRUPTIBILITY, v);
}

static bool vmx_nmi_allowed(struct vireo_vcpu *vcpu)
{
	/* conservative: no NMI in any shadow (some CPUs refuse it) */
	return !(vmcs_read(GUEST_INTERRUPTIBILITY) &
		 (INTERRUPTIBILITY_STI | INTERRUPTIBILITY_MOV_SS |
		  INTERRUPTIBILITY_NMI));
}

static const u8 vmx_event_type[] = {
	[VIREO_EV_INTR] = INTR_TYPE_EXT_INTR,
	[VIREO_EV_NMI] = INTR_TYPE_NMI,
	[VIREO_EV_EXCEPTION] = INTR_TYPE_HW_EXCEPTION,
	[VIREO_EV_SOFT_INTR] = INTR_TYPE_SW_INTR,
	[VIREO_EV_SOFT_EXCEPTION] = INTR_TYPE_SW_EXCEPTION,
	[VIREO_EV_PRIV_SOFT] = INTR_TYPE_PRIV_SW_EXCEPTION,
};

static bool soft_type(u8 type)
{
	return type == INTR_TYPE_SW_INTR || type == INTR_TYPE_SW_EXCEPTION ||
	       type == INTR_TYPE_PRIV_SW_EXCEPTION;
}

/* vcpu->ev.inject into the VM-entry fields; the windows; MOV DR. */
static void vmx_load_events(struct vmx_vcpu *vmx)
{
	struct vireo_vcpu *vcpu = &vmx->vcpu;
	struct vireo_event *inj = &vcpu->ev.inject;
	u32 info = 0, ctls = vmx->proc_ctls;
	u8 type;

	if (inj->valid && inj->type < ARRAY_SIZE(vmx_event_type)) {
		type = vmx_event_type[inj->type];
		info = inj->vector | (type << 8) | INTR_INFO_VALID;
		/* real mode delivers no error codes */
		if (type == INTR_TYPE_HW_EXCEPTION && inj->has_error &&
		    (guest_cr0(vmx) & X86_CR0_PE)) {
			info |= INTR_INFO_ERROR_VALID;
			vmcs_write(ENTRY_EXCEPTION_ERROR_CODE, inj->error_code);
		}
		if (soft_type(type))
			vmcs_write(ENTRY_INSTRUCTION_LEN,
				   clamp_t(u32, inj->insn_len, 1, 15));
	}
	inj->valid = false;
	vmcs_write(ENTRY_INTR_INFO, info);

	ctls &= ~(PROC_INTR_WINDOW_EXITING | PROC_NMI_WINDOW_EXITING);
	if (vcpu->ev.irq_window)
		ctls |= window_ctls & PROC_INTR_WINDOW_EXITING;
	if (vcpu->ev.nmi_window)
		ctls |= window_ctls & PROC_NMI_WINDOW_EXITING;
	if (!vcpu->dbg.guest_owns)
		ctls |= PROC_MOV_DR_EXITING;
	else
		ctls &= ~PROC_MOV_DR_EXITING;
	if (ctls != vmx->proc_ctls) {
		vmx->proc_ctls = ctls;
		vmcs_write(PROC_BASED_CONTROLS, ctls);
	}
}

/* An event whose delivery the exit interrupted goes back to the core. */
static void vmx_save_events(struct vmx_vcpu *vmx)
{
	struct vireo_event *inj = &vmx->vcpu.ev.inject;
	u32 idt = vmcs_read(IDT_VECTORING_INFO);
	u8 type = INTR_INFO_TYPE(idt);
	int i;

	memset(inj, 0, sizeof(*inj));
	if (!(idt & INTR_INFO_VALID))
		return;
	for (i = 0; i < ARRAY_SIZE(vmx_event_type); i++) {
		if (vmx_event_type[i] == type) {
			inj->type = i;
			inj->valid = true;
		}
	}
	inj->vector = INTR_INFO_VECTOR(idt);
	if (idt & INTR_INFO_ERROR_VALID) {
		inj->has_error = true;
		inj->error_code = vmcs_read(IDT_VECTORING_ERROR_CODE);
	}
	if (soft_type(type))
		inj->insn_len = vmcs_read(EXIT_INSTRUCTION_LEN);
}

/* DR7, DR6 and the #DB/#BP intercepts for this entry. */
static void vmx_load_debug(struct vmx_vcpu *vmx)
{
	struct vireo_vcpu *vcpu = &vmx->vcpu;
	u32 exc = (vcpu->dbg.intercept_db ? BIT(DB_VECTOR) : 0) |
		  (vcpu->dbg.intercept_bp ? BIT(BP_VECTOR) : 0);
	u32 shadow;

	if (vmx->cur_dr7 != vcpu->dbg.eff_dr7) {
		vmx->cur_dr7 = vcpu->dbg.eff_dr7;
		vmcs_write(GUEST_DR7, vmx->cur_dr7);
	}
	if (vmx->cur_exc_bitmap != exc) {
		vmx->cur_exc_bitmap = exc;
		vmcs_write(EXCEPTION_BITMAP, exc);
	}
	if (vcpu->dbg.guest_owns)
		set_debugreg(vcpu->dbg.dr6, 6);
	/* single-stepping out of a shadow: the #DB must be pending */
	if (vcpu->rflags & X86_EFLAGS_TF) {
		shadow = vmcs_read(GUEST_INTERRUPTIBILITY);
		if (shadow & (INTERRUPTIBILITY_STI | INTERRUPTIBILITY_MOV_SS))
			vmcs_write(GUEST_PENDING_DBG,
				   vmcs_read(GUEST_PENDING_DBG) |
				   PENDING_DBG_BS);
	}
}

static void vmx_save_debug(struct vmx_vcpu *vmx)
{
	struct vireo_vcpu *vcpu = &vmx->vcpu;

	if (vcpu->dbg.guest_owns) {
		get_debugreg(vcpu->dbg.dr6, 6);
		set_debugreg(DR6_RESERVED, 6);
	}
	vmx->cur_dr7 = vmcs_read(GUEST_DR7);
	if (!(vcpu->dbg.guest_debug & KVM_GUESTDBG_USE_HW_BP))
		vcpu->dbg.dr7 = vmx->cur_dr7;
}

static void vmx_handle_nmi(void)
{
	/* an NMI that hit the guest is the host's: take it now */
	asm volatile("int $2");
}

static void vmx_vcpu_run(struct vireo_vcpu *vcpu, struct vireo_exit *exit)
{
	struct vmx_vcpu *vmx = to_vmx(vcpu);
	u64 host_kgs, host_fs_base, qual;
	u16 ds, es, fs_sel, gs_sel, ldt;
	u32 reason, info;
	int failed;

	vmcs_write(GUEST_RIP, vcpu->rip);
	vmcs_write(GUEST_RFLAGS, vcpu->rflags);
	vmcs_write(GUEST_RSP, vcpu->regs[VCPU_RSP]);
	vmcs_write(HOST_CR3, __read_cr3());
	if (vmx->cur_tsc_offset != vcpu->msr.tsc_offset) {
		vmx->cur_tsc_offset = vcpu->msr.tsc_offset;
		vmcs_write(TSC_OFFSET, vmx->cur_tsc_offset);
	}
	vmx_load_events(vmx);
	vmx_load_debug(vmx);
	vireo_uret_set(VIREO_URET_STAR, vmx->star);
	vireo_uret_set(VIREO_URET_LSTAR, vmx->lstar);
	vireo_uret_set(VIREO_URET_CSTAR, vmx->cstar);
	vireo_uret_set(VIREO_URET_SFMASK, vmx->sfmask);

	/* host state a VM exit does not give back */
	savesegment(ds, ds);
	savesegment(es, es);
	savesegment(fs, fs_sel);
	savesegment(gs, gs_sel);
	asm volatile("sldt %0" : "=r" (ldt));
	rdmsrl(MSR_FS_BASE, host_fs_base);
	vmcs_write(HOST_FS_BASE, host_fs_base);
	rdmsrl(MSR_KERNEL_GS_BASE, host_kgs);
	wrmsrl(MSR_KERNEL_GS_BASE, vmx->guest_kernel_gs_base);
	if (native_read_cr2() != vmx->cr2)
		native_write_cr2(vmx->cr2);

	failed = vireo_vmx_enter(vcpu->regs, vmx->launched);

	vmx->cr2 = native_read_cr2();
	rdmsrl(MSR_KERNEL_GS_BASE, vmx->guest_kernel_gs_base);
	wrmsrl(MSR_KERNEL_GS_BASE, host_kgs);
	/* VM exits leave the GDT and IDT limits at 0xffff and no LDT */
	native_load_gdt(&this_cpu_ptr(&vmx_cpus)->gdt);
	native_load_idt(&this_cpu_ptr(&vmx_cpus)->idt);
	if (ldt)
		asm volatile("lldt %0" : : "r" (ldt));
	if (ds)
		loadsegment(ds, ds);
	if (es)
		loadsegment(es, es);
	if (fs_sel) {
		loadsegment(fs, fs_sel);
		wrmsrl(MSR_FS_BASE, host_fs_base);
	}
	if (gs_sel)
		load_gs_index(gs_sel);

	vmx_save_debug(vmx);
	if (failed) {
		exit->reason = VIREO_EXIT_FAIL_ENTRY;
		exit->fail_reason = vmcs_read(VM_INSTRUCTION_ERROR);
		return;
	}
	reason = vmcs_read(EXIT_REASON);
	if (reason & EXIT_REASON_ENTRY_FAILED) {
		/* nothing ran, and the launch state did not change */
		exit->reason = VIREO_EXIT_FAIL_ENTRY;
		exit->fail_reason = reason;
		return;
	}
	vmx->launched = true;
	vcpu->rip = vmcs_read(GUEST_RIP);
	vcpu->rflags = vmcs_read(GUEST_RFLAGS);
	vcpu->regs[VCPU_RSP] = vmcs_read(GUEST_RSP);
	vmx_save_events(vmx);

	qual = vmcs_read(EXIT_QUALIFICATION);
	exit->reason = VIREO_EXIT_NONE;
	switch (reason & 0xffff) {
	case EXIT_REASON_EXCEPTION_NMI:
		info = vmcs_read(EXIT_INTR_INFO);
		if (INTR_INFO_TYPE(info) == INTR_TYPE_NMI) {
			vmx_handle_nmi();
			break;
		}
		exit->reason = VIREO_EXIT_EXCEPTION;
		exit->exc.vector = INTR_INFO_VECTOR(info);
		if (exit->exc.vector == DB_VECTOR)
			exit->exc.dr6 = DR6_RESERVED | (qual & DB_QUAL_DR6_BITS);
		else
			exit->insn_len = vmcs_read(EXIT_INSTRUCTION_LEN);
		break;
	case EXIT_REASON_INTR_WINDOW:
		exit->reason = VIREO_EXIT_IRQ_WINDOW;
		break;
	case EXIT_REASON_NMI_WINDOW:
		/* the core injects the NMI on the next entry */
		break;
	case EXIT_REASON_EXTERNAL_INTR:
	case EXIT_REASON_INIT:
	case EXIT_REASON_SIPI:
		/* taken by the host once interrupts are on again */
		break;
	case EXIT_REASON_TRIPLE_FAULT:
		exit->reason = VIREO_EXIT_SHUTDOWN;
		break;
	case EXIT_REASON_CPUID:
		exit->reason = VIREO_EXIT_CPUID;
		exit->insn_len = vmcs_read(EXIT_INSTRUCTION_LEN);
		break;
	case EXIT_REASON_HLT:
		exit->reason = VIREO_EXIT_HLT;
		exit->insn_len = vmcs_read(EXIT_INSTRUCTION_LEN);
		break;
	case EXIT_REASON_INVD:
		/* never drop the host's dirty cache lines: a no-op */
		skip_insn(vcpu);
		break;
	case EXIT_REASON_VMCALL:
		exit->reason = VIREO_EXIT_HYPERCALL;
		exit->insn_len = vmcs_read(EXIT_INSTRUCTION_LEN);
		break;
	case EXIT_REASON_VMCLEAR ... EXIT_REASON_VMXON:
	case EXIT_REASON_INVEPT:
	case EXIT_REASON_INVVPID:
	case EXIT_REASON_MWAIT:
	case EXIT_REASON_MONITOR:
		/* the guest has no VMX and no MONITOR/MWAIT */
		inject_ud(vcpu);
		break;
	case EXIT_REASON_CR_ACCESS:
		vmx_cr_access(vmx, qual);
		break;
	case EXIT_REASON_DR_ACCESS:
		exit->reason = VIREO_EXIT_DR_ACCESS;
		break;
	case EXIT_REASON_IO:
		exit->reason = VIREO_EXIT_IO;
		exit->io.port = IO_QUAL_PORT(qual);
		exit->io.size = IO_QUAL_SIZE(qual);
		exit->io.in = !!(qual & IO_QUAL_IN);
		exit->io.string = !!(qual & IO_QUAL_STRING);
		exit->io.rep = !!(qual & IO_QUAL_REP);
		exit->insn_len = vmcs_read(EXIT_INSTRUCTION_LEN);
		break;
	case EXIT_REASON_RDMSR:
	case EXIT_REASON_WRMSR:
		exit->reason = (reason & 0xffff) == EXIT_REASON_WRMSR ?
			       VIREO_EXIT_MSR_WRITE : VIREO_EXIT_MSR_READ;
		exit->insn_len = vmcs_read(EXIT_INSTRUCTION_LEN);
		break;
	case EXIT_REASON_XSETBV:
		exit->reason = VIREO_EXIT_XSETBV;
		exit->insn_len = vmcs_read(EXIT_INSTRUCTION_LEN);
		break;
	case EXIT_REASON_EPT_VIOLATION:
		exit->reason = VIREO_EXIT_TDP_FAULT;
		exit->tdp.gpa = vmcs_read(GUEST_PHYSICAL_ADDRESS);
		exit->tdp.write = !!(qual & EPT_QUAL_WRITE);
		exit->tdp.fetch = !!(qual & EPT_QUAL_FETCH);
		exit->tdp.present = !!(qual & EPT_QUAL_PERMS);
		break;
	default:
		exit->reason = VIREO_EXIT_UNHANDLED;
		exit->raw[0] = reason;
		exit->raw[1] = qual;
		break;
	}
}

static const struct vireo_backend vmx_backend = {
	.name = "vmx",
	.id = VIREO_BACKEND_VMX,
	.owner = THIS_MODULE,
	.hardware_enable = vmx_hardware_enable,
	.hardware_disable = vmx_hardware_disable,
	.emergency_disable = vmx_emergency_disable,
	.vm_size = sizeof(struct vmx_vm),
	.vcpu_size = sizeof(struct vmx_vcpu),
	.vm_init = vmx_vm_init,
	.vm_destroy = vmx_vm_destroy,
	.vcpu_create = vmx_vcpu_create,
	.vcpu_free = vmx_vcpu_free,
	.vcpu_load = vmx_vcpu_load,
	.vcpu_put = vmx_vcpu_put,
	.pre_entry = vmx_pre_entry,
	.vcpu_run = vmx_vcpu_run,
	.get_sregs = vmx_get_sregs,
	.set_sregs = vmx_set_sregs,
	.get_msr = vmx_get_msr,
	.set_msr = vmx_set_msr,
	.get_interrupt_shadow = vmx_get_interrupt_shadow,
	.get_cr8 = vmx_get_cr8,
	.set_cr8 = vmx_set_cr8,
	.set_interrupt_shadow = vmx_set_interrupt_shadow,
	.get_nmi_mask = vmx_get_nmi_mask,
	.set_nmi_mask = vmx_set_nmi_mask,
	.nmi_allowed = vmx_nmi_allowed,
	.tdp_entry = vmx_tdp_entry,
	.set_tdp_root = vmx_set_tdp_root,
	.flush_tlb = vmx_flush_tlb,
};

static int __init vmx_init(void)
{
	int ret;

	ret = vmx_check_hardware();
	if (ret)
		return ret;
	ret = vmx_alloc_regions();
	if (ret)
		return ret;
	ret = vireo_register_backend(&vmx_backend);
	if (ret) {
		vmx_free_regions();
		return ret;
	}
	pr_info("VT-x with EPT and unrestricted guest, VPID %s\n",
		have_vpid ? "on" : "off");
	return 0;
}

static void __exit vmx_exit(void)
{
	vireo_unregister_backend(&vmx_backend);
	vmx_free_regions();
}

module_init(vmx_init);
module_exit(vmx_exit);

MODULE_DESCRIPTION("Vireo hypervisor: Intel VT-x backend");
MODULE_AUTHOR("The Vireo developers");
MODULE_LICENSE("GPL");
