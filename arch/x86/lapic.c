// SPDX-License-Identifier: GPL-2.0-only
/*
 * The in-kernel local APIC of each vCPU: xAPIC MMIO page, x2APIC MSRs,
 * IA32_APIC_BASE, the timer (one-shot, periodic, TSC-deadline), IPIs,
 * INIT/SIPI, and the delivery of interrupt messages to the APICs.
 *
 * Design notes.
 *
 * State.  The registers live in a 1 KiB page laid out as the xAPIC MMIO
 * page (and as struct kvm_lapic_state), one dword per 16-byte slot, so
 * KVM_GET/SET_LAPIC are copies plus fix-ups.  In x2APIC mode the ID
 * register holds the 32-bit x2APIC ID; ICR2 holds the 32-bit
 * destination.  The TSC deadline, the errors latched for the next ESR
 * write, the pending INIT/SIPI and the ISR vectors that need an IOAPIC
 * EOI live beside the page.
 *
 * Locking.  One spinlock per APIC, always taken with irqsave, guards
 * everything in struct vireo_lapic: the register page (IRR, ISR, TMR
 * included), the APIC base, the timer state and the pending INIT/SIPI.
 * Takers: the vCPU's own thread (register and MSR accesses, ack, EOI,
 * TPR, KVM_GET/SET_LAPIC, reset), any sender in vireo_apic_deliver()
 * (another vCPU, the IOAPIC, an MSI, an irqfd - possibly in hard-irq
 * context) and the timer callback.  Nothing is called with the lock
 * held except hrtimer_start()/hrtimer_try_to_cancel(); an IPI to send
 * or an EOI for the IOAPIC is noted in a struct lapic_todo and done
 * after the unlock, so a sender holds at most one APIC lock at a time.
 * The base is written with WRITE_ONCE so a sender may peek at it.
 *
 * Timer.  An hrtimer on CLOCK_MONOTONIC in absolute mode; the count runs
 * at 1 GHz / divide, so one count is "divide" nanoseconds.  Only code
 * holding the lock arms or disarms it (and only with try_to_cancel, never
 * waiting).  timer_on says whether the current arming is live: the
 * callback, under the lock, does nothing when it is off or when the
 * timer was re-armed meanwhile (it is queued again), so a stale expiry
 * never injects.  Periodic restarts from the callback, no faster than
 * every LAPIC_MIN_PERIOD_NS.  vireo_lapic_free() clears timer_on, then
 * hrtimer_cancel()s (waiting for a running callback) before kfree.
 */
#define pr_fmt(fmt) "vireo: " fmt

#include <linux/bitmap.h>
#include <linux/bits.h>
#include <linux/hrtimer.h>
#include <linux/kernel.h>
#include <linux/kvm.h>
#include <linux/math64.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <asm/apicdef.h>
#include <asm/msr-index.h>
#include <asm/processor.h>
#include <asm/tsc.h>

#include <vireo/irq.h>
#include <vireo/vireo.h>

#define LAPIC_VERSION		0x00050014	/* max LVT 5, integrated */
#define LAPIC_MIN_PERIOD_NS	50000ULL
#define LAPIC_MAX_TSC_DELTA	BIT_ULL(52)	/* cycles; keeps ns in range */
#define BASE_BSP		BIT_ULL(8)
#define BASE_EXTD		BIT_ULL(10)
#define BASE_EN			BIT_ULL(11)
#define BASE_ADDR_MASK		(~0xfffULL)
#define ICR_VALID		0x000ccfff	/* vector..trigger, shorthand */
#define SVR_VALID		0x3ff		/* no EOI-broadcast suppression */
#define TDCR_VALID		0xb
#define X2APIC_MSR_FIRST	APIC_BASE_MSR
#define X2APIC_MSR_LAST		(APIC_BASE_MSR + 0xff)

enum { TIMER_ONESHOT, TIMER_PERIODIC, TIMER_TSC_DEADLINE };

static const u32 lvt_regs[] = {
	APIC_LVTT, APIC_LVTTHMR, APIC_LVTPC, APIC_LVT0, APIC_LVT1,
	APIC_LVTERR, APIC_LVTCMCI,
};

struct vireo_lapic {
	spinlock_t lock;	/* guards all below (irqsave) */
	struct vireo_vcpu *vcpu;
	u32 regs[KVM_APIC_REG_SIZE / 4];
	u64 base;		/* IA32_APIC_BASE */
	u32 esr_pending;	/* errors since the last ESR write */
	/* ISR vectors accepted level-triggered: their EOI goes to the IOAPIC */
	DECLARE_BITMAP(level_isr, 256);
	bool init_pending;
	int sipi_vector;	/* pending SIPI, -1 when none */

	struct hrtimer timer;
	bool timer_on;		/* the current arming is live */
	ktime_t expire;		/* when the count reaches 0 / the deadline */
	u64 tsc_deadline;	/* IA32_TSC_DEADLINE */
};

/* What to do once the lock is dropped. */
struct lapic_todo {
	bool send;
	struct vireo_irq_msg msg;
	int eoi_vector;		/* level EOI for the IOAPIC, -1 when none */
};

/* ---- registers ---- */

static u32 reg(struct vireo_lapic *a, u32 off)
{
	return a->regs[off >> 2];
}

static void reg_set(struct vireo_lapic *a, u32 off, u32 val)
{
	a->regs[off >> 2] = val;
}

