// SPDX-License-Identifier: GPL-2.0-only
/*
 * The two cascaded 8259A PICs of a PC (master IRQ 0-7 at 0x20/0x21,
 * slave IRQ 8-15 at 0xa0/0xa1 on the master's IRQ 2) and the PIIX edge/
 * level control registers at 0x4d0/0x4d1.  The master's INTR goes to
 * vCPU 0, whose run loop takes vectors with vireo_pic_ack().
 *
 * Each chip lives in a struct kvm_pic_state, so KVM_GET/SET_IRQCHIP are
 * copies.  In it, last_irr is the level of each input line and irr the
 * requests latched from it: on a rising edge, or while the line is high
 * for the inputs the ELCR makes level-triggered.
 */
#define pr_fmt(fmt) "vireo: " fmt

#include <linux/bits.h>
#include <linux/kernel.h>
#include <linux/kvm.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/string.h>

#include <vireo/irq.h>
#include <vireo/vireo.h>

#define MASTER			0
#define SLAVE			1
#define CASCADE_IRQ		2	/* the master input the slave drives */
#define SPURIOUS_IRQ		7

/* IRQ 0, 1, 2, 8 and 13 are edge-only on a PC */
static const u8 elcr_hw_mask[2] = { 0xf8, 0xde };

/* command bits of a write to the even port */
#define ICW1_SEL		BIT(4)
#define ICW1_IC4		BIT(0)
#define ICW1_SNGL		BIT(1)
#define OCW3_SEL		BIT(3)
#define OCW3_RIS		BIT(0)
#define OCW3_RR			BIT(1)
#define OCW3_POLL		BIT(2)
#define OCW3_SMM		BIT(5)
#define OCW3_ESMM		BIT(6)
#define ICW4_AEOI		BIT(1)
#define ICW4_SFNM		BIT(4)

/* OCW2 bits 7:5 (R, SL, EOI) */
enum {
	OCW2_CLEAR_ROTATE_AEOI	= 0,
	OCW2_EOI		= 1,
	OCW2_NOP		= 2,
	OCW2_SPECIFIC_EOI	= 3,
	OCW2_SET_ROTATE_AEOI	= 4,
	OCW2_ROTATE_EOI		= 5,
	OCW2_SET_PRIORITY	= 6,
	OCW2_ROTATE_SPECIFIC	= 7,
};

/* init_state: which ICW the odd port expects next (0: none, OCW1) */
enum {
	INIT_DONE,
	INIT_ICW2,
	INIT_ICW3,
	INIT_ICW4,
};

struct vireo_pic {
	spinlock_t lock;	/* guards both chips; any context, irqsave */
	struct kvm_pic_state chip[2];
	/* ICW1 said single (no ICW3, no cascade); not in the ABI state */
	bool single[2];
};

/* EOIs seen under the lock, to report once it is dropped */
struct pic_acks {
	int n;
	u8 chip[2];
	u8 pin[2];
};

static struct vireo_pic *vm_pic(struct vireo_vm *vm)
{
	/* pairs with the release that publishes vm->irqchip */
	struct vireo_irqchip *chip = smp_load_acquire(&vm->irqchip);

	return chip ? chip->pic : NULL;
}

/* 0 is the highest priority; priority_add is the IRQ that has it. */
static int prio(const struct kvm_pic_state *s, int irq)
{
	return (irq - s->priority_add) & 7;
}

/* The IRQ of highest priority among @bits, or -1. */
static int highest(const struct kvm_pic_state *s, u8 bits)
{
	int i, irq;

	for (i = 0; i < 8; i++) {
		irq = (s->priority_add + i) & 7;
		if (bits & BIT(irq))
			return irq;
	}
	return -1;
}

