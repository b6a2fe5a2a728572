// SPDX-License-Identifier: GPL-2.0-only
/*
 * vireo-svm.ko: the AMD-V backend.
 */
#define pr_fmt(fmt) "vireo-svm: " fmt

#include <linux/gfp.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/percpu.h>
#include <asm/asm.h>
#include <asm/io.h>
#include <asm/msr.h>
#include <asm/processor.h>

#include <vireo/backend.h>

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

static u32 svm_features;
static DEFINE_PER_CPU(struct page *, hsave_page);

static int svm_hardware_enable(void)
{
	u64 efer;

	rdmsrl(MSR_EFER, efer);
	if (efer & EFER_SVME)
		return -EBUSY;	/* another hypervisor has SVM on */
	wrmsrl(MSR_EFER, efer | EFER_SVME);
	wrmsrl(MSR_VM_HSAVE_PA, page_to_phys(this_cpu_read(hsave_page)));
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
	return 0;
}

static void svm_free_pages(void)
{
	int cpu;

	for_each_possible_cpu(cpu) {
		if (per_cpu(hsave_page, cpu))
			__free_page(per_cpu(hsave_page, cpu));
		per_cpu(hsave_page, cpu) = NULL;
	}
}

static int svm_alloc_pages(void)
{
	struct page *page;
	int cpu;

	for_each_possible_cpu(cpu) {
		page = alloc_pages_node(cpu_to_node(cpu),
					GFP_KERNEL | __GFP_ZERO, 0);
		if (!page) {
			svm_free_pages();
			return -ENOMEM;
		}
		per_cpu(hsave_page, cpu) = page;
	}
	return 0;
}

static const struct vireo_backend svm_backend = {
	.name = "svm",
	.id = VIREO_BACKEND_SVM,
	.owner = THIS_MODULE,
	.hardware_enable = svm_hardware_enable,
	.hardware_disable = svm_hardware_disable,
	.emergency_disable = svm_emergency_disable,
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