/* ISR, TMR and IRR: 256 bits in 8 dwords, 16 bytes apart */
static u32 *vec_word(struct vireo_lapic *a, u32 base, u8 v)
{
	return &a->regs[(base + (v >> 5) * 0x10) >> 2];
}

static bool vec_test(struct vireo_lapic *a, u32 base, u8 v)
{
	return *vec_word(a, base, v) & BIT(v & 31);
}

static void vec_set(struct vireo_lapic *a, u32 base, u8 v)
{
	*vec_word(a, base, v) |= BIT(v & 31);
}

static void vec_clear(struct vireo_lapic *a, u32 base, u8 v)
{
	*vec_word(a, base, v) &= ~BIT(v & 31);
}

static int vec_highest(struct vireo_lapic *a, u32 base)
{
	int i;

	for (i = 7; i >= 0; i--) {
		u32 w = reg(a, base + i * 0x10);

		if (w)
			return i * 32 + fls(w) - 1;
	}
	return -1;
}

static bool hw_enabled(struct vireo_lapic *a)
{
	return a->base & BASE_EN;
}

static bool x2apic_mode(u64 base)
{
	return base & BASE_EXTD;
}

static bool sw_enabled(struct vireo_lapic *a)
{
	return reg(a, APIC_SPIV) & APIC_SPIV_APIC_ENABLED;
}

static u32 x2apic_ldr(u32 id)
{
	return ((id >> 4) << 16) | BIT(id & 0xf);
}

static void update_ppr(struct vireo_lapic *a)
{
	u32 tpr = reg(a, APIC_TASKPRI) & 0xff;
	int isrv = vec_highest(a, APIC_ISR);
	u32 isr_class = isrv < 0 ? 0 : isrv & 0xf0;

	reg_set(a, APIC_PROCPRI, (tpr & 0xf0) >= isr_class ? tpr : isr_class);
}

static void mask_lvts(struct vireo_lapic *a)
{
	int i;

	for (i = 0; i < ARRAY_SIZE(lvt_regs); i++)
		reg_set(a, lvt_regs[i], reg(a, lvt_regs[i]) | APIC_LVT_MASKED);
}

/* Latch @bits for the next ESR write and raise LVT error; lock held. */
static bool lapic_error(struct vireo_lapic *a, u32 bits)
{
	u32 lvt = reg(a, APIC_LVTERR);

	a->esr_pending |= bits;
	/* an illegal vector in LVT error itself just stays latched */
	if ((lvt & APIC_LVT_MASKED) || (lvt & 0xff) < 16 || !sw_enabled(a))
		return false;
	vec_set(a, APIC_IRR, lvt & 0xff);
	vec_clear(a, APIC_TMR, lvt & 0xff);
	return true;
}

/* A fixed interrupt accepted by this APIC; lock held.  True if latched. */
static bool accept_fixed(struct vireo_lapic *a, u8 vector, bool level)
{
	if (!sw_enabled(a))
		return false;
	if (vector < 16) {
		lapic_error(a, APIC_ESR_RECVILL);
		return false;
	}
	vec_set(a, APIC_IRR, vector);
	if (level)
		vec_set(a, APIC_TMR, vector);
	else
		vec_clear(a, APIC_TMR, vector);
	return true;
}

/* ---- timer ---- */

static int timer_mode(struct vireo_lapic *a)
{
	u32 m = (reg(a, APIC_LVTT) >> 17) & 3;

	return m == 1 ? TIMER_PERIODIC : m == 2 ? TIMER_TSC_DEADLINE :
	       TIMER_ONESHOT;
}

static u32 timer_divisor(struct vireo_lapic *a)
{
	u32 d = reg(a, APIC_TDCR);
	u32 v = ((d & 8) >> 1) | (d & 3);

	return v == 7 ? 1 : 2U << v;
}

static void timer_stop(struct vireo_lapic *a)
{
	a->timer_on = false;
	/* a callback running now sees timer_on off and does nothing */
	hrtimer_try_to_cancel(&a->timer);
}

static void timer_arm(struct vireo_lapic *a, ktime_t when)
{
	a->expire = when;
	a->timer_on = true;
	hrtimer_start(&a->timer, when, HRTIMER_MODE_ABS);
}

static u32 timer_current_count(struct vireo_lapic *a)
{
	s64 left;

	if (!a->timer_on || timer_mode(a) == TIMER_TSC_DEADLINE)
		return 0;
	left = ktime_to_ns(ktime_sub(a->expire, ktime_get()));
	if (left <= 0)
		return 0;
	return min_t(u64, div_u64(left, timer_divisor(a)),
		     reg(a, APIC_TMICT));
}

/* A write of the initial count (or a restore): count down from it. */
static void timer_start_count(struct vireo_lapic *a)
{
	u64 ns = (u64)reg(a, APIC_TMICT) * timer_divisor(a);

	timer_stop(a);
	if (timer_mode(a) == TIMER_TSC_DEADLINE || !ns)
		return;
	if (timer_mode(a) == TIMER_PERIODIC)
		ns = max(ns, LAPIC_MIN_PERIOD_NS);
	timer_arm(a, ktime_add_ns(ktime_get(), ns));
}