/* Input @irq of @s to @level; true when that latched a new request. */
static bool set_line(struct kvm_pic_state *s, int irq, bool level)
{
	u8 bit = BIT(irq);
	bool newly = false;

	if (level) {
		/* level inputs request while high, edge ones on the rise */
		if ((s->elcr & bit) || !(s->last_irr & bit)) {
			newly = !(s->irr & bit);
			s->irr |= bit;
		}
		s->last_irr |= bit;
	} else {
		if (s->elcr & bit)
			s->irr &= ~bit;
		s->last_irr &= ~bit;
	}
	return newly;
}

static bool is_cascade(struct vireo_pic *p, int c, int irq)
{
	return c == MASTER && irq == CASCADE_IRQ && !p->single[MASTER];
}

/* The IRQ chip @c raises INT for now, or -1. */
static int pending(struct vireo_pic *p, int c)
{
	const struct kvm_pic_state *s = &p->chip[c];
	u8 isr = s->isr;
	int irq, cur;

	if (s->init_state != INIT_DONE)
		return -1;
	irq = highest(s, s->irr & ~s->imr);
	if (irq < 0)
		return -1;
	/* in special mask mode, a masked level in service blocks nothing */
	if (s->special_mask)
		isr &= ~s->imr;
	cur = highest(s, isr);
	if (cur < 0 || prio(s, irq) < prio(s, cur))
		return irq;
	/*
	 * Special fully nested: the master lets the slave through while
	 * the slave is in service; the slave sorts out its own priorities.
	 */
	if (is_cascade(p, c, irq) && cur == CASCADE_IRQ &&
	    s->special_fully_nested_mode)
		return irq;
	return -1;
}

/* Carry the slave's INT to the master; returns the master's INT. */
static bool update(struct vireo_pic *p)
{
	if (!p->single[MASTER])
		set_line(&p->chip[MASTER], CASCADE_IRQ,
			 pending(p, SLAVE) >= 0);
	return pending(p, MASTER) >= 0;
}

static void note_ack(struct vireo_pic *p, struct pic_acks *acks, int c,
		     int irq)
{
	/* the slave's own EOI tells about its pins, not the cascade */
	if (is_cascade(p, c, irq) || acks->n >= ARRAY_SIZE(acks->chip))
		return;
	acks->chip[acks->n] = c == MASTER ? KVM_IRQCHIP_PIC_MASTER :
					    KVM_IRQCHIP_PIC_SLAVE;
	acks->pin[acks->n] = irq;
	acks->n++;
}

static void report_acks(struct vireo_vm *vm, const struct pic_acks *acks)
{
	int i;

	for (i = 0; i < acks->n; i++)
		vireo_irq_ack_notify(vm, acks->chip[i], acks->pin[i]);
}

/* Chip @c hands out @irq (INTA or poll). */
static void intack(struct vireo_pic *p, int c, int irq, struct pic_acks *acks)
{
	struct kvm_pic_state *s = &p->chip[c];
	u8 bit = BIT(irq);

	if (!(s->elcr & bit))
		s->irr &= ~bit;
	if (s->auto_eoi) {
		if (s->rotate_on_auto_eoi)
			s->priority_add = (irq + 1) & 7;
		note_ack(p, acks, c, irq);
	} else {
		s->isr |= bit;
	}
	/*
	 * The slave's INT is sampled afresh after an INTA, so that a slave
	 * still requesting (auto-EOI) latches IRQ 2 again.
	 */
	if (is_cascade(p, c, irq))
		s->last_irr &= ~bit;
}

static void eoi(struct vireo_pic *p, int c, int irq, struct pic_acks *acks)
{
	struct kvm_pic_state *s = &p->chip[c];

	if (!(s->isr & BIT(irq)))
		return;
	s->isr &= ~BIT(irq);
	note_ack(p, acks, c, irq);
}

static void write_ocw2(struct vireo_pic *p, int c, u8 val,
		       struct pic_acks *acks)
{
	struct kvm_pic_state *s = &p->chip[c];
	int level = val & 7;
	u8 isr;
	int irq;

