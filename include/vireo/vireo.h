/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * VMs and vCPUs as the core keeps them.  Backends embed these at the
 * start of their own structures (vm_size/vcpu_size in the backend ops)
 * and reach their part with container_of().
 */
#ifndef _VIREO_VIREO_H
#define _VIREO_VIREO_H

#include <linux/kvm.h>
#include <linux/mmu_notifier.h>
#include <linux/mutex.h>
#include <linux/preempt.h>
#include <linux/refcount.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/wait.h>
#include <asm/fpu/api.h>
#include <asm/fpu/types.h>

#include <vireo/backend.h>

#define VIREO_MAX_VCPUS		64
#define VIREO_MAX_VCPU_ID	VIREO_MAX_VCPUS
#define VIREO_NR_MEMSLOTS	509
/* KVM_MEM_MAX_NR_PAGES: a slot's size in pages fits 31 bits */
#define VIREO_MAX_SLOT_PAGES	((1ULL << 31) - 1)

struct vireo_memslot {
	u64 base_gfn;
	u64 npages;		/* 0: the slot is unused */
	u64 userspace_addr;
	u32 flags;		/* KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY */
	/* one bit per page written since the log was last read */
	unsigned long *dirty_bitmap;
};

/* Nested page tables of one VM (arch/x86/tdp.c). */
struct vireo_tdp {
	struct page *root;
	/* every table page, for teardown */
	struct list_head pages;
	unsigned long nr_pages;
	/* 2 MiB mappings in the tables now */
	unsigned long nr_huge;
	/* zeroed table pages allocated ahead, for use under mmu_lock */
	struct page *cache[4];
	int cache_n;
};

struct vireo_irqchip;
struct vireo_eventfds;
struct vireo_lapic;

struct vireo_vm {
	const struct vireo_backend *backend;
	struct mm_struct *mm;		/* the VMM's, held by mmgrab() */
	refcount_t refcount;		/* the VM fd and each vCPU fd */

	/*
	 * Serialises vCPU creation, memslot changes and the nested page
	 * tables.  A vCPU takes it to handle a nested page fault, never
	 * with interrupts off.
	 */
	struct mutex lock;

	/*
	 * The nested page tables and what they are built from: the
	 * memslots (changed under both locks), mmu_seq.  Our MMU notifier
	 * takes it, also where it may not sleep (the OOM reaper): a
	 * spinlock, and nothing under it allocates memory, sleeps or
	 * touches the VMM's memory.
	 */
	spinlock_t mmu_lock;
	/*
	 * The VMM's address space changing under the guest (tdp.c): a
	 * count of changes (mmu_lock) and the ones under way.
	 */
	struct mmu_notifier mmu_notifier;
	unsigned long mmu_seq;
	atomic_t mmu_invalidating;
	struct vireo_vcpu *vcpus[VIREO_MAX_VCPUS];
	int nr_vcpus;
	struct vireo_memslot slots[VIREO_NR_MEMSLOTS];
	int nr_slots;			/* slots in use */
	/* their ids, so that lookups walk only those (MMIO misses them all) */
	u16 slot_ids[VIREO_NR_MEMSLOTS];
	int last_slot;			/* where the last lookup hit */
	/* KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 enabled: reading keeps bits */
	bool manual_dirty_protect;
	struct vireo_tdp tdp;

	u64 tss_addr;
	u64 identity_map_addr;

	/*
	 * The kvmclock of every vCPU is one function of the host TSC:
	 * ns = kvmclock_ns + scaled(host TSC - kvmclock_tsc).
	 */
	u64 kvmclock_tsc;
	u64 kvmclock_ns;
	u64 tsc_offset;		/* of new vCPUs: guest TSCs start at 0 */
	/* the VMM's last write of a TSC, to match the next vCPU's (msr.c) */
	spinlock_t tsc_lock;
	u64 tsc_write_data, tsc_write_offset, tsc_write_ns;