/* Arm for the guest-TSC deadline (0: disarmed). */
static void timer_start_tsc(struct vireo_lapic *a)
{
	u64 now_tsc, delta = 0, ns;

	timer_stop(a);
	if (timer_mode(a) != TIMER_TSC_DEADLINE || !a->tsc_deadline)
		return;
	now_tsc = vireo_guest_tsc(a->vcpu);
	if (a->tsc_deadline > now_tsc)
		delta = min(a->tsc_deadline - now_tsc, LAPIC_MAX_TSC_DELTA);
	/* round up: the guest must not see its TSC short of the deadline */
	ns = mul_u64_u32_div(delta, USEC_PER_SEC, max(tsc_khz, 1000U)) + 1;
	timer_arm(a, ktime_add_ns(ktime_get(), ns));
}

static enum hrtimer_restart lapic_timer_fn(struct hrtimer *t)
{
	struct vireo_lapic *a = container_of(t, struct vireo_lapic, timer);
	enum hrtimer_restart ret = HRTIMER_NORESTART;
	unsigned long flags;
	bool kick = false;
	u32 lvt;

	spin_lock_irqsave(&a->lock, flags);
	/* stopped, or re-armed by the vCPU while we waited for the lock */
	if (!a->timer_on || hrtimer_is_queued(t))
		goto out;

	lvt = reg(a, APIC_LVTT);
	if (!(lvt & APIC_LVT_MASKED))
		kick = accept_fixed(a, lvt & 0xff, false);

	if (timer_mode(a) == TIMER_PERIODIC && reg(a, APIC_TMICT)) {
		u64 period = max((u64)reg(a, APIC_TMICT) * timer_divisor(a),
				 LAPIC_MIN_PERIOD_NS);
		ktime_t next = ktime_add_ns(a->expire, period);
		ktime_t now = ktime_get();

		/* the host stalled: drop the periods missed, do not flood */
		if (ktime_before(next, now))
			next = ktime_add_ns(now, period);
		a->expire = next;
		hrtimer_set_expires(t, next);
		ret = HRTIMER_RESTART;
	} else {
		a->timer_on = false;
		if (timer_mode(a) == TIMER_TSC_DEADLINE)
			a->tsc_deadline = 0;
	}
out:
	spin_unlock_irqrestore(&a->lock, flags);
	if (kick)
		vireo_vcpu_kick(a->vcpu);
	return ret;
}

/* ---- reset ---- */

/* Registers as after RESET or INIT; the ID and the base stay.  Lock held. */
static void reset_regs(struct vireo_lapic *a)
{
	u32 id = reg(a, APIC_ID);
	int i;

	timer_stop(a);
	memset(a->regs, 0, sizeof(a->regs));
	reg_set(a, APIC_ID, id);
	reg_set(a, APIC_LVR, LAPIC_VERSION);
	reg_set(a, APIC_DFR, 0xffffffff);
	reg_set(a, APIC_SPIV, 0xff);
	for (i = 0; i < ARRAY_SIZE(lvt_regs); i++)
		reg_set(a, lvt_regs[i], APIC_LVT_MASKED);
	/* as KVM: the BSP's LINT0 takes the PIC (ExtINT) out of reset */
	if (a->vcpu->id == 0)
		reg_set(a, APIC_LVT0, VIREO_DM_EXTINT << 8);
	if (x2apic_mode(a->base))
		reg_set(a, APIC_LDR, x2apic_ldr(id));
	a->esr_pending = 0;
	a->tsc_deadline = 0;
	bitmap_zero(a->level_isr, 256);
}

/* The ID register and LDR for the base's mode (on a mode change). */
static void set_mode_ids(struct vireo_lapic *a)
{
	u32 id = a->vcpu->id;

	if (x2apic_mode(a->base)) {
		reg_set(a, APIC_ID, id);
		reg_set(a, APIC_LDR, x2apic_ldr(id));
	} else {
		reg_set(a, APIC_ID, id << 24);
		reg_set(a, APIC_LDR, 0);
	}
}

static void lapic_reset(struct vireo_lapic *a, bool init)
{
	struct vireo_vcpu *vcpu = a->vcpu;
	unsigned long flags;
	u64 base = 0;

	spin_lock_irqsave(&a->lock, flags);
	if (!init) {
		base = VIREO_APIC_DEFAULT_BASE | BASE_EN |
		       (vcpu->id == 0 ? BASE_BSP : 0);
		WRITE_ONCE(a->base, base);
		set_mode_ids(a);
		/* INIT leaves these to the run loop, which is taking them */
		a->init_pending = false;
		a->sipi_vector = -1;
	}
	reset_regs(a);
	spin_unlock_irqrestore(&a->lock, flags);
	if (!init)
		vcpu->msr.apic_base = base;
}

void vireo_lapic_reset(struct vireo_vcpu *vcpu, bool init)
{
	if (vcpu->apic)
		lapic_reset(vcpu->apic, init);
}

int vireo_lapic_create(struct vireo_vcpu *vcpu)
{
	struct vireo_lapic *a;

	a = kzalloc(sizeof(*a), GFP_KERNEL_ACCOUNT);
	if (!a)
		return -ENOMEM;
	spin_lock_init(&a->lock);
	a->vcpu = vcpu;
	hrtimer_init(&a->timer, CLOCK_MONOTONIC, HRTIMER_MODE_ABS);
	a->timer.function = lapic_timer_fn;
	lapic_reset(a, false);
	/* pairs with the READ_ONCE in vireo_apic_deliver() */
	smp_store_release(&vcpu->apic, a);
	return 0;
}

