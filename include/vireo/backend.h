/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The contract between vireo.ko and a vendor backend (vireo-vmx.ko,
 * vireo-svm.ko).  The core never touches VMX or SVM itself: everything
 * vendor specific goes through this table.
 *
 * State ownership.  General purpose registers, RIP and RFLAGS live in
 * struct vireo_vcpu (vcpu->regs, vcpu->rip, vcpu->rflags): the backend
 * loads them into the VMCS/VMCB (or the entry code) before every entry
 * and stores them back after every exit, so the core can read and change
 * them freely between runs.  Everything else (segments, control
 * registers, EFER, descriptor tables, pending events) stays in the
 * VMCS/VMCB and is reached through get_sregs()/set_sregs().
 *
 * Calling context.  The core serialises every vCPU ioctl on vcpu->mutex
 * and brackets it with vcpu_load()/vcpu_put(), re-issued on preemption
 * through a preempt notifier: every per-vCPU op below runs with the vCPU
 * loaded on the current CPU.  vcpu_run() runs with interrupts off.
 */
#ifndef _VIREO_BACKEND_H
#define _VIREO_BACKEND_H

#include <linux/kvm.h>
#include <linux/module.h>
#include <linux/types.h>
#include <linux/vireo.h>

struct vireo_vm;
struct vireo_vcpu;

/* What a guest did that the core must handle, after vcpu_run(). */
enum vireo_exit_reason {
	VIREO_EXIT_NONE,	/* handled in the backend: enter again */
	VIREO_EXIT_IO,		/* IN/OUT/INS/OUTS: exit.io */
	VIREO_EXIT_TDP_FAULT,	/* EPT violation / NPF: exit.tdp */
	VIREO_EXIT_HLT,		/* HLT */
	VIREO_EXIT_CPUID,	/* CPUID: leaf in regs[RAX], subleaf in RCX */
	VIREO_EXIT_MSR_READ,	/* RDMSR: index in regs[RCX] */
	VIREO_EXIT_MSR_WRITE,	/* WRMSR: index RCX, value EDX:EAX */
	VIREO_EXIT_XSETBV,	/* XSETBV: XCR index RCX, value EDX:EAX */
	VIREO_EXIT_HYPERCALL,	/* VMCALL / VMMCALL */
	VIREO_EXIT_SHUTDOWN,	/* triple fault */
	VIREO_EXIT_IRQ_WINDOW,	/* the guest can take an interrupt now */
	VIREO_EXIT_DR_ACCESS,	/* MOV DR: hand the debug registers over */
	VIREO_EXIT_EXCEPTION,	/* an intercepted exception: exit.exc */
	VIREO_EXIT_FAIL_ENTRY,	/* entry refused: exit.fail_reason */
	VIREO_EXIT_BACKEND,	/* the backend's handle_exit() finishes it */
	VIREO_EXIT_UNHANDLED,	/* anything else: exit.raw */
};

/* Index of vcpu->regs[], in the hardware's register numbering. */
enum vireo_reg {
	VCPU_RAX, VCPU_RCX, VCPU_RDX, VCPU_RBX,
	VCPU_RSP, VCPU_RBP, VCPU_RSI, VCPU_RDI,
	VCPU_R8, VCPU_R9, VCPU_R10, VCPU_R11,
	VCPU_R12, VCPU_R13, VCPU_R14, VCPU_R15,
	VCPU_NR_REGS
};

struct vireo_exit {
	enum vireo_exit_reason reason;
	/*
	 * Length of the exiting instruction when the hardware told us
	 * (VMX exit instruction length, SVM next_rip - rip with NRIP save,
	 * EXITINFO2 for IOIO), else 0: the core then decodes it.
	 */
	u32 insn_len;
	union {
		struct {
			u16 port;
			u8 size;	/* 1, 2 or 4 */
			u8 in;		/* 1: IN/INS */
			u8 string;	/* INS/OUTS */
			u8 rep;		/* REP prefix */
		} io;
		struct {
			u64 gpa;
			u8 write;	/* the access was a write */
			u8 fetch;	/* an instruction fetch */
			/* the translation existed but forbade the access */
			u8 present;
			u8 mmio;	/* the core: no memslot there */
		} tdp;
		struct {
			u8 vector;
			u32 error_code;
			u64 dr6;	/* #DB: what caused it */
		} exc;
		/* VMX: exit reason with bit 31 set; SVM: VMEXIT_INVALID */
		u64 fail_reason;
		/* vendor exit code and qualification, for INTERNAL_ERROR */
		u64 raw[2];
	};
};