	/*
	 * The in-kernel irqchip (include/vireo/irq.h): NULL until
	 * KVM_CREATE_IRQCHIP, then set once (smp_store_release).
	 */
	struct vireo_irqchip *irqchip;
	/* irqfds and ioeventfds (virt/eventfd.c) */
	struct vireo_eventfds *eventfds;
};

/* The VM has the in-kernel irqchip (KVM_CREATE_IRQCHIP done). */
static inline bool vireo_irqchip_in_kernel(struct vireo_vm *vm)
{
	/* pairs with the release that publishes it in KVM_CREATE_IRQCHIP */
	return !!smp_load_acquire(&vm->irqchip);
}

/* vcpu->mode */
enum {
	VCPU_OUTSIDE_GUEST,
	VCPU_IN_GUEST,
};

/* vcpu->requests bits: work to do before the next entry */
enum {
	VCPU_REQ_TLB_FLUSH,
};

/* A KVM_RUN exit the next KVM_RUN must finish before entering. */
/* Event types, as the core queues them for injection. */
enum vireo_event_type {
	VIREO_EV_INTR,		/* external interrupt */
	VIREO_EV_NMI,
	VIREO_EV_EXCEPTION,	/* hardware exception */
	VIREO_EV_SOFT_INTR,	/* INT n */
	VIREO_EV_SOFT_EXCEPTION,/* INT3, INTO */
	VIREO_EV_PRIV_SOFT,	/* INT1 (ICEBP) */
};

struct vireo_event {
	bool valid;
	u8 type;		/* enum vireo_event_type */
	u8 vector;
	bool has_error;
	u32 error_code;
	u32 insn_len;		/* software events: the instruction's length */
};

/* The MSRs a guest's OS needs that the core keeps (arch/x86/msr.c). */
#define VIREO_MTRR_VAR		8
#define VIREO_MTRR_FIXED	11

/* Machine-check banks a vCPU may have (KVM_CAP_MCE) */
#define VIREO_MCE_BANKS		32

/* Machine-check state (KVM_X86_SETUP_MCE), kept across INIT */
struct vireo_mce {
	u64 cap;		/* MCG_CAP; 0 until the VMM sets it up */
	u64 ctl;		/* MCG_CTL */
	u64 banks[4 * VIREO_MCE_BANKS];	/* MCi_CTL, _STATUS, _ADDR, _MISC */
};

struct vireo_msrs {
	u64 apic_base;
	u64 tsc_offset;		/* guest TSC = host TSC + tsc_offset */
	u64 tsc_adjust;		/* IA32_TSC_ADJUST */
	u64 tsc_aux;
	u64 tsc_deadline;
	u64 misc_enable;
	u64 spec_ctrl;
	u64 mcg_status;
	u64 ucode_rev;
	u64 feat_ctl;
	u64 hwcr;
	u64 de_cfg;
	u64 mtrr_def_type;
	u64 mtrr_fixed[VIREO_MTRR_FIXED];
	u64 mtrr_var[2 * VIREO_MTRR_VAR];	/* base, mask pairs */
	u64 kvmclock_system_time;	/* MSR_KVM_SYSTEM_TIME(_NEW) */
	u64 kvmclock_wall_clock;
	bool kvmclock_update;		/* rewrite the guest's pvclock */
};

enum vireo_pending {
	VCPU_PENDING_NONE,
	VCPU_PENDING_PIO_IN,	/* copy pio data into RAX or memory */
	VCPU_PENDING_PIO_OUT,	/* advance past the OUT/OUTS */
	VCPU_PENDING_MMIO_READ,	/* run the instruction again with the data */
	VCPU_PENDING_MMIO_WRITE,/* the next piece, or the rest of a REP */
};

/* A piece of an MMIO access, at most 8 bytes within one page. */
struct vireo_mmio_frag {
	u64 gpa;
	u8 len;
	u8 data[8];
};

/* Pieces of one instruction's (one REP iteration's) reads or write */
#define VIREO_MMIO_FRAGS	4

struct vireo_vcpu {
	struct vireo_vm *vm;
	int id;			/* KVM vcpu id */
	int index;		/* in vm->vcpus[] */