void vireo_lapic_free(struct vireo_vcpu *vcpu)
{
	struct vireo_lapic *a = vcpu->apic;
	unsigned long flags;

	if (!a)
		return;
	spin_lock_irqsave(&a->lock, flags);
	a->timer_on = false;
	spin_unlock_irqrestore(&a->lock, flags);
	/* waits for a running callback; with timer_on off it won't restart */
	hrtimer_cancel(&a->timer);
	WRITE_ONCE(vcpu->apic, NULL);
	kfree(a);
}

/* ---- register access, common to xAPIC and x2APIC ---- */

static void lapic_eoi(struct vireo_lapic *a, struct lapic_todo *todo)
{
	int v = vec_highest(a, APIC_ISR);

	if (v < 0)
		return;
	vec_clear(a, APIC_ISR, v);
	update_ppr(a);
	if (__test_and_clear_bit(v, a->level_isr))
		todo->eoi_vector = v;
}

/* An ICR write: the IPI to send after the unlock.  Lock held. */
static void send_ipi(struct vireo_lapic *a, u32 icr, u32 dest,
		     struct lapic_todo *todo)
{
	struct vireo_irq_msg *m = &todo->msg;

	memset(m, 0, sizeof(*m));
	m->vector = icr & APIC_VECTOR_MASK;
	m->delivery_mode = (icr >> 8) & 7;
	m->logical = icr & APIC_DEST_LOGICAL;
	m->assert = icr & APIC_INT_ASSERT;
	m->shorthand = (icr >> 18) & 3;
	m->dest = dest;
	m->src = a->vcpu;
	switch (m->delivery_mode) {
	case VIREO_DM_FIXED:
	case VIREO_DM_LOWEST:
		if (m->vector < 16) {
			lapic_error(a, APIC_ESR_SENDILL);
			return;
		}
		break;
	case VIREO_DM_INIT:
		/* level de-assert: a no-op since the Pentium 4 */
		if ((icr & APIC_INT_LEVELTRIG) && !m->assert)
			return;
		break;
	case VIREO_DM_NMI:
	case VIREO_DM_SIPI:
		break;
	default:		/* SMI, remote read, ExtINT: not by IPI here */
		return;
	}
	/* the trigger bit only means something for INIT: IPIs are edges */
	todo->send = true;
}

static void write_lvt(struct vireo_lapic *a, u32 off, u32 val)
{
	u32 keep;
	int old;

	switch (off) {
	case APIC_LVTT:
		keep = 0x700ff;		/* vector, mask, mode */
		break;
	case APIC_LVT0:
	case APIC_LVT1:
		keep = 0x1a7ff;		/* + delivery, polarity, trigger */
		break;
	case APIC_LVTERR:
		keep = 0x100ff;
		break;
	default:
		keep = 0x107ff;		/* thermal, perf, CMCI */
		break;
	}
	val &= keep;
	if (!sw_enabled(a))
		val |= APIC_LVT_MASKED;
	/* LINT0/1 keep their read-only remote IRR */
	if (off == APIC_LVT0 || off == APIC_LVT1)
		val |= reg(a, off) & APIC_LVT_REMOTE_IRR;
	old = timer_mode(a);
	reg_set(a, off, val);
	/* entering or leaving TSC-deadline mode disarms the timer */
	if (off == APIC_LVTT && old != timer_mode(a) &&
	    (old == TIMER_TSC_DEADLINE || timer_mode(a) == TIMER_TSC_DEADLINE)) {
		timer_stop(a);
		a->tsc_deadline = 0;
		reg_set(a, APIC_TMICT, 0);
	}
}

static void write_tdcr(struct vireo_lapic *a, u32 val)
{
	u32 left = timer_current_count(a);
	bool counting = a->timer_on && timer_mode(a) != TIMER_TSC_DEADLINE;

	reg_set(a, APIC_TDCR, val & TDCR_VALID);
	/* the count goes on from where it was, at the new rate */
	if (counting) {
		timer_stop(a);
		timer_arm(a, ktime_add_ns(ktime_get(),
					  (u64)left * timer_divisor(a)));
	}
}

/*
 * Write register @off (x2APIC: @x2, 64 bits for the ICR); lock held.
 * -EINVAL: the register is read-only or absent (x2APIC #GPs, xAPIC
 * ignores it).
 */
static int reg_write(struct vireo_lapic *a, u32 off, u64 val, bool x2,
		     struct lapic_todo *todo)
{
	u32 v = val;

