/* SPDX-License-Identifier: GPL-2.0-only */
/* Internal interfaces of vireo.ko, not for backends. */
#ifndef _VIREO_CORE_H
#define _VIREO_CORE_H

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

/* arch/x86/cpuid.c */
long vireo_get_supported_cpuid(struct kvm_cpuid2 __user *argp);
long vireo_set_cpuid2(struct vireo_vcpu *vcpu, struct kvm_cpuid2 __user *argp);
long vireo_get_cpuid2(struct vireo_vcpu *vcpu, struct kvm_cpuid2 __user *argp);
void vireo_emulate_cpuid(struct vireo_vcpu *vcpu, bool guest_osxsave);

#endif /* _VIREO_CORE_H */