struct vireo_backend {
	/* "vmx" or "svm": shown in dmesg */
	const char *name;
	/* VIREO_BACKEND_VMX or VIREO_BACKEND_SVM (uapi/linux/vireo.h) */
	int id;
	/* the backend module, pinned while any VM uses it */
	struct module *owner;

	/*
	 * Turn virtualization on or off on the calling CPU.  Called with
	 * interrupts off, on every online CPU at registration, on each CPU
	 * that comes online or goes offline, and around suspend.  A backend
	 * that keeps per-CPU state tied to vCPUs (VMX: loaded VMCSs) must
	 * drop it in hardware_disable().
	 */
	int (*hardware_enable)(void);
	void (*hardware_disable)(void);
	/*
	 * Crash, kexec or emergency reboot: leave virtualization on this
	 * CPU at once.  NMI context, must not take locks.
	 */
	void (*emergency_disable)(void);

	/*
	 * Bytes the core allocates for struct vireo_vm / vireo_vcpu plus
	 * the backend's own state right behind them (container_of).
	 */
	size_t vm_size;
	size_t vcpu_size;

	/* VM lifetime: tags (ASID/VPID pools), anything per VM. */
	int (*vm_init)(struct vireo_vm *vm);
	void (*vm_destroy)(struct vireo_vm *vm);

	/*
	 * vCPU lifetime.  vcpu_create() allocates the VMCS/VMCB and puts
	 * the vCPU in the architectural reset state (real mode, CS.selector
	 * 0xf000, CS.base 0xffff0000, RIP 0xfff0, RFLAGS 2, EDX the CPU
	 * signature, CR0 0x60000010, everything else as after RESET/INIT).
	 * It runs with the vCPU not loaded; vcpu_free() likewise, and must
	 * make the VMCS inactive on whatever CPU it was last loaded on.
	 */
	int (*vcpu_create)(struct vireo_vcpu *vcpu);
	void (*vcpu_free)(struct vireo_vcpu *vcpu);
	/* Make the vCPU current on @cpu (this CPU), preemption off. */
	void (*vcpu_load)(struct vireo_vcpu *vcpu, int cpu);
	void (*vcpu_put)(struct vireo_vcpu *vcpu);

	/*
	 * Optional: work before an entry that may sleep or touch guest
	 * memory (VMX: PAE PDPTEs).  Interrupts on, vCPU loaded.
	 */
	int (*pre_entry)(struct vireo_vcpu *vcpu);

	/*
	 * Enter the guest once and come back with *exit filled in.
	 * Interrupts are off; the guest FPU is loaded.  The backend
	 * restores every piece of host state the exit leaves clobbered
	 * before it returns.  It handles what is purely its own business
	 * (external interrupts, NMIs, its own intercepts) and returns
	 * VIREO_EXIT_NONE for those.  RIP is not advanced past the exiting
	 * instruction: the core does that (vcpu->rip += len).
	 */
	void (*vcpu_run)(struct vireo_vcpu *vcpu, struct vireo_exit *exit);
	/*
	 * Finish a VIREO_EXIT_BACKEND exit: interrupts on, the vCPU loaded,
	 * so it may read guest memory (and sleep).  Sets exit->reason to
	 * VIREO_EXIT_UNHANDLED (exit->raw telling) when it cannot.
	 */
	void (*handle_exit)(struct vireo_vcpu *vcpu, struct vireo_exit *exit);

	/* KVM_GET/SET_SREGS: segments, CRs, EFER, APIC base, tables. */
	void (*get_sregs)(struct vireo_vcpu *vcpu, struct kvm_sregs *sregs);
	/*
	 * Refuse (-EINVAL) what the hardware cannot take; the core already
	 * checked the architectural rules it knows.
	 */
	int (*set_sregs)(struct vireo_vcpu *vcpu,
			 const struct kvm_sregs *sregs);

