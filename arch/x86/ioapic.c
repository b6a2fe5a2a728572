// SPDX-License-Identifier: GPL-2.0-only
/*
 * The IOAPIC: an 82093AA-style chip with 24 pins, its MMIO window at
 * VIREO_IOAPIC_BASE, and the state behind KVM_GET/SET_IRQCHIP.  A pin
 * that fires becomes a message to the local APICs; a level-triggered
 * pin then waits for the EOI of its vector (remote IRR).
 */
#define pr_fmt(fmt) "vireo: " fmt

#include <linux/bits.h>
#include <linux/kvm.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/string.h>

#include <vireo/irq.h>
#include <vireo/vireo.h>

#define IOAPIC_PINS		VIREO_IOAPIC_PINS
#define IOAPIC_MMIO_SIZE	0x100
#define IOAPIC_ALL_PINS		(BIT(IOAPIC_PINS) - 1)

/* the MMIO registers, offsets in the window */
#define IOAPIC_IOREGSEL		0x00
#define IOAPIC_IOWIN		0x10
#define IOAPIC_EOI		0x40

/* the indirect registers, through IOREGSEL/IOWIN */
#define IOAPIC_REG_ID		0x00
#define IOAPIC_REG_VER		0x01
#define IOAPIC_REG_ARB		0x02
#define IOAPIC_REG_REDIR	0x10
#define IOAPIC_VERSION		(((IOAPIC_PINS - 1) << 16) | 0x11)
#define IOAPIC_ID_SHIFT		24
#define IOAPIC_ID_MASK		0xf

/* redirection entry fields */
#define RTE_VECTOR		GENMASK_ULL(7, 0)
#define RTE_DM_SHIFT		8
#define RTE_DM_MASK		0x7
#define RTE_DEST_LOGICAL	BIT_ULL(11)
#define RTE_DELIVS		BIT_ULL(12)
#define RTE_POLARITY		BIT_ULL(13)
#define RTE_REMOTE_IRR		BIT_ULL(14)
#define RTE_LEVEL		BIT_ULL(15)
#define RTE_MASKED		BIT_ULL(16)
#define RTE_DEST_SHIFT		56
/* what a guest may write: everything but the status bits and reserved */
#define RTE_WRITABLE		(GENMASK_ULL(11, 0) | RTE_POLARITY | \
				 RTE_LEVEL | RTE_MASKED | GENMASK_ULL(63, 56))

struct vireo_ioapic {
	spinlock_t lock;	/* guards all below; any context, irqsave */
	u32 ioregsel;
	u32 id;			/* bits 27:24 of the ID register */
	u32 irr;		/* line level of each pin, 1 = asserted */
	u64 redir[IOAPIC_PINS];
};

static struct vireo_ioapic *vm_ioapic(struct vireo_vm *vm)
{
	/* pairs with the release that publishes vm->irqchip */
	struct vireo_irqchip *chip = smp_load_acquire(&vm->irqchip);

	return chip ? chip->ioapic : NULL;
}

static unsigned int rte_mode(u64 e)
{
	return (e >> RTE_DM_SHIFT) & RTE_DM_MASK;
}

/*
 * Only fixed and lowest-priority messages are ever EOI'd by a local
 * APIC; the 82093AA treats NMI, SMI, INIT and ExtINT as edge-triggered
 * whatever the trigger bit says, so only those two can be level.
 */
static bool rte_is_level(u64 e)
{
	unsigned int dm = rte_mode(e);

	return (e & RTE_LEVEL) && (dm == VIREO_DM_FIXED || dm == VIREO_DM_LOWEST);
}

static void rte_to_msg(u64 e, struct vireo_irq_msg *msg)
{
	memset(msg, 0, sizeof(*msg));
	msg->dest = e >> RTE_DEST_SHIFT;
	msg->vector = e & RTE_VECTOR;
	msg->delivery_mode = rte_mode(e);
	msg->shorthand = VIREO_SH_NONE;
	msg->logical = !!(e & RTE_DEST_LOGICAL);
	msg->level_trig = rte_is_level(e);
	msg->assert = true;
	msg->src = NULL;
}

/* Delivery modes 3 and 6 are reserved for the IOAPIC: such a pin is dead. */
static bool rte_mode_valid(u64 e)
{
	unsigned int dm = rte_mode(e);

	return dm != 3 && dm != VIREO_DM_SIPI;
}

/*
 * A level-triggered @pin, lock held: may it send now?  1 and @msg
 * filled (remote IRR set) when it must, 0 when its previous message is
 * still waiting for an EOI (coalesced), -1 when it is masked, its line
 * low or it is not a level pin.
 */
static int level_pin_ready(struct vireo_ioapic *io, int pin,
			   struct vireo_irq_msg *msg)
{
	u64 e = io->redir[pin];

	if (!rte_is_level(e) || !(io->irr & BIT(pin)))
		return -1;
	if ((e & RTE_MASKED) || !rte_mode_valid(e))
		return -1;
	if (e & RTE_REMOTE_IRR)
		return 0;
	io->redir[pin] = e | RTE_REMOTE_IRR;
	rte_to_msg(e, msg);
	return 1;
}

