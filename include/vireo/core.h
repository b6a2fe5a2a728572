/* SPDX-License-Identifier: GPL-2.0-only */
/* Internal interfaces of vireo.ko, not for backends. */
#ifndef _VIREO_CORE_H
#define _VIREO_CORE_H

#include <vireo/insn.h>
#include <vireo/vireo.h>

/* arch/x86/hw.c: virtualization on all CPUs, through hotplug and suspend */
int vireo_hw_enable_all(const struct vireo_backend *b);
void vireo_hw_disable_all(void);

/* virt/main.c: the registered backend, pinned; NULL when none */
const struct vireo_backend *vireo_get_backend(void);
void vireo_put_backend(const struct vireo_backend *b);

/* virt/vm.c */
int vireo_create_vm(unsigned long type);
long vireo_check_extension(struct vireo_vm *vm, long cap);
void vireo_vm_get(struct vireo_vm *vm);
void vireo_vm_put(struct vireo_vm *vm);

/* virt/vcpu.c */
int vireo_create_vcpu(struct vireo_vm *vm, unsigned long id);
void vireo_vcpu_destroy(struct vireo_vcpu *vcpu);
/*
 * Ask every vCPU to flush its TLB before it next enters, and wait until
 * none of them is still running on the old translations.
 */
void vireo_flush_all_vcpus(struct vireo_vm *vm);
int vireo_vcpu_init(void);
void vireo_vcpu_exit(void);

/* arch/x86/x86.c */
void vireo_arch_vcpu_reset(struct vireo_vcpu *vcpu);
int vireo_arch_vcpu_run(struct vireo_vcpu *vcpu);
long vireo_arch_vcpu_ioctl(struct vireo_vcpu *vcpu, unsigned int ioctl,
			   unsigned long arg);
/* The CPU mode of the guest's code segment. */
enum vireo_cpu_mode vireo_cpu_mode(struct vireo_vcpu *vcpu,
				   const struct kvm_sregs *s);
/* The bytes at the guest's CS:RIP (up to 15); how many could be read. */
unsigned int vireo_fetch_insn(struct vireo_vcpu *vcpu,
			      const struct kvm_sregs *s,
			      u8 bytes[VIREO_INSN_MAX_LEN]);
/* Set up KVM_EXIT_INTERNAL_ERROR (emulation) at RIP; returns 0. */
int vireo_emulation_failed(struct vireo_vcpu *vcpu);

/* arch/x86/mmio.c: 1 to enter the guest again, 0 to exit to the VMM */
int vireo_handle_mmio(struct vireo_vcpu *vcpu, u64 gpa);
/* after KVM_EXIT_MMIO: 0 to go on into the guest, 1 to exit again */
int vireo_complete_mmio(struct vireo_vcpu *vcpu);

/* arch/x86/cpuid.c */
long vireo_get_supported_cpuid(struct kvm_cpuid2 __user *argp);
long vireo_set_cpuid2(struct vireo_vcpu *vcpu, struct kvm_cpuid2 __user *argp);
long vireo_get_cpuid2(struct vireo_vcpu *vcpu, struct kvm_cpuid2 __user *argp);
void vireo_emulate_cpuid(struct vireo_vcpu *vcpu, bool guest_osxsave);
bool vireo_cpuid_has(struct vireo_vcpu *vcpu, u32 leaf, u32 sub, int reg,
		     int bit);
u64 vireo_guest_xcr0_mask(struct vireo_vcpu *vcpu);
int vireo_xsave2_size(void);
/* The XCR0 bits a guest may have (only all three of AVX-512's or none) */
u64 vireo_supported_xcr0(void);
#define XFEATURE_AVX512		(XFEATURE_MASK_OPMASK | \
				 XFEATURE_MASK_ZMM_Hi256 | \
				 XFEATURE_MASK_Hi16_ZMM)
bool vireo_xcr0_valid(struct vireo_vcpu *vcpu, u64 xcr0);
long vireo_state_ioctl(struct vireo_vcpu *vcpu, unsigned int ioctl,
		       void __user *argp);

extern u64 vireo_host_xcr0;
void vireo_arch_init(void);
void vireo_arch_vm_init(struct vireo_vm *vm);
long vireo_arch_vm_ioctl(struct vireo_vm *vm, unsigned int ioctl,
			 unsigned long arg);

/* arch/x86/msr.c */
long vireo_get_msr_index_list(void __user *argp);
long vireo_get_msr_feature_index_list(void __user *argp);
long vireo_get_feature_msrs(void __user *argp);
long vireo_msrs_ioctl(struct vireo_vcpu *vcpu, void __user *argp, bool set);
int vireo_get_msr(struct vireo_vcpu *vcpu, u32 index, u64 *data, bool host);
int vireo_set_msr(struct vireo_vcpu *vcpu, u32 index, u64 data, bool host);
void vireo_msrs_reset(struct vireo_vcpu *vcpu);
long vireo_get_mce_cap_supported(void __user *argp);
long vireo_setup_mce(struct vireo_vcpu *vcpu, void __user *argp);
void vireo_uret_cpu_down(void);
void vireo_vm_init_clock(struct vireo_vm *vm);
int vireo_get_clock(struct vireo_vm *vm, void __user *argp);
int vireo_set_clock(struct vireo_vm *vm, void __user *argp);
void vireo_kvmclock_update(struct vireo_vcpu *vcpu);
int vireo_get_tsc_khz(struct vireo_vcpu *vcpu);
int vireo_set_tsc_khz(struct vireo_vcpu *vcpu, unsigned long khz);

#endif /* _VIREO_CORE_H */