	switch (val >> 5) {
	case OCW2_CLEAR_ROTATE_AEOI:
		s->rotate_on_auto_eoi = 0;
		break;
	case OCW2_SET_ROTATE_AEOI:
		s->rotate_on_auto_eoi = 1;
		break;
	case OCW2_EOI:
	case OCW2_ROTATE_EOI:
		/* special mask mode: masked levels in service stay */
		isr = s->isr;
		if (s->special_mask)
			isr &= ~s->imr;
		irq = highest(s, isr);
		if (irq < 0)
			break;
		eoi(p, c, irq, acks);
		if (val >> 5 == OCW2_ROTATE_EOI)
			s->priority_add = (irq + 1) & 7;
		break;
	case OCW2_SPECIFIC_EOI:
		eoi(p, c, level, acks);
		break;
	case OCW2_ROTATE_SPECIFIC:
		eoi(p, c, level, acks);
		s->priority_add = (level + 1) & 7;
		break;
	case OCW2_SET_PRIORITY:
		s->priority_add = (level + 1) & 7;
		break;
	case OCW2_NOP:
		break;
	}
}

static void write_icw1(struct vireo_pic *p, int c, u8 val)
{
	struct kvm_pic_state *s = &p->chip[c];

	/*
	 * Edge detection restarts: only a line that rises from now on
	 * makes a request (level lines that are high request at once).
	 */
	s->irr = s->last_irr & s->elcr;
	if (c == MASTER)
		s->last_irr &= ~BIT(CASCADE_IRQ);
	s->isr = 0;
	s->imr = 0;
	s->priority_add = 0;
	s->special_mask = 0;
	s->read_reg_select = 0;
	s->poll = 0;
	s->rotate_on_auto_eoi = 0;
	s->init4 = !!(val & ICW1_IC4);
	p->single[c] = !!(val & ICW1_SNGL);
	if (!s->init4) {
		s->auto_eoi = 0;
		s->special_fully_nested_mode = 0;
	}
	s->init_state = INIT_ICW2;
}

static void write_odd(struct vireo_pic *p, int c, u8 val)
{
	struct kvm_pic_state *s = &p->chip[c];

	switch (s->init_state) {
	case INIT_ICW2:
		s->irq_base = val & 0xf8;
		if (!p->single[c])
			s->init_state = INIT_ICW3;
		else
			s->init_state = s->init4 ? INIT_ICW4 : INIT_DONE;
		break;
	case INIT_ICW3:
		/* the wiring is fixed: the slave is on IRQ 2, id 2 */
		s->init_state = s->init4 ? INIT_ICW4 : INIT_DONE;
		break;
	case INIT_ICW4:
		s->auto_eoi = !!(val & ICW4_AEOI);
		s->special_fully_nested_mode = !!(val & ICW4_SFNM);
		s->init_state = INIT_DONE;
		break;
	default:
		s->imr = val;	/* OCW1 */
		break;
	}
}

static void write_even(struct vireo_pic *p, int c, u8 val,
		       struct pic_acks *acks)
{
	struct kvm_pic_state *s = &p->chip[c];

	if (val & ICW1_SEL) {
		write_icw1(p, c, val);
	} else if (val & OCW3_SEL) {
		if (val & OCW3_POLL)
			s->poll = 1;
		if (val & OCW3_RR)
			s->read_reg_select = !!(val & OCW3_RIS);
		if (val & OCW3_ESMM)
			s->special_mask = !!(val & OCW3_SMM);
	} else {
		write_ocw2(p, c, val, acks);
	}
}

/* A read after a poll command: the CPU acknowledges without INTA. */
static u8 poll_read(struct vireo_pic *p, int c, struct pic_acks *acks)
{
	int irq = pending(p, c);

	if (irq < 0)
		return 0;
	intack(p, c, irq, acks);
	return 0x80 | irq;
}

static void write_elcr(struct kvm_pic_state *s, u8 val)
{
	s->elcr = val & s->elcr_mask;
	/* level inputs request exactly while their line is high */
	s->irr = (s->irr & ~s->elcr) | (s->last_irr & s->elcr);
}