/* Send @msg from @pin; called without the lock. */
static int ioapic_send(struct vireo_vm *vm, struct vireo_ioapic *io, int pin,
		       const struct vireo_irq_msg *msg)
{
	unsigned long flags;
	int ret;

	ret = vireo_apic_deliver(vm, msg);
	if (ret < 0 && msg->level_trig) {
		/*
		 * Nobody will EOI a message no APIC took: leave remote IRR
		 * clear so that the pin can fire again once retargeted.
		 */
		spin_lock_irqsave(&io->lock, flags);
		io->redir[pin] &= ~RTE_REMOTE_IRR;
		spin_unlock_irqrestore(&io->lock, flags);
	}
	return ret;
}

/* Send @pin if it is level-triggered, asserted and allowed to. */
static void service_level_pin(struct vireo_vm *vm, struct vireo_ioapic *io,
			      int pin)
{
	struct vireo_irq_msg msg;
	unsigned long flags;
	int ready;

	spin_lock_irqsave(&io->lock, flags);
	ready = level_pin_ready(io, pin, &msg);
	spin_unlock_irqrestore(&io->lock, flags);
	if (ready > 0)
		ioapic_send(vm, io, pin, &msg);
}

int vireo_ioapic_set_irq(struct vireo_vm *vm, int pin, int level)
{
	struct vireo_ioapic *io = vm_ioapic(vm);
	struct vireo_irq_msg msg;
	unsigned long flags;
	bool was_high;
	int ret;
	u64 e;

	if (!io || pin < 0 || pin >= IOAPIC_PINS)
		return -1;

	spin_lock_irqsave(&io->lock, flags);
	was_high = io->irr & BIT(pin);
	if (!level) {
		io->irr &= ~BIT(pin);
		spin_unlock_irqrestore(&io->lock, flags);
		return 1;
	}
	io->irr |= BIT(pin);
	e = io->redir[pin];
	if (rte_is_level(e)) {
		ret = level_pin_ready(io, pin, &msg);
	} else if ((e & RTE_MASKED) || !rte_mode_valid(e)) {
		/* a masked edge is lost, as on the chip */
		ret = -1;
	} else if (was_high) {
		/* no new edge: the one before already counted */
		ret = 0;
	} else {
		rte_to_msg(e, &msg);
		ret = 1;
	}
	spin_unlock_irqrestore(&io->lock, flags);

	if (ret <= 0)
		return ret;
	return ioapic_send(vm, io, pin, &msg);
}

void vireo_ioapic_eoi(struct vireo_vm *vm, int vector)
{
	struct vireo_ioapic *io = vm_ioapic(vm);
	unsigned long flags;
	bool hit;
	int pin;

	if (!io || vector < 0 || vector > 0xff)
		return;

	/*
	 * No recursion here: a resend only sets an IRR bit in some APIC and
	 * kicks, and a line that stays high is resent once per EOI.
	 */
	for (pin = 0; pin < IOAPIC_PINS; pin++) {
		spin_lock_irqsave(&io->lock, flags);
		hit = (io->redir[pin] & RTE_VECTOR) == vector &&
		      (io->redir[pin] & RTE_REMOTE_IRR);
		if (hit)
			io->redir[pin] &= ~RTE_REMOTE_IRR;
		spin_unlock_irqrestore(&io->lock, flags);
		if (!hit)
			continue;

		/* resamplers may lower the line before we look at it again */
		vireo_irq_ack_notify(vm, KVM_IRQCHIP_IOAPIC, pin);
		service_level_pin(vm, io, pin);
	}
}

/* IOWIN read of the register IOREGSEL selects; lock held. */
static u32 ioapic_read_reg(struct vireo_ioapic *io)
{
	u32 sel = io->ioregsel;
	u64 e;

	switch (sel) {
	case IOAPIC_REG_ID:
	case IOAPIC_REG_ARB:
		return (io->id & IOAPIC_ID_MASK) << IOAPIC_ID_SHIFT;
	case IOAPIC_REG_VER:
		return IOAPIC_VERSION;
	}
	if (sel < IOAPIC_REG_REDIR || sel >= IOAPIC_REG_REDIR + 2 * IOAPIC_PINS)
		return 0;
	e = io->redir[(sel - IOAPIC_REG_REDIR) / 2];
	return (sel & 1) ? upper_32_bits(e) : lower_32_bits(e);
}

/*
 * IOWIN write; lock held.  Returns the pin to look at afterwards (a
 * level pin that may have become deliverable), or -1.
 */
static int ioapic_write_reg(struct vireo_ioapic *io, u32 val)
{
	u32 sel = io->ioregsel;
	int pin;
	u64 e;

	if (sel == IOAPIC_REG_ID) {
		io->id = (val >> IOAPIC_ID_SHIFT) & IOAPIC_ID_MASK;
		return -1;
	}
	if (sel < IOAPIC_REG_REDIR || sel >= IOAPIC_REG_REDIR + 2 * IOAPIC_PINS)
		return -1;	/* version, arbitration: read-only */

	pin = (sel - IOAPIC_REG_REDIR) / 2;
	e = io->redir[pin];
	if (sel & 1)
		e = ((u64)val << 32) | lower_32_bits(e);
	else
		e = (e & GENMASK_ULL(63, 32)) | val;
	e = (e & RTE_WRITABLE) | (io->redir[pin] & RTE_REMOTE_IRR);
	/*
	 * Remote IRR means nothing for an edge pin; guests that cannot use
	 * the EOI register clear it by switching the pin to edge and back.
	 */
	if (!rte_is_level(e))
		e &= ~RTE_REMOTE_IRR;
	io->redir[pin] = e;
	return pin;
}

