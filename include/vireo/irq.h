/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The in-kernel interrupt controllers, timers and eventfds, and the
 * contract between their pieces:
 *
 *   arch/x86/lapic.c   a local APIC per vCPU (xAPIC MMIO, x2APIC MSRs,
 *                      timer, IPIs, INIT/SIPI) and interrupt delivery
 *   arch/x86/ioapic.c  the IOAPIC (24 pins)
 *   arch/x86/pic.c     the two 8259s
 *   arch/x86/pit.c     the 8254 and the speaker port
 *   arch/x86/irq.c     KVM_CREATE_IRQCHIP, GSI routing, IRQ lines, MSIs,
 *                      the VM ioctls of all of the above
 *   virt/eventfd.c     irqfds (with resample) and ioeventfds
 *
 * Context rules.  Everything that raises an interrupt (vireo_irq_set(),
 * vireo_msi_deliver(), vireo_apic_deliver(), the PIT's timer, an irqfd)
 * may be called from any context, hard interrupts included: the state
 * it touches is guarded by spinlocks taken with spin_lock_irqsave().  No
 * piece holds its own lock while it calls into another piece (a LAPIC
 * sending an IPI, an IOAPIC delivering, a PIC telling the BSP, an EOI
 * reaching the IOAPIC): that is what keeps two vCPUs that IPI each other
 * from deadlocking.  A piece that makes an interrupt pending for a vCPU
 * calls vireo_vcpu_kick() on it afterwards.
 *
 * The vCPU's own side (register accesses, acknowledging an interrupt,
 * EOI, the TPR) runs in its thread, from the run loop or its ioctls.
 */
#ifndef _VIREO_IRQ_H
#define _VIREO_IRQ_H

#include <linux/kvm.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/rcupdate.h>
#include <linux/spinlock.h>
#include <linux/types.h>

struct vireo_vm;
struct vireo_vcpu;
struct vireo_lapic;
struct vireo_ioapic;
struct vireo_pic;
struct vireo_pit;

#define VIREO_IOAPIC_PINS	24
#define VIREO_NR_GSIS		1024	/* GSIs 0-1023 (KVM_CAP_IRQ_ROUTING) */
#define VIREO_APIC_DEFAULT_BASE	0xfee00000ULL
#define VIREO_IOAPIC_BASE	0xfec00000ULL

/* APIC delivery modes (ICR bits 10:8, IOAPIC and MSI likewise) */
#define VIREO_DM_FIXED		0
#define VIREO_DM_LOWEST		1
#define VIREO_DM_SMI		2
#define VIREO_DM_NMI		4
#define VIREO_DM_INIT		5
#define VIREO_DM_SIPI		6
#define VIREO_DM_EXTINT		7

/* ICR destination shorthands (bits 19:18) */
#define VIREO_SH_NONE		0
#define VIREO_SH_SELF		1
#define VIREO_SH_ALL		2
#define VIREO_SH_OTHERS		3

/*
 * One interrupt message on its way to local APICs: an IPI, an IOAPIC
 * redirection entry firing, or an MSI.
 */
struct vireo_irq_msg {
	u32 dest;		/* APIC ID, or logical destination */
	u8 vector;
	u8 delivery_mode;	/* VIREO_DM_* */
	u8 shorthand;		/* VIREO_SH_* (IPIs only) */
	bool logical;		/* destination mode logical */
	bool level_trig;	/* trigger mode level */
	bool assert;		/* level: asserted (INIT level de-assert) */
	/* the sender, for shorthands; NULL for IOAPIC and MSI */
	struct vireo_vcpu *src;
};

/* ---- arch/x86/lapic.c ---- */

/*
 * Create the local APIC of a vCPU (vcpu->apic) in its reset state,
 * enabled at VIREO_APIC_DEFAULT_BASE, BSP flag on vCPU id 0.
 */
int vireo_lapic_create(struct vireo_vcpu *vcpu);
/* Stop its timer and free it (vcpu->apic becomes NULL). */
void vireo_lapic_free(struct vireo_vcpu *vcpu);
/* RESET (@init false) or INIT (@init true): registers as the SDM says. */
void vireo_lapic_reset(struct vireo_vcpu *vcpu, bool init);

/*
 * A guest access to guest-physical @gpa: true when it falls in this
 * vCPU's xAPIC page (APIC enabled, not x2APIC) and was handled.  @len is
 * 1, 2, 4 or 8; reads fill @data.
 */
bool vireo_lapic_mmio(struct vireo_vcpu *vcpu, u64 gpa, void *data,
		      int len, bool write);