	switch (off) {
	case APIC_ID:
		if (x2)
			return -EINVAL;
		reg_set(a, APIC_ID, v & 0xff000000);
		break;
	case APIC_TASKPRI:
		reg_set(a, APIC_TASKPRI, v & 0xff);
		update_ppr(a);
		break;
	case APIC_EOI:
		if (x2 && val)
			return -EINVAL;
		lapic_eoi(a, todo);
		break;
	case APIC_LDR:
		if (x2)
			return -EINVAL;
		reg_set(a, APIC_LDR, v & 0xff000000);
		break;
	case APIC_DFR:
		if (x2)
			return -EINVAL;
		reg_set(a, APIC_DFR, v | 0x0fffffff);
		break;
	case APIC_SPIV:
		reg_set(a, APIC_SPIV, v & SVR_VALID);
		if (!sw_enabled(a))
			mask_lvts(a);
		break;
	case APIC_ESR:
		if (x2 && val)
			return -EINVAL;
		/* the write makes the errors since the last one visible */
		reg_set(a, APIC_ESR, a->esr_pending);
		a->esr_pending = 0;
		break;
	case APIC_ICR:
		if (x2)
			reg_set(a, APIC_ICR2, val >> 32);
		reg_set(a, APIC_ICR, v & ICR_VALID);
		send_ipi(a, v, x2 ? reg(a, APIC_ICR2) : reg(a, APIC_ICR2) >> 24,
			 todo);
		break;
	case APIC_ICR2:
		if (x2)
			return -EINVAL;
		reg_set(a, APIC_ICR2, v & 0xff000000);
		break;
	case APIC_LVTT:
	case APIC_LVTTHMR:
	case APIC_LVTPC:
	case APIC_LVT0:
	case APIC_LVT1:
	case APIC_LVTERR:
	case APIC_LVTCMCI:
		write_lvt(a, off, v);
		break;
	case APIC_TMICT:
		/* TSC-deadline mode ignores the initial count */
		if (timer_mode(a) == TIMER_TSC_DEADLINE)
			break;
		reg_set(a, APIC_TMICT, v);
		timer_start_count(a);
		break;
	case APIC_TDCR:
		write_tdcr(a, v);
		break;
	case APIC_SELF_IPI:
		if (!x2 || (val & ~0xffULL))
			return -EINVAL;
		if (v < 16)
			lapic_error(a, APIC_ESR_SENDILL);
		else
			accept_fixed(a, v, false);
		break;
	default:
		return -EINVAL;
	}
	return 0;
}

/* Read register @off; lock held.  -EINVAL: absent or write-only in x2APIC. */
static int reg_read(struct vireo_lapic *a, u32 off, bool x2, u64 *val)
{
	switch (off) {
	case APIC_ID:
	case APIC_LVR:
	case APIC_TASKPRI:
	case APIC_PROCPRI:
	case APIC_LDR:
	case APIC_SPIV:
	case APIC_ESR:
	case APIC_LVTCMCI:
	case APIC_LVTT:
	case APIC_LVTTHMR:
	case APIC_LVTPC:
	case APIC_LVT0:
	case APIC_LVT1:
	case APIC_LVTERR:
	case APIC_TMICT:
	case APIC_TDCR:
		*val = reg(a, off);
		return 0;
	case APIC_ARBPRI:
	case APIC_RRR:
	case APIC_DFR:
	case APIC_ICR2:
		if (x2)
			return -EINVAL;
		*val = reg(a, off);
		return 0;
	case APIC_ICR:
		*val = reg(a, APIC_ICR);
		if (x2)
			*val |= (u64)reg(a, APIC_ICR2) << 32;
		return 0;
	case APIC_TMCCT:
		*val = timer_current_count(a);
		return 0;
	}
	if (off >= APIC_ISR && off < APIC_IRR + 0x80 && !(off & 0xf)) {
		*val = reg(a, off);
		return 0;
	}
	*val = 0;			/* EOI, self IPI, reserved */
	return x2 ? -EINVAL : 0;
}

static void do_todo(struct vireo_vcpu *vcpu, struct lapic_todo *todo)
{
	if (todo->eoi_vector >= 0)
		vireo_ioapic_eoi(vcpu->vm, todo->eoi_vector);
	if (todo->send)
		vireo_apic_deliver(vcpu->vm, &todo->msg);
}

/* ---- xAPIC MMIO ---- */

bool vireo_lapic_mmio(struct vireo_vcpu *vcpu, u64 gpa, void *data,
		      int len, bool write)
{
	struct vireo_lapic *a = vcpu->apic;
	struct lapic_todo todo = { .eoi_vector = -1 };
	unsigned long flags;
	u64 base, off;
	int i;

	if (!a || len < 1 || len > 8)
		return false;
	spin_lock_irqsave(&a->lock, flags);
	base = a->base & BASE_ADDR_MASK;
	if (!hw_enabled(a) || x2apic_mode(a->base) || gpa < base ||
	    gpa - base >= PAGE_SIZE) {
		spin_unlock_irqrestore(&a->lock, flags);
		return false;
	}
	off = gpa - base;
	if (write) {
		u32 v;

		/* registers take aligned dword stores; the rest is dropped */
		if (!(off & 0xf) && (len == 4 || len == 8) &&
		    off < KVM_APIC_REG_SIZE) {
			memcpy(&v, data, 4);
			reg_write(a, off, v, false, &todo);
		}
	} else {
		/* byte by byte: each register's first dword, zeroes elsewhere */
		for (i = 0; i < len; i++) {
			u64 o = off + i, v = 0;

			if (o < KVM_APIC_REG_SIZE && (o & 0xf) < 4)
				reg_read(a, o & ~0xfULL, false, &v);
			((u8 *)data)[i] = v >> (8 * (o & 3));
		}
	}
	spin_unlock_irqrestore(&a->lock, flags);
	do_todo(vcpu, &todo);
	return true;
}

/* ---- MSRs ---- */

int vireo_lapic_get_msr(struct vireo_vcpu *vcpu, u32 msr, u64 *data)
{
	struct vireo_lapic *a = vcpu->apic;
	unsigned long flags;
	int ret;

	if (!a || (msr != MSR_IA32_TSC_DEADLINE &&
		   (msr < X2APIC_MSR_FIRST || msr > X2APIC_MSR_LAST)))
		return 1;
	spin_lock_irqsave(&a->lock, flags);
	if (msr == MSR_IA32_TSC_DEADLINE) {
		*data = timer_mode(a) == TIMER_TSC_DEADLINE ?
			a->tsc_deadline : 0;
		ret = 0;
	} else if (!x2apic_mode(a->base)) {
		ret = -EINVAL;
	} else {
		ret = reg_read(a, (msr - X2APIC_MSR_FIRST) << 4, true, data);
	}
	spin_unlock_irqrestore(&a->lock, flags);
	return ret;
}

