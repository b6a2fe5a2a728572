/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * x86 helpers for the vCPU-state selftests, on top of lib/guest.h.
 *
 * x86_guest_create() builds a long-mode C guest (guest_vm_create()) and
 * gives it a GDT with a 64-bit TSS and a full IDT: every vector enters a
 * stub of guest_x86.S on an IST stack (so the red zone of the
 * interrupted C code survives), which saves the general registers in a
 * struct x86_regs and calls x86_guest_isr().  That logs the vector in
 * x86_log, calls the handler the test installed for it, and iretq's
 * back; an exception (0-31 but NMI) without a handler is reported as a
 * failed assertion (arg = vector, line = faulting RIP).
 *
 * Guest memory is the test binary's own image, so the host reads
 * x86_log and installs handlers by plain memory accesses between runs.
 */
#ifndef VIREO_SELFTEST_X86_H
#define VIREO_SELFTEST_X86_H

#include <stdint.h>

#include "guest.h"
#include "vm.h"

#define MSR_IA32_TSC		0x00000010
#define MSR_IA32_SYSENTER_CS	0x00000174
#define MSR_IA32_SYSENTER_ESP	0x00000175
#define MSR_IA32_SYSENTER_EIP	0x00000176
#define MSR_IA32_MISC_ENABLE	0x000001a0
#define MSR_IA32_CR_PAT		0x00000277
#define MSR_EFER		0xc0000080
#define MSR_STAR		0xc0000081
#define MSR_LSTAR		0xc0000082
#define MSR_CSTAR		0xc0000083
#define MSR_SYSCALL_MASK	0xc0000084
#define MSR_FS_BASE		0xc0000100
#define MSR_GS_BASE		0xc0000101
#define MSR_KERNEL_GS_BASE	0xc0000102
#define MSR_TSC_AUX		0xc0000103
#define MSR_KVM_WALL_CLOCK_NEW	0x4b564d00
#define MSR_KVM_SYSTEM_TIME_NEW	0x4b564d01

#define X86_CR4_OSFXSR		0x200UL
#define X86_CR4_OSXMMEXCPT	0x400UL
#define X86_CR4_OSXSAVE		0x40000UL

#define XFEATURE_X87		0x1ULL
#define XFEATURE_SSE		0x2ULL
#define XFEATURE_AVX		0x4ULL

/* Offsets in the standard (non-compacted) XSAVE area of struct kvm_xsave */
#define XSAVE_FCW		0
#define XSAVE_MXCSR		24
#define XSAVE_XMM		160
#define XSAVE_XSTATE_BV		512
#define XSAVE_YMM_HI		576	/* CPUID 0xd.2 EBX on every CPU */

/* What the ISR stubs push: the order of guest_x86.S's isr_common */
struct x86_regs {
	uint64_t rax, rcx, rdx, rbx, rbp, rsi, rdi;
	uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
	uint64_t vector, error_code;
	uint64_t rip, cs, rflags, rsp, ss;
};

typedef void (*x86_handler_t)(struct x86_regs *regs);

#define X86_LOG_SEQ	64

/* Every vector the guest took, written by the guest's ISR */
struct x86_log {
	uint32_t count[256];
	uint32_t n;			/* vectors taken in all */
	uint8_t seq[X86_LOG_SEQ];	/* the first X86_LOG_SEQ, in order */
	uint64_t last_vector, last_error, last_rip, last_rflags;
};

extern volatile struct x86_log x86_log;
/* The guest calls x86_handlers[vector] (guest code) for that vector */
extern x86_handler_t volatile x86_handlers[256];

/*
 * guest_vm_create() plus the GDT, TSS and IDT above; clears x86_log and
 * the handlers.  Interrupts start disabled (RFLAGS.IF = 0).
 */
bool x86_guest_create(struct guest_vm *g, const char *dev,
		      void (*fn)(uint64_t), uint64_t arg);