	/*
	 * MSRs held in the VMCS/VMCB or switched by the backend (EFER,
	 * FS/GS base, KERNEL_GS_BASE, STAR/LSTAR/CSTAR/SFMASK, SYSENTER_*,
	 * PAT, DEBUGCTL).  0: done; 1: not the backend's; -EINVAL: the
	 * value (or, for the guest, the access) is refused: #GP.  @host:
	 * the VMM is asking (KVM_GET/SET_MSRS), not the guest.
	 */
	int (*get_msr)(struct vireo_vcpu *vcpu, u32 index, u64 *data);
	int (*set_msr)(struct vireo_vcpu *vcpu, u32 index, u64 data,
		       bool host);

	/*
	 * Events.  The core decides what to deliver (vcpu->ev.inject, see
	 * vireo.h); vcpu_run() hands vcpu->ev.inject to the hardware and
	 * clears it, and after the exit puts back an event whose delivery
	 * the exit interrupted.  It also opens an interrupt window (an
	 * exit as soon as the guest can take an interrupt) while
	 * vcpu->ev.irq_window is set, and an NMI window likewise.
	 */
	u32 (*get_interrupt_shadow)(struct vireo_vcpu *vcpu);
	/*
	 * The guest's TPR as CR8 (kvm_run.cr8 after every exit).  With the
	 * in-kernel APIC the core sets it before each entry (interrupts
	 * off) and takes back what the guest wrote after the exit.
	 */
	u64 (*get_cr8)(struct vireo_vcpu *vcpu);
	void (*set_cr8)(struct vireo_vcpu *vcpu, u64 cr8);
	void (*set_interrupt_shadow)(struct vireo_vcpu *vcpu, u32 shadow);
	bool (*get_nmi_mask)(struct vireo_vcpu *vcpu);
	void (*set_nmi_mask)(struct vireo_vcpu *vcpu, bool masked);
	/* An NMI can be injected now (not blocked by NMI or MOV SS). */
	bool (*nmi_allowed)(struct vireo_vcpu *vcpu);

	/*
	 * Nested paging.  The core's TDP MMU (arch/x86/tdp.c) builds
	 * 4-level tables; the backend says how an entry looks.
	 * tdp_entry(): a present entry pointing at host physical @hpa;
	 * @leaf is a 4 KiB mapping with @writable/@executable rights,
	 * otherwise a pointer to the next table level (all rights).
	 */
	u64 (*tdp_entry)(u64 hpa, bool leaf, bool writable, bool executable);
	/* Start using the table whose top level is at @root_hpa. */
	void (*set_tdp_root)(struct vireo_vm *vm, u64 root_hpa);
	/*
	 * Forget cached translations of this VM on this CPU (called with
	 * the vCPU loaded, interrupts off, before entry).
	 */
	void (*flush_tlb)(struct vireo_vcpu *vcpu);
};

/* MSRs the core switches lazily for a backend: vireo_uret_set() */
enum {
	VIREO_URET_TSC_AUX,
	VIREO_URET_STAR,
	VIREO_URET_LSTAR,
	VIREO_URET_CSTAR,
	VIREO_URET_SFMASK,
	VIREO_URET_NR
};

/* Services of the core for the backends. */
void vireo_uret_set(unsigned int slot, u64 val);
void vireo_queue_exception(struct vireo_vcpu *vcpu, u8 vector,
			   bool has_error, u32 error_code);
u64 vireo_guest_tsc(struct vireo_vcpu *vcpu);
bool vireo_cr4_valid(struct vireo_vcpu *vcpu, u64 cr4);

/* A decoded MOV to or from a control register */
struct vireo_mov_cr {
	bool to_cr;
	u8 cr, gpr;		/* 0-15 each */
	u8 len;
};

int vireo_decode_mov_cr(struct vireo_vcpu *vcpu, struct vireo_mov_cr *m);

int vireo_register_backend(const struct vireo_backend *backend);
void vireo_unregister_backend(const struct vireo_backend *backend);
/*
 * vireo_register_backend() refuses with -EBUSY when another hypervisor
 * (Debian's kvm-intel or kvm-amd) is loaded or a backend is registered
 * already, and with the error of hardware_enable() when a CPU fails.
 */

#endif /* _VIREO_BACKEND_H */