static void put_val(void *data, int len, u64 val)
{
	memcpy(data, &val, len);	/* little-endian, len <= 8 */
}

static u64 get_val(const void *data, int len)
{
	u64 val = 0;

	memcpy(&val, data, len);
	return val;
}

bool vireo_ioapic_mmio(struct vireo_vm *vm, u64 gpa, void *data, int len,
		       bool write)
{
	struct vireo_ioapic *io = vm_ioapic(vm);
	unsigned long flags;
	int pin = -1;
	u64 off, val;

	if (!io || gpa < VIREO_IOAPIC_BASE ||
	    gpa >= VIREO_IOAPIC_BASE + IOAPIC_MMIO_SIZE)
		return false;
	if (len <= 0 || len > 8)
		return true;
	off = gpa - VIREO_IOAPIC_BASE;

	if (!write) {
		val = 0;
		spin_lock_irqsave(&io->lock, flags);
		if (off == IOAPIC_IOREGSEL)
			val = io->ioregsel;
		else if (off == IOAPIC_IOWIN)
			val = ioapic_read_reg(io);
		spin_unlock_irqrestore(&io->lock, flags);
		put_val(data, len, val);
		return true;
	}

	val = get_val(data, len);
	switch (off) {
	case IOAPIC_IOREGSEL:
		spin_lock_irqsave(&io->lock, flags);
		io->ioregsel = val & 0xff;
		spin_unlock_irqrestore(&io->lock, flags);
		break;
	case IOAPIC_IOWIN:
		/* a partial write of a 32-bit register is dropped */
		if (len < 4)
			break;
		spin_lock_irqsave(&io->lock, flags);
		pin = ioapic_write_reg(io, lower_32_bits(val));
		spin_unlock_irqrestore(&io->lock, flags);
		/* unmasking a level pin whose line is up sends it */
		if (pin >= 0)
			service_level_pin(vm, io, pin);
		break;
	case IOAPIC_EOI:
		vireo_ioapic_eoi(vm, val & 0xff);
		break;
	}
	return true;
}

void vireo_ioapic_get_state(struct vireo_vm *vm, struct kvm_ioapic_state *s)
{
	struct vireo_ioapic *io = vm_ioapic(vm);
	unsigned long flags;
	int i;

	memset(s, 0, sizeof(*s));
	if (!io)
		return;
	spin_lock_irqsave(&io->lock, flags);
	s->base_address = VIREO_IOAPIC_BASE;
	s->ioregsel = io->ioregsel;
	s->id = io->id;
	s->irr = io->irr;
	for (i = 0; i < IOAPIC_PINS; i++)
		s->redirtbl[i].bits = io->redir[i];
	spin_unlock_irqrestore(&io->lock, flags);
}

int vireo_ioapic_set_state(struct vireo_vm *vm,
			   const struct kvm_ioapic_state *s)
{
	struct vireo_ioapic *io = vm_ioapic(vm);
	unsigned long flags;
	int i;

	if (!io)
		return -ENXIO;

	/* the window does not move: base_address is not taken */
	spin_lock_irqsave(&io->lock, flags);
	io->ioregsel = s->ioregsel & 0xff;
	io->id = s->id & IOAPIC_ID_MASK;
	io->irr = s->irr & IOAPIC_ALL_PINS;
	for (i = 0; i < IOAPIC_PINS; i++) {
		u64 e = s->redirtbl[i].bits & (RTE_WRITABLE | RTE_REMOTE_IRR);

		if (!rte_is_level(e))
			e &= ~RTE_REMOTE_IRR;
		io->redir[i] = e;
	}
	spin_unlock_irqrestore(&io->lock, flags);

	/* level lines that are up and not waiting for an EOI go out now */
	for (i = 0; i < IOAPIC_PINS; i++)
		service_level_pin(vm, io, i);
	return 0;
}

int vireo_ioapic_create(struct vireo_vm *vm)
{
	struct vireo_ioapic *io;
	int i;

	if (!vm->irqchip)
		return -EINVAL;
	io = kzalloc(sizeof(*io), GFP_KERNEL_ACCOUNT);
	if (!io)
		return -ENOMEM;
	spin_lock_init(&io->lock);
	for (i = 0; i < IOAPIC_PINS; i++)
		io->redir[i] = RTE_MASKED;
	vm->irqchip->ioapic = io;
	return 0;
}

void vireo_ioapic_free(struct vireo_vm *vm)
{
	if (!vm->irqchip)
		return;
	kfree(vm->irqchip->ioapic);
	vm->irqchip->ioapic = NULL;
}
