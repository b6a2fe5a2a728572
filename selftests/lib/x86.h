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

#include <pthread.h>
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

/*
 * VMs built in steps, for what must exist before the vCPUs
 * (KVM_CREATE_IRQCHIP) and for several vCPUs.  x86_vm_create() creates
 * the VM, maps the test binary's image (slot 0), builds the IDT of
 * x86_guest_create() and clears x86_log and the handlers.
 * x86_vcpu_add() creates vCPU @id (below X86_MAX_VCPUS) with the
 * supported CPUID and, unless @fn is NULL, starts it in 64-bit long mode
 * at @fn(@arg) with interrupts off, on a stack and a TSS (IST stacks)
 * of its own.  The vCPUs share the GDT (vCPU i's TSS at X86_TSS_SEL(i)),
 * the IDT and identity page tables of the first 4 GiB.  x86_log is not
 * updated atomically: with several vCPUs taking interrupts at once its
 * counts are approximate.
 */
#define X86_MAX_VCPUS		4
#define X86_TSS_SEL(id)		(0x18 + 16 * (id))

bool x86_vm_create(struct vm *vm, const char *dev);
bool x86_vcpu_add(struct vm *vm, struct vcpu *vcpu, int id,
		  void (*fn)(uint64_t), uint64_t arg);
/*
 * Guest side, for a vCPU that got to long mode by itself (an AP after
 * INIT-SIPI, with the CR3 and GDT of one x86_vcpu_add() started): load
 * the shared GDT and IDT and the TSS of vCPU @id (below X86_MAX_VCPUS).
 */
void x86_guest_load_tables(uint32_t id);

/*
 * A vCPU run on a thread of its own, so that the host can act while the
 * vCPU sits in KVM_RUN (halted in the kernel, say).  The thread calls
 * KVM_RUN until the guest's GUEST_DONE or GUEST_ASSERT, or any exit to
 * userspace other than a ucall (left in vcpu->run for the caller), or
 * KVM_RUN fails; it goes on after a GUEST_SYNC unless stop_on_sync, and
 * after EINTR or EAGAIN unless stop_on_intr.  x86_runner_wait() gives it
 * @ms milliseconds; then it kicks the vCPU out (immediate_exit and
 * SIGUSR1) and returns false.  Zero the struct before its first start:
 * the counts add up over starts.
 */
struct x86_runner {
	struct vcpu *vcpu;
	bool stop_on_sync, stop_on_intr;
	/* how it ended */
	enum ucall_cmd cmd;		/* UCALL_NONE: an exit, or an error */
	struct ucall uc;
	int ret, err;			/* the last KVM_RUN and its errno */
	uint32_t exit_reason;
	/* what it saw on the way */
	unsigned int runs, syncs, eintr, eagain, hlt_exits;
	uint64_t last_sync;
	/* private */
	pthread_t thread;
	volatile bool done, stop, started;
};

void x86_runner_start(struct x86_runner *r, struct vcpu *vcpu);
bool x86_runner_wait(struct x86_runner *r, unsigned int ms);
/* Whether the thread has finished (without waiting for it). */
bool x86_runner_done(struct x86_runner *r);
/* Interrupt KVM_RUN of the thread once with SIGUSR1 (no immediate_exit). */
void x86_runner_signal(struct x86_runner *r);
/* Explain in a TAP diagnostic how a runner ended. */
void x86_runner_diag(const struct x86_runner *r, const char *who);
/* Milliseconds of CLOCK_MONOTONIC; poll @flag until nonzero, up to @ms. */
uint64_t x86_now_ms(void);
bool x86_wait_flag(volatile uint32_t *flag, uint32_t want, unsigned int ms);

/* The xAPIC at its default base, through MMIO, and the IOAPIC */
#define XAPIC_BASE		0xfee00000UL
#define IOAPIC_BASE		0xfec00000UL
#define APIC_ID			0x20
#define APIC_TPR		0x80
#define APIC_PPR		0xa0
#define APIC_EOI		0xb0
#define APIC_LDR		0xd0
#define APIC_DFR		0xe0
#define APIC_SPIV		0xf0
#define APIC_ICR		0x300
#define APIC_ICR2		0x310
#define APIC_LVTT		0x320
#define APIC_LVT0		0x350
#define APIC_LVT1		0x360
#define APIC_TMICT		0x380
#define APIC_TMCCT		0x390
#define APIC_TDCR		0x3e0
#define APIC_SPIV_ENABLE	0x100
#define APIC_LVT_MASKED		0x10000
#define APIC_TIMER_PERIODIC	0x20000
#define APIC_TIMER_TSC_DEADLINE	0x40000
#define APIC_ICR_INIT		0x500
#define APIC_ICR_SIPI		0x600
#define APIC_ICR_LOGICAL	0x800
#define APIC_ICR_ASSERT		0x4000
#define APIC_ICR_LEVEL		0x8000
#define APIC_ICR_ALL_BUT_SELF	0xc0000
#define IOAPIC_REDIR_LEVEL	0x8000
#define IOAPIC_REDIR_MASKED	0x10000
#define MSR_IA32_TSC_DEADLINE	0x000006e0

static inline GUEST_REGS uint32_t xapic_read(uint32_t reg)
{
	return *(volatile uint32_t *)(XAPIC_BASE + reg);
}

static inline GUEST_REGS void xapic_write(uint32_t reg, uint32_t value)
{
	*(volatile uint32_t *)(XAPIC_BASE + reg) = value;
}

/* A fixed IPI to the APIC of physical ID @dest */
static inline GUEST_REGS void xapic_send_ipi(uint32_t dest, uint32_t vector)
{
	xapic_write(APIC_ICR2, dest << 24);
	xapic_write(APIC_ICR, vector);
}

/* IOAPIC register @index through IOREGSEL (+0) and IOWIN (+0x10) */
static inline GUEST_REGS void ioapic_write(uint32_t index, uint32_t value)
{
	*(volatile uint32_t *)IOAPIC_BASE = index;
	*(volatile uint32_t *)(IOAPIC_BASE + 0x10) = value;
}

static inline GUEST_REGS uint32_t ioapic_read(uint32_t index)
{
	*(volatile uint32_t *)IOAPIC_BASE = index;
	return *(volatile uint32_t *)(IOAPIC_BASE + 0x10);
}

/* Redirection entry of IOAPIC pin @pin: @low with APIC ID @dest */
static inline GUEST_REGS void ioapic_route(int pin, uint32_t low, uint32_t dest)
{
	ioapic_write(0x11 + 2 * pin, dest << 24);
	ioapic_write(0x10 + 2 * pin, low);
}

static inline GUEST_REGS void outb(uint16_t port, uint8_t value)
{
	/* the operand (AL) gives the size */
	asm volatile("out %0, %1" : : "a" (value), "Nd" (port) : "memory");
}

static inline GUEST_REGS void outw(uint16_t port, uint16_t value)
{
	/* the operand (AX) gives the size */
	asm volatile("out %0, %1" : : "a" (value), "Nd" (port) : "memory");
}

/*
 * With interrupts off: enable them and halt, and turn them off again
 * once an interrupt has been taken.  The STI shadow keeps an interrupt
 * from arriving between the STI and the HLT, so a loop of
 * "while (!cond) x86_safe_halt();" under CLI never sleeps through the
 * interrupt that makes cond true.
 */
static inline GUEST_REGS void x86_safe_halt(void)
{
	asm volatile("sti; hlt; cli" : : : "memory");
}

#endif
