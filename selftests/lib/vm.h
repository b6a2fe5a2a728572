/* SPDX-License-Identifier: GPL-2.0-only */
/* A small VM toolkit for the selftests: KVM ABI only. */
#ifndef VIREO_SELFTEST_VM_H
#define VIREO_SELFTEST_VM_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

struct vm {
	int kvm, fd;
	long run_size;
};

struct vcpu {
	int fd;
	struct kvm_run *run;
};

/* Open @dev and create a VM; false (with a TAP diagnostic) on failure. */
bool vm_create(struct vm *vm, const char *dev);
void vm_destroy(struct vm *vm);
/* Anonymous shared memory as slot @slot at @gpa; NULL on failure. */
void *vm_add_memory(struct vm *vm, uint32_t slot, uint64_t gpa, size_t size);
/* KVM_SET_USER_MEMORY_REGION; its result (0 or -1 with errno). */
int vm_set_slot(struct vm *vm, uint32_t slot, uint64_t gpa, uint64_t size,
		void *mem, uint32_t flags);
bool vcpu_create(struct vm *vm, struct vcpu *vcpu, int id);
void vcpu_destroy(struct vm *vm, struct vcpu *vcpu);
/* Give the vCPU everything KVM_GET_SUPPORTED_CPUID offers. */
bool vcpu_set_supported_cpuid(struct vm *vm, struct vcpu *vcpu);
/* KVM_RUN; returns its result (0 or -1 with errno). */
int vcpu_run(struct vcpu *vcpu);
const char *exit_name(uint32_t reason);
/*
 * "" or, for the internal error vireo-svm gives when the CPU stored the
 * host's state over the guest's (an emulator's fault, see
 * Documentation/testing.rst), a note saying so.
 */
const char *lost_state_note(const struct kvm_run *run);

/* Register state for the modes the tests use. */
void vcpu_real_mode(struct vcpu *vcpu, uint64_t rip);
void vcpu_prot_mode(struct vcpu *vcpu, uint64_t rip, uint64_t cr0,
		    uint64_t cr3, uint64_t cr4);
void vcpu_long_mode(struct vcpu *vcpu, uint64_t rip, uint64_t cr3);

/*
 * Identity tables for the first 2 MiB and the 2 MiB at 0x10000000, with
 * their top level at guest-physical @base, inside the slot whose memory
 * is @slot at guest-physical @slot_gpa.
 */
void build_pse32_tables(uint8_t *slot, uint64_t slot_gpa, uint64_t base);
void build_pae_tables(uint8_t *slot, uint64_t slot_gpa, uint64_t base);
void build_long_tables(uint8_t *slot, uint64_t slot_gpa, uint64_t base);

/*
 * Expected exits: run the vCPU through a list, answering IN and MMIO
 * reads with the given values; returns the number that matched, and
 * prints a diagnostic for the first one that did not.
 */
enum expect_kind { X_OUT, X_IN, X_MMIO_W, X_MMIO_R, X_HLT };

struct expect {
	enum expect_kind kind;
	uint64_t where;		/* port or physical address */
	uint32_t size;
	uint64_t value;		/* what the guest writes or gets */
};

int run_expect(struct vcpu *vcpu, const struct expect *x, int n);

#endif