/*
 * x2APIC MSRs 0x800-0x8ff and IA32_TSC_DEADLINE (0x6e0).  0: done,
 * 1: not an APIC MSR, -EINVAL: #GP for the guest (or refused, @host).
 */
int vireo_lapic_get_msr(struct vireo_vcpu *vcpu, u32 msr, u64 *data);
int vireo_lapic_set_msr(struct vireo_vcpu *vcpu, u32 msr, u64 data,
			bool host);
/* IA32_APIC_BASE: enable/disable, x2APIC mode, relocation. */
u64 vireo_lapic_get_base(struct vireo_vcpu *vcpu);
int vireo_lapic_set_base(struct vireo_vcpu *vcpu, u64 val, bool host);

/* TPR as bits 7:4 (CR8 << 4) */
u8 vireo_lapic_get_tpr(struct vireo_vcpu *vcpu);
void vireo_lapic_set_tpr(struct vireo_vcpu *vcpu, u8 tpr);

/*
 * The vector the APIC would hand the CPU now (highest IRR above PPR),
 * or -1.  vireo_lapic_ack(): the CPU takes it (IRR to ISR, PPR up).
 */
int vireo_lapic_pending_vector(struct vireo_vcpu *vcpu);
void vireo_lapic_ack(struct vireo_vcpu *vcpu, int vector);
/* vireo_lapic_pending_vector() >= 0 */
bool vireo_lapic_has_interrupt(struct vireo_vcpu *vcpu);
/*
 * The priority class (1-15) of the highest IRR vector that only the TPR
 * holds back, or 0: lowering the TPR below it lets it in.
 */
u8 vireo_lapic_tpr_window(struct vireo_vcpu *vcpu);
/*
 * The PIC's INTR reaches this vCPU: LINT0 unmasked in ExtINT mode, or
 * the APIC globally disabled (then LINT0 is the CPU's INTR pin).
 */
bool vireo_lapic_accepts_pic(struct vireo_vcpu *vcpu);

/*
 * INIT and SIPI received and not yet acted on.  take_init() returns
 * and clears a pending INIT; take_sipi() returns the vector of a
 * pending SIPI (0-255) and clears it, or -1.
 */
bool vireo_lapic_take_init(struct vireo_vcpu *vcpu);
int vireo_lapic_take_sipi(struct vireo_vcpu *vcpu);
bool vireo_lapic_init_pending(struct vireo_vcpu *vcpu);
bool vireo_lapic_sipi_pending(struct vireo_vcpu *vcpu);

/*
 * Deliver @msg to every local APIC it addresses (fixed, lowest priority
 * to one of them, NMI, INIT, SIPI, ExtINT).  Any context.  Returns the
 * number of APICs that took it (KVM_IRQ_LINE_STATUS), -1 when none did.
 */
int vireo_apic_deliver(struct vireo_vm *vm, const struct vireo_irq_msg *msg);

/* KVM_GET/SET_LAPIC: the 1 KiB register page, as KVM lays it out. */
void vireo_lapic_get_state(struct vireo_vcpu *vcpu, struct kvm_lapic_state *s);
int vireo_lapic_set_state(struct vireo_vcpu *vcpu,
			  const struct kvm_lapic_state *s);

/* ---- arch/x86/ioapic.c ---- */

int vireo_ioapic_create(struct vireo_vm *vm);
void vireo_ioapic_free(struct vireo_vm *vm);
/* Pin @pin's line goes to @level; returns as vireo_apic_deliver(). */
int vireo_ioapic_set_irq(struct vireo_vm *vm, int pin, int level);
/* Registers at VIREO_IOAPIC_BASE (IOREGSEL, IOWIN, EOI). */
bool vireo_ioapic_mmio(struct vireo_vm *vm, u64 gpa, void *data, int len,
		       bool write);
/* A local APIC EOI'd level-triggered @vector: clear remote IRR, resend. */
void vireo_ioapic_eoi(struct vireo_vm *vm, int vector);
void vireo_ioapic_get_state(struct vireo_vm *vm, struct kvm_ioapic_state *s);
int vireo_ioapic_set_state(struct vireo_vm *vm,
			   const struct kvm_ioapic_state *s);

/* ---- arch/x86/pic.c ---- */

int vireo_pic_create(struct vireo_vm *vm);
void vireo_pic_free(struct vireo_vm *vm);
/* IRQ 0-15 line to @level; returns 1 delivered, 0 masked/coalesced. */
int vireo_pic_set_irq(struct vireo_vm *vm, int irq, int level);
/* Ports 0x20-0x21, 0xa0-0xa1, 0x4d0-0x4d1: true when handled. */
bool vireo_pic_pio(struct vireo_vm *vm, u16 port, void *data, int len,
		   bool write);
