// SPDX-License-Identifier: GPL-2.0-only
/*
 * vireo-vmx.ko: the Intel VT-x backend.
 */
#define pr_fmt(fmt) "vireo-vmx: " fmt

#include <linux/gfp.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/percpu.h>
#include <asm/asm.h>
#include <asm/io.h>
#include <asm/msr.h>
#include <asm/perf_event.h>
#include <asm/processor.h>
#include <asm/tlbflush.h>

#include <vireo/backend.h>

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

static u32 vmcs_revision;
static bool have_vpid;
static DEFINE_PER_CPU(struct page *, vmxon_page);

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

static int vmx_hardware_enable(void)
{
	u64 pa = page_to_phys(this_cpu_read(vmxon_page));

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
	return 0;
}

static void vmx_hardware_disable(void)
{
	cpu_vmxoff();
	cr4_clear_bits(X86_CR4_VMXE);
	intel_pt_handle_vmx(0);
}

static void vmx_emergency_disable(void)
{
	if (cr4_read_shadow() & X86_CR4_VMXE) {
		cpu_vmxoff();
		cr4_clear_bits(X86_CR4_VMXE);
	}
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
	return 0;
}

static void vmx_free_regions(void)
{
	int cpu;

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

static const struct vireo_backend vmx_backend = {
	.name = "vmx",
	.id = VIREO_BACKEND_VMX,
	.owner = THIS_MODULE,
	.hardware_enable = vmx_hardware_enable,
	.hardware_disable = vmx_hardware_disable,
	.emergency_disable = vmx_emergency_disable,
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