int vireo_lapic_set_msr(struct vireo_vcpu *vcpu, u32 msr, u64 data,
			bool host)
{
	struct vireo_lapic *a = vcpu->apic;
	struct lapic_todo todo = { .eoi_vector = -1 };
	unsigned long flags;
	u32 off;
	int ret = 0;

	if (!a || (msr != MSR_IA32_TSC_DEADLINE &&
		   (msr < X2APIC_MSR_FIRST || msr > X2APIC_MSR_LAST)))
		return 1;
	off = (msr - X2APIC_MSR_FIRST) << 4;
	spin_lock_irqsave(&a->lock, flags);
	if (msr == MSR_IA32_TSC_DEADLINE) {
		/*
		 * The guest's write counts only in TSC-deadline mode; the
		 * VMM's is kept whatever the order it restores LAPIC and MSRs.
		 */
		if (host || timer_mode(a) == TIMER_TSC_DEADLINE) {
			a->tsc_deadline = data;
			timer_start_tsc(a);
		}
	} else if (!x2apic_mode(a->base) ||
		   (off != APIC_ICR && (data >> 32))) {
		ret = -EINVAL;
	} else {
		ret = reg_write(a, off, data, true, &todo);
	}
	spin_unlock_irqrestore(&a->lock, flags);
	do_todo(vcpu, &todo);
	return ret;
}

u64 vireo_lapic_get_base(struct vireo_vcpu *vcpu)
{
	struct vireo_lapic *a = vcpu->apic;

	return a ? READ_ONCE(a->base) : vcpu->msr.apic_base;
}

int vireo_lapic_set_base(struct vireo_vcpu *vcpu, u64 val, bool host)
{
	struct vireo_lapic *a = vcpu->apic;
	u64 rsvd = 0xffULL | BIT_ULL(9) |
		   ~GENMASK_ULL(boot_cpu_data.x86_phys_bits - 1, 0);
	unsigned long flags;
	u64 old;

	if (!a)
		return -EINVAL;
	if ((val & rsvd) || ((val & BASE_EXTD) && !(val & BASE_EN)))
		return -EINVAL;
	spin_lock_irqsave(&a->lock, flags);
	old = a->base;
	/* the guest goes x2APIC -> xAPIC and disabled -> x2APIC via steps */
	if (!host && (old & BASE_EN) && (val & BASE_EN) &&
	    x2apic_mode(old) && !x2apic_mode(val)) {
		spin_unlock_irqrestore(&a->lock, flags);
		return -EINVAL;
	}
	if (!host && !(old & BASE_EN) && x2apic_mode(val)) {
		spin_unlock_irqrestore(&a->lock, flags);
		return -EINVAL;
	}
	WRITE_ONCE(a->base, val);
	if ((old ^ val) & (BASE_EN | BASE_EXTD))
		set_mode_ids(a);
	/* globally disabled: back to the power-up state, LVTs masked */
	if (!(val & BASE_EN) && (old & BASE_EN))
		reset_regs(a);
	spin_unlock_irqrestore(&a->lock, flags);
	vcpu->msr.apic_base = val;
	return 0;
}

/* ---- TPR, interrupt acceptance ---- */

u8 vireo_lapic_get_tpr(struct vireo_vcpu *vcpu)
{
	struct vireo_lapic *a = vcpu->apic;
	unsigned long flags;
	u8 tpr;

	if (!a)
		return 0;
	spin_lock_irqsave(&a->lock, flags);
	tpr = reg(a, APIC_TASKPRI);
	spin_unlock_irqrestore(&a->lock, flags);
	return tpr;
}

void vireo_lapic_set_tpr(struct vireo_vcpu *vcpu, u8 tpr)
{
	struct vireo_lapic *a = vcpu->apic;
	unsigned long flags;

	if (!a)
		return;
	spin_lock_irqsave(&a->lock, flags);
	reg_set(a, APIC_TASKPRI, tpr);
	update_ppr(a);
	spin_unlock_irqrestore(&a->lock, flags);
}

int vireo_lapic_pending_vector(struct vireo_vcpu *vcpu)
{
	struct vireo_lapic *a = vcpu->apic;
	unsigned long flags;
	int v;

	if (!a)
		return -1;
	spin_lock_irqsave(&a->lock, flags);
	v = hw_enabled(a) ? vec_highest(a, APIC_IRR) : -1;
	if (v >= 0 && (v & 0xf0) <= (reg(a, APIC_PROCPRI) & 0xf0))
		v = -1;
	spin_unlock_irqrestore(&a->lock, flags);
	return v;
}

bool vireo_lapic_has_interrupt(struct vireo_vcpu *vcpu)
{
	return vireo_lapic_pending_vector(vcpu) >= 0;
}