/* Load the GDT, TSS and IDT into a vCPU of a VM built some other way. */
bool x86_vcpu_load_tables(struct vcpu *vcpu);
/* Map the test binary's image into @vm as slot 0, as guest_vm_create(). */
bool x86_vm_map_image(struct vm *vm);
/* Clear x86_log. */
void x86_log_reset(void);
/*
 * KVM_RUN with immediate_exit: completes an I/O exit (RIP moves past the
 * OUT) without running the guest, as api.rst asks before saving state.
 */
bool x86_vcpu_complete_io(struct vcpu *vcpu);
/* An entry of KVM_GET_SUPPORTED_CPUID on the device fd; false if none. */
bool x86_supported_cpuid(int kvm, uint32_t leaf, uint32_t sub,
			 struct kvm_cpuid_entry2 *out);
/* One MSR through KVM_GET_MSRS/KVM_SET_MSRS; false on failure. */
bool x86_get_msr(struct vcpu *vcpu, uint32_t index, uint64_t *value);
bool x86_set_msr(struct vcpu *vcpu, uint32_t index, uint64_t value);
/*
 * Whether the test host is QEMU's TCG (CPUID 0x40000000 "TCGTCGTCGTCG"),
 * whose nested virtualization lacks a few intercepts: tests skip what
 * they see failing for that reason there.
 */
bool x86_host_is_tcg(void);
/* Whether this CPU and its OS let the host use AVX (CPUID and XCR0). */
bool x86_host_has_avx(void);

/* Called by guest_x86.S's ISR stubs, in the guest */
void x86_guest_isr(struct x86_regs *regs);

/*
 * Guest side: set CR4.OSFXSR/OSXMMEXCPT, and if @xcr0 is not zero
 * CR4.OSXSAVE and XCR0; returns what XGETBV reads right after the
 * XSETBV (0 without XSAVE).
 */
uint64_t x86_guest_enable_fpu(uint64_t xcr0);

/* guest_x86.S: vector registers, for guest and host alike */
void xmm_load(const void *src);		/* xmm0-15 from 256 bytes */
void xmm_store(void *dst);
void ymm_load(const void *src);		/* ymm0-15 from 512 bytes */
void ymm_store(void *dst);
/* Host threads: load from @src, sched_yield(), store to @dst */
void xmm_cycle(const void *src, void *dst);
void ymm_cycle(const void *src, void *dst);

/* Usable from guest code (general registers only) and host code alike */
#define GUEST_REGS	__attribute__((target("general-regs-only")))

static inline GUEST_REGS uint64_t rdmsr(uint32_t index)
{
	uint32_t lo, hi;

	asm volatile("rdmsr" : "=a" (lo), "=d" (hi) : "c" (index));
	return (uint64_t)hi << 32 | lo;
}

static inline GUEST_REGS void wrmsr(uint32_t index, uint64_t value)
{
	asm volatile("wrmsr"
		     : : "c" (index), "a" ((uint32_t)value),
		       "d" ((uint32_t)(value >> 32))
		     : "memory");
}

static inline GUEST_REGS uint64_t rdtsc(void)
{
	uint32_t lo, hi;

	asm volatile("rdtsc" : "=a" (lo), "=d" (hi));
	return (uint64_t)hi << 32 | lo;
}

static inline GUEST_REGS void sti(void)
{
	asm volatile("sti" : : : "memory");
}

static inline GUEST_REGS void cli(void)
{
	asm volatile("cli" : : : "memory");
}

static inline GUEST_REGS uint64_t read_rflags(void)
{
	uint64_t f;

	asm volatile("pushfq; popq %0" : "=r" (f));
	return f;
}

#define read_dr(n) ({							\
	uint64_t __v;							\
	asm volatile("mov %%dr" #n ", %0" : "=r" (__v));		\
	__v;								\
})

#define write_dr(n, v) ({						\
	asm volatile("mov %0, %%dr" #n : : "r" ((uint64_t)(v)) : "memory"); \
})

#endif