	/* Serialises the vCPU's ioctls. */
	struct mutex mutex;
	struct kvm_run *run;	/* page 0 of the vCPU mmap */
	void *pio_data;		/* page KVM_PIO_PAGE_OFFSET of the mmap */

	/* Guest registers outside the VMCS/VMCB: see backend.h. */
	u64 regs[VCPU_NR_REGS];
	u64 rip;
	u64 rflags;

	/* the CPU the vCPU is loaded on, -1 when not loaded */
	int cpu;
	/* the CPU it last ran on (for flushes after migration) */
	int last_cpu;
	int mode;		/* VCPU_OUTSIDE_GUEST / VCPU_IN_GUEST */
	unsigned long requests;
	struct preempt_notifier preempt_notifier;
	struct fpu_guest guest_fpu;

	/* What the last exit to userspace left to finish. */
	enum vireo_pending pending;
	struct {
		u8 size;	/* access size in bytes */
		u32 insn_len;	/* to add to RIP when done */
		u32 count;	/* string I/O: elements transferred */
		u64 gva;	/* string INS: where the data goes */
		u8 addr_size;	/* string I/O: 2, 4 or 8 */
		u8 rep;		/* string I/O with a REP prefix */
	} pend;

	/* The instruction the emulator runs against MMIO: arch/x86/mmio.c */
	struct {
		/* reads the VMM answered, replayed in order */
		struct vireo_mmio_frag rd[VIREO_MMIO_FRAGS];
		u8 nr_rd, used_rd;
		bool ask_read;		/* rd[nr_rd] goes to the VMM */
		/* writes for the VMM, in order */
		struct vireo_mmio_frag wr[VIREO_MMIO_FRAGS];
		u8 nr_wr, next_wr;
		bool again;		/* not finished: run it again after */
		u32 iteration;		/* of a REP, that rd[] belongs to */
	} mmio;

	struct vireo_exit exit;

	struct vireo_msrs msr;
	struct vireo_mce mce;
	u64 vapic_addr;		/* KVM_SET_VAPIC_ADDR, unused */
	u64 xcr0;
	u32 mp_state;		/* KVM_MP_STATE_* */

	/* Events waiting for the guest (arch/x86/x86.c) */
	struct {
		struct vireo_event inject;	/* delivered on the next entry */
		bool irq_queued;		/* KVM_INTERRUPT, not yet in */
		u8 irq_vector;
		bool nmi_pending;		/* KVM_NMI */
		bool irq_window;		/* ask for an interrupt window */
		bool nmi_window;
		/*
		 * An APIC interrupt of this priority class waits only for
		 * the guest to lower its TPR (CR8) below it: a backend
		 * whose CR8 writes do not exit must make them (0: none).
		 */
		u8 tpr_window;
	} ev;

	/*
	 * Debug registers.  The guest's own live here while it does not
	 * touch them; after its first MOV DR they are handed over to it
	 * (loaded before entry, saved after exit) until the next exit.
	 */
	struct {
		u64 db[4], dr6, dr7;
		bool guest_owns;	/* loaded for this entry */
		u32 guest_debug;	/* KVM_SET_GUEST_DEBUG control */
		u64 debug_db[4], debug_dr7;
		bool set_tf;		/* single-step set RFLAGS.TF */
		/* what the backend must use on this entry */
		u64 eff_dr7;
		bool intercept_db, intercept_bp;
	} dbg;

	/* The in-kernel local APIC (arch/x86/lapic.c), with the irqchip */
	struct vireo_lapic *apic;
	/* HLT and wait-for-SIPI sleep here; vireo_vcpu_kick() wakes */
	wait_queue_head_t wq;
	/* NMIs delivered by the APICs, not yet taken by the run loop */
	atomic_t nmi_queued;

	/* KVM_SET_CPUID2's table (arch/x86/cpuid.c) */
	struct kvm_cpuid_entry2 *cpuid;
	int cpuid_nent;
	/* KVM_RUN was called: CPUID is frozen from now on */
	bool has_run;
};

#endif /* _VIREO_VIREO_H */