u8 vireo_lapic_tpr_window(struct vireo_vcpu *vcpu)
{
	struct vireo_lapic *a = vcpu->apic;
	unsigned long flags;
	int irr, isr;
	u8 class = 0;

	if (!a)
		return 0;
	spin_lock_irqsave(&a->lock, flags);
	irr = hw_enabled(a) ? vec_highest(a, APIC_IRR) : -1;
	isr = vec_highest(a, APIC_ISR);
	if (irr >= 0 && (isr < 0 || (irr & 0xf0) > (isr & 0xf0)) &&
	    (irr & 0xf0) <= (reg(a, APIC_TASKPRI) & 0xf0))
		class = irr >> 4;
	spin_unlock_irqrestore(&a->lock, flags);
	return class;
}

void vireo_lapic_ack(struct vireo_vcpu *vcpu, int vector)
{
	struct vireo_lapic *a = vcpu->apic;
	unsigned long flags;

	if (!a || vector < 0 || vector > 255)
		return;
	spin_lock_irqsave(&a->lock, flags);
	if (vec_test(a, APIC_IRR, vector)) {
		vec_clear(a, APIC_IRR, vector);
		vec_set(a, APIC_ISR, vector);
		/* remember now: a new edge may clear the TMR bit before EOI */
		if (vec_test(a, APIC_TMR, vector))
			__set_bit(vector, a->level_isr);
		else
			__clear_bit(vector, a->level_isr);
		update_ppr(a);
	}
	spin_unlock_irqrestore(&a->lock, flags);
}

bool vireo_lapic_accepts_pic(struct vireo_vcpu *vcpu)
{
	struct vireo_lapic *a = vcpu->apic;
	unsigned long flags;
	bool ret;
	u32 lvt;

	if (!a)
		return false;
	spin_lock_irqsave(&a->lock, flags);
	lvt = reg(a, APIC_LVT0);
	ret = !hw_enabled(a) ||
	      (!(lvt & APIC_LVT_MASKED) &&
	       ((lvt >> 8) & 7) == VIREO_DM_EXTINT);
	spin_unlock_irqrestore(&a->lock, flags);
	return ret;
}

/* ---- INIT and SIPI ---- */

bool vireo_lapic_take_init(struct vireo_vcpu *vcpu)
{
	struct vireo_lapic *a = vcpu->apic;
	unsigned long flags;
	bool ret;

	if (!a)
		return false;
	spin_lock_irqsave(&a->lock, flags);
	ret = a->init_pending;
	a->init_pending = false;
	spin_unlock_irqrestore(&a->lock, flags);
	return ret;
}

int vireo_lapic_take_sipi(struct vireo_vcpu *vcpu)
{
	struct vireo_lapic *a = vcpu->apic;
	unsigned long flags;
	int ret;

	if (!a)
		return -1;
	spin_lock_irqsave(&a->lock, flags);
	ret = a->sipi_vector;
	a->sipi_vector = -1;
	spin_unlock_irqrestore(&a->lock, flags);
	return ret;
}

bool vireo_lapic_init_pending(struct vireo_vcpu *vcpu)
{
	struct vireo_lapic *a = vcpu->apic;

	return a && READ_ONCE(a->init_pending);
}

bool vireo_lapic_sipi_pending(struct vireo_vcpu *vcpu)
{
	struct vireo_lapic *a = vcpu->apic;

	return a && READ_ONCE(a->sipi_vector) >= 0;
}

/* ---- delivery ---- */

static bool match_physical(struct vireo_lapic *a, u32 dest, bool x2msg)
{
	u32 bcast = x2msg ? 0xffffffff : 0xff;

	if (dest == bcast || dest == 0xffffffff)
		return true;
	if (x2apic_mode(a->base))
		return dest == reg(a, APIC_ID);
	return dest == reg(a, APIC_ID) >> 24;
}

static bool match_logical(struct vireo_lapic *a, u32 dest)
{
	u32 ldr = reg(a, APIC_LDR);
	u8 mda = dest, lid = ldr >> 24;

	if (x2apic_mode(a->base))
		return dest == 0xffffffff ||
		       ((dest >> 16) == (ldr >> 16) && (dest & ldr & 0xffff));
	switch (reg(a, APIC_DFR) >> 28) {
	case 0xf:			/* flat: a bit per APIC */
		return lid & mda;
	case 0x0:			/* cluster: 4 bits each, cluster 15 = all */
		return ((mda >> 4) == 0xf || (mda >> 4) == (lid >> 4)) &&
		       (mda & lid & 0xf);
	default:
		return false;
	}
}

/* Does @msg address this APIC?  Lock held. */
static bool lapic_match(struct vireo_lapic *a, const struct vireo_irq_msg *msg,
			bool x2msg)
{
	if (!hw_enabled(a))
		return false;
	switch (msg->shorthand) {
	case VIREO_SH_SELF:
		return a->vcpu == msg->src;
	case VIREO_SH_ALL:
		return true;
	case VIREO_SH_OTHERS:
		return a->vcpu != msg->src;
	}
	return msg->logical ? match_logical(a, msg->dest) :
			      match_physical(a, msg->dest, x2msg);
}

/*
 * Hand @msg to @vcpu if it is addressed, as delivery mode @dm.  With
 * @ppr (lowest priority, first pass) only report whether it would take a
 * fixed interrupt, and its PPR.  Returns true when it took it.
 */