/* The master's INTR output is up. */
bool vireo_pic_has_interrupt(struct vireo_vm *vm);
/* INTA: the vector the PICs hand out now (spurious 7/15 if none). */
int vireo_pic_ack(struct vireo_vm *vm);
/* @chip: KVM_IRQCHIP_PIC_MASTER or _SLAVE */
void vireo_pic_get_state(struct vireo_vm *vm, int chip,
			 struct kvm_pic_state *s);
int vireo_pic_set_state(struct vireo_vm *vm, int chip,
			const struct kvm_pic_state *s);

/* ---- arch/x86/pit.c ---- */

/* KVM_CREATE_PIT2 (@flags: KVM_PIT_SPEAKER_DUMMY) */
int vireo_pit_create(struct vireo_vm *vm, u32 flags);
void vireo_pit_free(struct vireo_vm *vm);
/* Ports 0x40-0x43 and 0x61: true when handled. */
bool vireo_pit_pio(struct vireo_vm *vm, u16 port, void *data, int len,
		   bool write);
int vireo_pit_get_state(struct vireo_vm *vm, struct kvm_pit_state2 *s);
int vireo_pit_set_state(struct vireo_vm *vm, const struct kvm_pit_state2 *s);

/* ---- arch/x86/irq.c ---- */

/* One route of a GSI (KVM_SET_GSI_ROUTING) */
struct vireo_route {
	u32 gsi;
	u32 type;		/* KVM_IRQ_ROUTING_IRQCHIP or _MSI */
	union {
		struct {
			u32 chip;	/* KVM_IRQCHIP_PIC_MASTER/_SLAVE/_IOAPIC */
			u32 pin;
		} irqchip;
		struct {
			u64 addr;
			u32 data;
		} msi;
	};
};

struct vireo_routing {
	struct rcu_head rcu;
	u32 nr;			/* routes in r[], sorted by gsi */
	struct vireo_route r[];
};

/* vm->irqchip: everything KVM_CREATE_IRQCHIP and KVM_CREATE_PIT2 make */
struct vireo_irqchip {
	struct vireo_pic *pic;
	struct vireo_ioapic *ioapic;
	struct vireo_pit *pit;		/* NULL until KVM_CREATE_PIT2 */
	struct vireo_routing __rcu *routing;
	/* serialises routing updates */
	struct mutex routing_lock;
};

/* VM ioctls of this family; -ENOTTY for the others. */
long vireo_irq_vm_ioctl(struct vireo_vm *vm, unsigned int ioctl,
			void __user *argp);
/* VM teardown: the PIT, the chips, the routing. */
void vireo_irqchip_destroy(struct vireo_vm *vm);
/*
 * GSI @gsi's line to @level (1/0), through every route of the GSI.
 * Any context.  Returns as vireo_apic_deliver() (KVM_IRQ_LINE_STATUS);
 * -EINVAL when the GSI has no route.
 */
int vireo_irq_set(struct vireo_vm *vm, u32 gsi, int level);
/* An MSI write of @data to @addr; any context. */
int vireo_msi_deliver(struct vireo_vm *vm, u64 addr, u32 data);
/*
 * Someone EOI'd a level-triggered interrupt from @chip/@pin: tell the
 * irqfd resamplers of the GSIs routed there.
 */
void vireo_irq_ack_notify(struct vireo_vm *vm, u32 chip, u32 pin);

/* ---- virt/eventfd.c ---- */

/* KVM_IRQFD and KVM_IOEVENTFD */
int vireo_irqfd(struct vireo_vm *vm, const struct kvm_irqfd *args);
int vireo_ioeventfd(struct vireo_vm *vm, const struct kvm_ioeventfd *args);
/* Resamplers of GSI @gsi: lower the line and signal them. */
void vireo_irqfd_resample(struct vireo_vm *vm, u32 gsi);
/*
 * A guest write the ioeventfds may take (vCPU thread, no locks held):
 * true when one matched and was signalled.
 */
bool vireo_ioeventfd_write(struct vireo_vm *vm, bool mmio, u64 addr,
			   int len, const void *data);
/* vm->eventfds, made with the VM */
int vireo_eventfd_init(struct vireo_vm *vm);
/* VM teardown: every irqfd and ioeventfd goes. */
void vireo_eventfd_destroy(struct vireo_vm *vm);

/* ---- virt/vcpu.c ---- */

/*
 * Something is pending for @vcpu: wake it if it waits (HLT, wait for
 * SIPI) and force it out of the guest if it runs on another CPU, so
 * that it looks again before its next entry.  Any context.
 */
void vireo_vcpu_kick(struct vireo_vcpu *vcpu);

#endif /* _VIREO_IRQ_H */