/* Tell the vCPU that takes PIC interrupts (vCPU 0) to look. */
static void kick_bsp(struct vireo_vm *vm)
{
	struct vireo_vcpu *vcpu;

	/* pairs with the vCPU's publication in vm->vcpus[] */
	if (smp_load_acquire(&vm->nr_vcpus) <= 0)
		return;
	vcpu = READ_ONCE(vm->vcpus[0]);
	if (vcpu)
		vireo_vcpu_kick(vcpu);
}

int vireo_pic_set_irq(struct vireo_vm *vm, int irq, int level)
{
	struct vireo_pic *p = vm_pic(vm);
	struct kvm_pic_state *s;
	unsigned long flags;
	u8 old_irr, old_line;
	bool newly, intr, changed;
	int c, pin, ret;

	if (!p || irq < 0 || irq > 15)
		return 0;
	c = irq >> 3;
	pin = irq & 7;

	spin_lock_irqsave(&p->lock, flags);
	/* the master's IRQ 2 belongs to the slave */
	if (is_cascade(p, c, pin)) {
		spin_unlock_irqrestore(&p->lock, flags);
		return 0;
	}
	s = &p->chip[c];
	old_irr = s->irr;
	old_line = s->last_irr;
	newly = set_line(s, pin, level);
	if (s->imr & BIT(pin))
		ret = 0;
	else if (level)
		ret = newly;
	else
		ret = 1;
	changed = old_irr != s->irr || old_line != s->last_irr;
	intr = update(p);
	spin_unlock_irqrestore(&p->lock, flags);

	if (changed && intr)
		kick_bsp(vm);
	return ret;
}

bool vireo_pic_pio(struct vireo_vm *vm, u16 port, void *data, int len,
		   bool write)
{
	struct vireo_pic *p = vm_pic(vm);
	struct pic_acks acks = { 0 };
	struct kvm_pic_state *s;
	unsigned long flags;
	bool intr, changed = write;
	u8 *buf = data;
	int c;

	switch (port) {
	case 0x20: case 0x21: case 0x4d0:
		c = MASTER;
		break;
	case 0xa0: case 0xa1: case 0x4d1:
		c = SLAVE;
		break;
	default:
		return false;
	}
	if (!p)
		return false;
	/* byte registers: a wider access sees the first byte only */
	if (len < 1 || len > 4)
		return true;
	if (!write)
		memset(buf, 0, len);

	spin_lock_irqsave(&p->lock, flags);
	s = &p->chip[c];
	if (port >= 0x4d0) {
		if (write)
			write_elcr(s, buf[0]);
		else
			buf[0] = s->elcr;
	} else if (port & 1) {
		if (write)
			write_odd(p, c, buf[0]);
		else
			buf[0] = s->imr;
	} else if (write) {
		write_even(p, c, buf[0], &acks);
	} else if (s->poll) {
		s->poll = 0;
		buf[0] = poll_read(p, c, &acks);
		changed = true;
	} else {
		buf[0] = s->read_reg_select ? s->isr : s->irr;
	}
	intr = update(p);
	spin_unlock_irqrestore(&p->lock, flags);

	report_acks(vm, &acks);
	if (changed && intr)
		kick_bsp(vm);
	return true;
}

bool vireo_pic_has_interrupt(struct vireo_vm *vm)
{
	struct vireo_pic *p = vm_pic(vm);
	unsigned long flags;
	bool intr;

	if (!p)
		return false;
	spin_lock_irqsave(&p->lock, flags);
	intr = pending(p, MASTER) >= 0;
	spin_unlock_irqrestore(&p->lock, flags);
	return intr;
}