static bool lapic_accept(struct vireo_vcpu *vcpu, struct vireo_lapic *a,
			 const struct vireo_irq_msg *msg, bool x2msg, int dm,
			 u32 *ppr)
{
	unsigned long flags;
	bool took = false;

	spin_lock_irqsave(&a->lock, flags);
	if (!lapic_match(a, msg, x2msg))
		goto out;
	if (ppr) {
		took = sw_enabled(a);
		*ppr = reg(a, APIC_PROCPRI);
		goto out;
	}
	switch (dm) {
	case VIREO_DM_FIXED:
		took = accept_fixed(a, msg->vector, msg->level_trig);
		break;
	case VIREO_DM_NMI:
		atomic_inc(&vcpu->nmi_queued);
		took = true;
		break;
	case VIREO_DM_INIT:
		a->init_pending = true;
		took = true;
		break;
	case VIREO_DM_SIPI:
		a->sipi_vector = msg->vector;
		took = true;
		break;
	case VIREO_DM_EXTINT:
		/* the run loop asks the PIC for the vector */
		took = true;
		break;
	}
out:
	spin_unlock_irqrestore(&a->lock, flags);
	if (took && !ppr)
		vireo_vcpu_kick(vcpu);
	return took;
}

/*
 * Lowest priority goes to the matching, software-enabled APIC with the
 * lowest PPR (the first one of those on a tie), as a fixed interrupt.
 */
int vireo_apic_deliver(struct vireo_vm *vm, const struct vireo_irq_msg *msg)
{
	struct vireo_vcpu *best = NULL;
	u32 best_ppr = U32_MAX;
	int n, i, taken = 0;
	bool x2msg = false;
	int dm = msg->delivery_mode;

	if (dm == VIREO_DM_SMI || dm == 3 || dm > VIREO_DM_EXTINT)
		return -1;
	if (dm == VIREO_DM_INIT && msg->level_trig && !msg->assert)
		return -1;
	/* an x2APIC sender's destination is 32 bits: 0xff is an APIC ID */
	if (msg->src) {
		struct vireo_lapic *sa = READ_ONCE(msg->src->apic);

		x2msg = sa && x2apic_mode(READ_ONCE(sa->base));
	}
	/* pairs with the release that publishes a new vCPU */
	n = min(smp_load_acquire(&vm->nr_vcpus), VIREO_MAX_VCPUS);
	for (i = 0; i < n; i++) {
		struct vireo_vcpu *vcpu = READ_ONCE(vm->vcpus[i]);
		struct vireo_lapic *a;
		u32 ppr = 0;

		if (!vcpu)
			continue;
		a = READ_ONCE(vcpu->apic);
		if (!a)
			continue;
		if (dm == VIREO_DM_LOWEST) {
			if (lapic_accept(vcpu, a, msg, x2msg, dm, &ppr) &&
			    ppr < best_ppr) {
				best = vcpu;
				best_ppr = ppr;
			}
			continue;
		}
		if (lapic_accept(vcpu, a, msg, x2msg, dm, NULL))
			taken++;
	}
	if (best && lapic_accept(best, READ_ONCE(best->apic), msg, x2msg,
				 VIREO_DM_FIXED, NULL))
		taken++;
	return taken ? taken : -1;
}

/* ---- KVM_GET/SET_LAPIC ---- */

void vireo_lapic_get_state(struct vireo_vcpu *vcpu, struct kvm_lapic_state *s)
{
	struct vireo_lapic *a = vcpu->apic;
	unsigned long flags;
	u32 count, id;

	memset(s, 0, sizeof(*s));
	if (!a)
		return;
	spin_lock_irqsave(&a->lock, flags);
	memcpy(s->regs, a->regs, sizeof(a->regs));
	count = timer_current_count(a);
	/* without KVM_X2APIC_API_USE_32BIT_IDS the ID is in bits 31:24 */
	id = x2apic_mode(a->base) ? reg(a, APIC_ID) << 24 : reg(a, APIC_ID);
	spin_unlock_irqrestore(&a->lock, flags);
	memcpy(&s->regs[APIC_TMCCT], &count, 4);
	memcpy(&s->regs[APIC_ID], &id, 4);
}

int vireo_lapic_set_state(struct vireo_vcpu *vcpu,
			  const struct kvm_lapic_state *s)
{
	struct vireo_lapic *a = vcpu->apic;
	unsigned long flags;
	int v;

	if (!a)
		return -ENXIO;
	spin_lock_irqsave(&a->lock, flags);
	timer_stop(a);
	memcpy(a->regs, s->regs, sizeof(a->regs));
	reg_set(a, APIC_LVR, LAPIC_VERSION);
	/* the x2APIC ID is read-only: the page's ID does not count then */
	if (x2apic_mode(a->base))
		set_mode_ids(a);
	else
		reg_set(a, APIC_ID, reg(a, APIC_ID) & 0xff000000);
	reg_set(a, APIC_DFR, reg(a, APIC_DFR) | 0x0fffffff);
	reg_set(a, APIC_ICR, reg(a, APIC_ICR) & ICR_VALID);
	reg_set(a, APIC_TMCCT, 0);
	a->esr_pending = 0;
	bitmap_zero(a->level_isr, 256);
	for (v = 16; v < 256; v++)
		if (vec_test(a, APIC_ISR, v) && vec_test(a, APIC_TMR, v))
			__set_bit(v, a->level_isr);
	update_ppr(a);
	if (timer_mode(a) == TIMER_TSC_DEADLINE)
		timer_start_tsc(a);
	else
		timer_start_count(a);
	spin_unlock_irqrestore(&a->lock, flags);
	return 0;
}