int vireo_pic_ack(struct vireo_vm *vm)
{
	struct vireo_pic *p = vm_pic(vm);
	struct pic_acks acks = { 0 };
	struct kvm_pic_state *m, *sl;
	unsigned long flags;
	int irq, vector;

	if (!p)
		return -1;

	spin_lock_irqsave(&p->lock, flags);
	m = &p->chip[MASTER];
	sl = &p->chip[SLAVE];
	irq = pending(p, MASTER);
	if (irq < 0) {
		/* the request went away before INTA */
		vector = m->irq_base + SPURIOUS_IRQ;
	} else if (!is_cascade(p, MASTER, irq)) {
		intack(p, MASTER, irq, &acks);
		vector = m->irq_base + irq;
	} else {
		intack(p, MASTER, irq, &acks);
		irq = pending(p, SLAVE);
		if (irq < 0) {
			vector = sl->irq_base + SPURIOUS_IRQ;
		} else {
			intack(p, SLAVE, irq, &acks);
			vector = sl->irq_base + irq;
		}
	}
	update(p);
	spin_unlock_irqrestore(&p->lock, flags);

	report_acks(vm, &acks);
	return vector;
}

void vireo_pic_get_state(struct vireo_vm *vm, int chip,
			 struct kvm_pic_state *s)
{
	struct vireo_pic *p = vm_pic(vm);
	unsigned long flags;

	if (!p || (chip != KVM_IRQCHIP_PIC_MASTER &&
		   chip != KVM_IRQCHIP_PIC_SLAVE)) {
		memset(s, 0, sizeof(*s));
		return;
	}
	spin_lock_irqsave(&p->lock, flags);
	*s = p->chip[chip == KVM_IRQCHIP_PIC_MASTER ? MASTER : SLAVE];
	spin_unlock_irqrestore(&p->lock, flags);
}

int vireo_pic_set_state(struct vireo_vm *vm, int chip,
			const struct kvm_pic_state *s)
{
	struct vireo_pic *p = vm_pic(vm);
	struct kvm_pic_state t = *s;
	unsigned long flags;
	bool intr;
	int c;

	if (!p)
		return -ENXIO;
	if (chip == KVM_IRQCHIP_PIC_MASTER)
		c = MASTER;
	else if (chip == KVM_IRQCHIP_PIC_SLAVE)
		c = SLAVE;
	else
		return -EINVAL;

	/* keep every field in the range the chip itself can reach */
	t.priority_add &= 7;
	t.irq_base &= 0xf8;
	t.read_reg_select = !!t.read_reg_select;
	t.poll = !!t.poll;
	t.special_mask = !!t.special_mask;
	if (t.init_state > INIT_ICW4)
		t.init_state = INIT_DONE;
	t.auto_eoi = !!t.auto_eoi;
	t.rotate_on_auto_eoi = !!t.rotate_on_auto_eoi;
	t.special_fully_nested_mode = !!t.special_fully_nested_mode;
	t.init4 = !!t.init4;
	t.elcr_mask = elcr_hw_mask[c];
	t.elcr &= t.elcr_mask;
	/* the cascade input is sampled again from the slave */
	if (c == MASTER)
		t.last_irr &= ~BIT(CASCADE_IRQ);

	spin_lock_irqsave(&p->lock, flags);
	p->chip[c] = t;
	p->single[c] = false;
	intr = update(p);
	spin_unlock_irqrestore(&p->lock, flags);

	if (intr)
		kick_bsp(vm);
	return 0;
}

int vireo_pic_create(struct vireo_vm *vm)
{
	struct vireo_pic *p;
	int c;

	if (!vm->irqchip)
		return -EINVAL;
	p = kzalloc(sizeof(*p), GFP_KERNEL_ACCOUNT);
	if (!p)
		return -ENOMEM;
	spin_lock_init(&p->lock);
	for (c = MASTER; c <= SLAVE; c++)
		p->chip[c].elcr_mask = elcr_hw_mask[c];
	vm->irqchip->pic = p;
	return 0;
}

void vireo_pic_free(struct vireo_vm *vm)
{
	if (!vm->irqchip)
		return;
	kfree(vm->irqchip->pic);
	vm->irqchip->pic = NULL;
}
