// SPDX-License-Identifier: GPL-2.0-only
/*
 * The 8254 interval timer: three counters clocked at 1.193182 MHz behind
 * ports 0x40-0x43, channel 0 wired to IRQ 0, channel 2 to the speaker
 * logic of port 0x61.  Nothing ticks: a counter's value and output are
 * worked out from the time elapsed since its count was loaded, and only
 * channel 0 runs a host timer, for its interrupt.
 */
#define pr_fmt(fmt) "vireo: " fmt

#include <linux/bits.h>
#include <linux/errno.h>
#include <linux/hrtimer.h>
#include <linux/kernel.h>
#include <linux/ktime.h>
#include <linux/kvm.h>
#include <linux/math64.h>
#include <linux/minmax.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/string.h>

#include <vireo/irq.h>
#include <vireo/vireo.h>

#define PIT_HZ			1193182
#define PIT_CHANNELS		3
#define PIT_MAX_COUNT		0x10000		/* a count of 0 means this */
#define PIT_PORT_DATA		0x40		/* 0x40-0x42: channels 0-2 */
#define PIT_PORT_CTRL		0x43
#define PIT_PORT_SPEAKER	0x61

/* The fastest periodic interrupt we run channel 0 at (20 kHz). */
#define PIT_MIN_PERIOD_NS	50000LL

/*
 * rw_mode, read_state, write_state and count_latched, with the values
 * KVM_GET_PIT2 users know.  WORD0/WORD1: LSB then MSB, the LSB (MSB)
 * is the next byte.
 */
enum {
	RW_LATCH,	/* only in a control word: latch the count */
	RW_LSB,
	RW_MSB,
	RW_WORD0,
	RW_WORD1,
};

/* A channel no one has programmed since reset: it does nothing. */
#define MODE_NONE		0xff

/* Control word fields */
#define CW_SELECT(v)		((v) >> 6)
#define CW_RW(v)		(((v) >> 4) & 3)
#define CW_MODE(v)		(((v) >> 1) & 7)
#define CW_BCD			BIT(0)
#define CW_READBACK		3	/* CW_SELECT() of a read-back command */
#define RB_NO_COUNT		BIT(5)
#define RB_NO_STATUS		BIT(4)
#define RB_CHANNEL(i)		BIT((i) + 1)

/* Status byte (read-back) */
#define ST_OUT			BIT(7)
#define ST_NULL_COUNT		BIT(6)

/* Port 0x61 */
#define SPK_GATE2		BIT(0)
#define SPK_DATA		BIT(1)
#define SPK_KEPT		(BIT(2) | BIT(3))	/* NMI source enables */
#define SPK_REFRESH		BIT(4)
#define SPK_OUT2		BIT(5)

#define PIT_STATE_FLAGS		(KVM_PIT_FLAGS_HPET_LEGACY | \
				 KVM_PIT_FLAGS_SPEAKER_DATA_ON)

struct pit_channel {
	/* what KVM_GET/SET_PIT2 move, in their layout */
	struct kvm_pit_channel_state s;
	/* control word (or, mode 0, a count's first byte) in: null count */
	bool waiting;
	/* modes 1 and 5: count loaded, no gate trigger yet */
	bool armed;
};

struct vireo_pit {
	struct vireo_vm *vm;
	/* everything below; taken from the timer callback too */
	spinlock_t lock;
	struct pit_channel ch[PIT_CHANNELS];
	u32 flags;		/* KVM_PIT_FLAGS_* */
	u32 config;		/* KVM_CREATE_PIT2 flags, kept */
	u8 port61;		/* SPK_KEPT bits as written */
	bool refresh;

	/*
	 * Channel 0's interrupt.  timer_on/periodic/period say what the
	 * timer should be doing; the callback checks them, so a timer that
	 * a concurrent update failed to cancel does no harm.
	 */
	struct hrtimer timer;
	bool timer_on;
	bool periodic;
	ktime_t period;
};

/* Both pointers are published with a release once their object is set. */
static struct vireo_pit *vm_pit(struct vireo_vm *vm)
{
	struct vireo_irqchip *chip;

	/* pairs with the release in KVM_CREATE_IRQCHIP */
	chip = smp_load_acquire(&vm->irqchip);
	if (!chip)
		return NULL;
	/* pairs with the release in vireo_pit_create() */
	return smp_load_acquire(&chip->pit);
}

static u64 ns_to_ticks(s64 ns)
{
	return ns > 0 ? mul_u64_u32_div(ns, PIT_HZ, NSEC_PER_SEC) : 0;
}

static s64 ticks_to_ns(u64 ticks)
{
	return mul_u64_u32_div(ticks, NSEC_PER_SEC, PIT_HZ);
}

static u64 elapsed(const struct pit_channel *c, ktime_t now)
{
	return ns_to_ticks(ktime_to_ns(now) - c->s.count_load_time);
}

static bool is_rate_mode(u8 mode)
{
	return mode == 2 || mode == 3;
}

/*
 * Counting right now.  The gate stops modes 2 and 3 (and resets them on
 * its rising edge); modes 1 and 5 wait for that edge.  We let modes 0
 * and 4 count through a low gate: nothing we know of depends on it.
 */
static bool counting(const struct pit_channel *c)
{
	if (c->waiting || c->armed || c->s.mode > 5)
		return false;
	return !(is_rate_mode(c->s.mode) && !c->s.gate);
}

/* The counting element, as the guest reads it (65536 reads as 0). */
static u16 chan_count(const struct pit_channel *c, ktime_t now)
{
	u32 n = c->s.count, pos, high;
	u64 d;

	if (!counting(c))
		return n;
	d = elapsed(c, now);
	switch (c->s.mode) {
	case 2:
		/* N, N-1, ... 1, then N again */
		div_u64_rem(d, n, &pos);
		return n - pos;
	case 3:
		/*
		 * Counts down by two through each half period; an odd count
		 * spends one clock more in the high half.
		 */
		div_u64_rem(d, n, &pos);
		high = (n + 1) / 2;
		if (pos >= high)
			pos -= high;
		return (n & ~1U) - 2 * pos;
	default:
		/* one pass from N, then the counter wraps and goes on */
		return n - (u32)d;
	}
}

static bool chan_out(const struct pit_channel *c, ktime_t now)
{
	u32 n = c->s.count, pos;
	u64 d;

	if (c->s.mode > 5)
		return false;
	/* programmed, not started: OUT sits at the mode's initial level */
	if (c->waiting)
		return c->s.mode != 0;
	if (c->armed || (is_rate_mode(c->s.mode) && !c->s.gate))
		return true;
	d = elapsed(c, now);
	switch (c->s.mode) {
	case 0:
	case 1:
		/* low while counting, high from terminal count on */
		return d >= n;
	case 2:
		/* low for the one clock before each reload */
		div_u64_rem(d, n, &pos);
		return pos != n - 1;
	case 3:
		div_u64_rem(d, n, &pos);
		return pos < (n + 1) / 2;
	default:
		/* modes 4 and 5: a one-clock low strobe at terminal count */
		return d != n;
	}
}

static u8 chan_status(const struct pit_channel *c, ktime_t now)
{
	u8 mode = c->s.mode <= 5 ? c->s.mode : 0;

	return (chan_out(c, now) ? ST_OUT : 0) |
	       (c->waiting ? ST_NULL_COUNT : 0) |
	       (c->s.rw_mode & 3) << 4 | mode << 1 | (c->s.bcd & CW_BCD);
}

/*
 * Work out what channel 0's timer should do and make it do so; @pit->lock
 * held.  The counter was (re)started at count_load_time, which every
 * caller has just set to now, so the first edge is a full count away.
 */
static void plan_timer(struct vireo_pit *pit, ktime_t now)
{
	struct pit_channel *c = &pit->ch[0];
	u64 n = c->s.count;
	s64 first;

	pit->timer_on = false;
	if ((pit->flags & KVM_PIT_FLAGS_HPET_LEGACY) || !counting(c))
		goto stop;

	switch (c->s.mode) {
	case 2:
	case 3:
		/* IRQ 0 rises once per period */
		pit->periodic = true;
		pit->period = ns_to_ktime(max(ticks_to_ns(n),
					      PIT_MIN_PERIOD_NS));
		first = c->s.count_load_time + ktime_to_ns(pit->period);
		break;
	case 4:
	case 5:
		/* rises again when the strobe ends */
		n++;
		fallthrough;
	default:
		if (elapsed(c, now) >= n)
			goto stop;
		pit->periodic = false;
		first = c->s.count_load_time + ticks_to_ns(n);
		break;
	}
	pit->timer_on = true;
	hrtimer_start(&pit->timer, ns_to_ktime(first), HRTIMER_MODE_ABS);
	return;
stop:
	/* if the callback is running, it sees !timer_on on its next run */
	hrtimer_try_to_cancel(&pit->timer);
}

/*
 * Ticks the host could not deliver in time are dropped, never replayed:
 * KVM_REINJECT_CONTROL is accepted, but this is always its !reinject
 * mode.
 */
static enum hrtimer_restart pit_timer_fn(struct hrtimer *timer)
{
	struct vireo_pit *pit = container_of(timer, struct vireo_pit, timer);
	enum hrtimer_restart ret = HRTIMER_NORESTART;
	unsigned long flags;
	bool fire;

	spin_lock_irqsave(&pit->lock, flags);
	fire = pit->timer_on;
	if (fire && pit->periodic) {
		hrtimer_forward_now(timer, pit->period);
		ret = HRTIMER_RESTART;
	} else {
		pit->timer_on = false;
	}
	spin_unlock_irqrestore(&pit->lock, flags);

	if (fire) {
		/* an edge on GSI 0 */
		vireo_irq_set(pit->vm, 0, 1);
		vireo_irq_set(pit->vm, 0, 0);
	}
	return ret;
}

static void load_count(struct pit_channel *c, u32 val, ktime_t now)
{
	c->s.count = val ? val : PIT_MAX_COUNT;
	c->s.count_load_time = ktime_to_ns(now);
	c->waiting = false;
	c->armed = c->s.mode == 1 || c->s.mode == 5;
}

static void set_gate(struct pit_channel *c, bool gate, ktime_t now)
{
	bool rising = !c->s.gate && gate;

	c->s.gate = gate;
	if (!rising || c->waiting || c->s.mode > 5)
		return;
	/* a trigger: modes 1 and 5 start (again), modes 2 and 3 reload */
	if (c->s.mode == 1 || c->s.mode == 5 || is_rate_mode(c->s.mode)) {
		c->armed = false;
		c->s.count_load_time = ktime_to_ns(now);
	}
}

static void latch_count(struct pit_channel *c, ktime_t now)
{
	/* a second latch before the first is read is ignored */
	if (c->s.count_latched)
		return;
	c->s.latched_count = chan_count(c, now);
	c->s.count_latched = c->s.rw_mode;
}

static void latch_status(struct pit_channel *c, ktime_t now)
{
	if (c->s.status_latched)
		return;
	c->s.status = chan_status(c, now);
	c->s.status_latched = 1;
}

static void write_control(struct vireo_pit *pit, u8 val, ktime_t now)
{
	struct pit_channel *c;
	u8 mode;
	int i;

	if (CW_SELECT(val) == CW_READBACK) {
		for (i = 0; i < PIT_CHANNELS; i++) {
			if (!(val & RB_CHANNEL(i)))
				continue;
			if (!(val & RB_NO_COUNT))
				latch_count(&pit->ch[i], now);
			if (!(val & RB_NO_STATUS))
				latch_status(&pit->ch[i], now);
		}
		return;
	}

	c = &pit->ch[CW_SELECT(val)];
	if (CW_RW(val) == RW_LATCH) {
		latch_count(c, now);
		return;
	}
	/* modes 6 and 7 are 2 and 3 with a don't-care bit */
	mode = CW_MODE(val);
	if (mode > 5)
		mode -= 4;
	c->s.mode = mode;
	c->s.bcd = val & CW_BCD;
	c->s.rw_mode = CW_RW(val);
	c->s.read_state = c->s.rw_mode;
	c->s.write_state = c->s.rw_mode;
	/* a new control word stops the counter until a count comes */
	c->waiting = true;
	c->armed = false;
	if (c == &pit->ch[0])
		plan_timer(pit, now);
}

/* BCD counting is not emulated: the count is taken as binary. */
static void write_data(struct vireo_pit *pit, int i, u8 val, ktime_t now)
{
	struct pit_channel *c = &pit->ch[i];

	switch (c->s.write_state) {
	case RW_LSB:
		load_count(c, val, now);
		break;
	case RW_MSB:
		load_count(c, val << 8, now);
		break;
	case RW_WORD0:
		c->s.write_latch = val;
		c->s.write_state = RW_WORD1;
		/* in mode 0 the first byte already stops the count */
		if (c->s.mode == 0)
			c->waiting = true;
		break;
	default:
		c->s.write_state = RW_WORD0;
		load_count(c, c->s.write_latch | val << 8, now);
		break;
	}
	if (i == 0)
		plan_timer(pit, now);
}

static u8 read_data(struct pit_channel *c, ktime_t now)
{
	u16 v;

	if (c->s.status_latched) {
		c->s.status_latched = 0;
		return c->s.status;
	}
	switch (c->s.count_latched) {
	case RW_LSB:
		c->s.count_latched = 0;
		return c->s.latched_count & 0xff;
	case RW_MSB:
		c->s.count_latched = 0;
		return c->s.latched_count >> 8;
	case RW_WORD0:
		c->s.count_latched = RW_MSB;
		return c->s.latched_count & 0xff;
	}

	v = chan_count(c, now);
	switch (c->s.read_state) {
	case RW_MSB:
		return v >> 8;
	case RW_WORD0:
		c->s.read_state = RW_WORD1;
		return v & 0xff;
	case RW_WORD1:
		c->s.read_state = RW_WORD0;
		return v >> 8;
	default:
		return v & 0xff;
	}
}

static u8 read_speaker(struct vireo_pit *pit, ktime_t now)
{
	struct pit_channel *c2 = &pit->ch[2];
	u8 v = pit->port61;

	if (c2->s.gate)
		v |= SPK_GATE2;
	if (pit->flags & KVM_PIT_FLAGS_SPEAKER_DATA_ON)
		v |= SPK_DATA;
	if (pit->refresh)
		v |= SPK_REFRESH;
	if (chan_out(c2, now))
		v |= SPK_OUT2;
	/* firmware and calibration loops wait for this bit to move */
	pit->refresh = !pit->refresh;
	return v;
}

static void write_speaker(struct vireo_pit *pit, u8 val, ktime_t now)
{
	pit->port61 = val & SPK_KEPT;
	if (val & SPK_DATA)
		pit->flags |= KVM_PIT_FLAGS_SPEAKER_DATA_ON;
	else
		pit->flags &= ~KVM_PIT_FLAGS_SPEAKER_DATA_ON;
	set_gate(&pit->ch[2], val & SPK_GATE2, now);
}

/*
 * Port 0x61 is ours whether or not KVM_PIT_SPEAKER_DUMMY was asked for.
 * Only the low byte of a wider access means anything; the rest of a
 * read is all ones, as on an empty bus.
 */
bool vireo_pit_pio(struct vireo_vm *vm, u16 port, void *data, int len,
		   bool write)
{
	struct vireo_pit *pit = vm_pit(vm);
	unsigned long flags;
	u8 *b = data;
	ktime_t now;
	u8 val = 0xff;

	if (!pit)
		return false;
	if ((port < PIT_PORT_DATA || port > PIT_PORT_CTRL) &&
	    port != PIT_PORT_SPEAKER)
		return false;
	if (len != 1 && len != 2 && len != 4)
		return false;

	spin_lock_irqsave(&pit->lock, flags);
	now = ktime_get();
	if (write) {
		if (port == PIT_PORT_SPEAKER)
			write_speaker(pit, b[0], now);
		else if (port == PIT_PORT_CTRL)
			write_control(pit, b[0], now);
		else
			write_data(pit, port - PIT_PORT_DATA, b[0], now);
	} else {
		/* the control register cannot be read */
		if (port == PIT_PORT_SPEAKER)
			val = read_speaker(pit, now);
		else if (port != PIT_PORT_CTRL)
			val = read_data(&pit->ch[port - PIT_PORT_DATA], now);
	}
	spin_unlock_irqrestore(&pit->lock, flags);

	if (!write) {
		memset(b, 0xff, len);
		b[0] = val;
	}
	return true;
}

static void reset_channels(struct vireo_pit *pit, ktime_t now)
{
	int i;

	for (i = 0; i < PIT_CHANNELS; i++) {
		struct pit_channel *c = &pit->ch[i];

		memset(c, 0, sizeof(*c));
		c->s.mode = MODE_NONE;
		c->s.rw_mode = RW_WORD0;
		c->s.read_state = RW_WORD0;
		c->s.write_state = RW_WORD0;
		c->s.count = PIT_MAX_COUNT;
		c->s.count_load_time = ktime_to_ns(now);
		/* channels 0 and 1 have their gates tied high */
		c->s.gate = i != 2;
	}
}

int vireo_pit_create(struct vireo_vm *vm, u32 flags)
{
	struct vireo_irqchip *chip = vm->irqchip;
	struct vireo_pit *pit;

	if (!chip)
		return -ENOENT;
	if (chip->pit)
		return -EEXIST;
	if (flags & ~KVM_PIT_SPEAKER_DUMMY)
		return -EINVAL;

	pit = kzalloc(sizeof(*pit), GFP_KERNEL_ACCOUNT);
	if (!pit)
		return -ENOMEM;
	pit->vm = vm;
	pit->config = flags;
	spin_lock_init(&pit->lock);
	hrtimer_init(&pit->timer, CLOCK_MONOTONIC, HRTIMER_MODE_ABS);
	pit->timer.function = pit_timer_fn;
	reset_channels(pit, ktime_get());
	/* initialised before anyone finds it (vm_pit()) */
	smp_store_release(&chip->pit, pit);
	return 0;
}

void vireo_pit_free(struct vireo_vm *vm)
{
	struct vireo_irqchip *chip = vm->irqchip;
	struct vireo_pit *pit = chip ? chip->pit : NULL;
	unsigned long flags;

	if (!pit)
		return;
	spin_lock_irqsave(&pit->lock, flags);
	pit->timer_on = false;
	spin_unlock_irqrestore(&pit->lock, flags);
	hrtimer_cancel(&pit->timer);
	chip->pit = NULL;
	kfree(pit);
}

int vireo_pit_get_state(struct vireo_vm *vm, struct kvm_pit_state2 *s)
{
	struct vireo_pit *pit = vm_pit(vm);
	unsigned long flags;
	int i;

	if (!pit)
		return -ENXIO;
	memset(s, 0, sizeof(*s));
	spin_lock_irqsave(&pit->lock, flags);
	for (i = 0; i < PIT_CHANNELS; i++)
		s->channels[i] = pit->ch[i].s;
	s->flags = pit->flags;
	spin_unlock_irqrestore(&pit->lock, flags);
	return 0;
}

/* Make a channel from the VMM safe to run: every field in range. */
static void sanitize_channel(struct kvm_pit_channel_state *c)
{
	if (c->mode == 6 || c->mode == 7)
		c->mode -= 4;
	else if (c->mode > 5)
		c->mode = MODE_NONE;
	if (c->rw_mode < RW_LSB || c->rw_mode > RW_WORD0)
		c->rw_mode = RW_WORD0;
	if (c->read_state < RW_LSB || c->read_state > RW_WORD1)
		c->read_state = c->rw_mode;
	if (c->write_state < RW_LSB || c->write_state > RW_WORD1)
		c->write_state = c->rw_mode;
	if (c->count_latched > RW_WORD0)
		c->count_latched = 0;
	c->status_latched = !!c->status_latched;
	c->bcd = !!c->bcd;
	c->gate = !!c->gate;
	if (!c->count || c->count > PIT_MAX_COUNT)
		c->count = PIT_MAX_COUNT;
}

/*
 * The counts restart now: a count_load_time from another host (or
 * another boot) means nothing on our clock.
 */
int vireo_pit_set_state(struct vireo_vm *vm, const struct kvm_pit_state2 *s)
{
	struct kvm_pit_channel_state ch[PIT_CHANNELS];
	struct vireo_pit *pit = vm_pit(vm);
	unsigned long flags;
	ktime_t now;
	int i;

	if (!pit)
		return -ENXIO;
	for (i = 0; i < PIT_CHANNELS; i++) {
		ch[i] = s->channels[i];
		sanitize_channel(&ch[i]);
	}

	spin_lock_irqsave(&pit->lock, flags);
	now = ktime_get();
	for (i = 0; i < PIT_CHANNELS; i++) {
		struct pit_channel *c = &pit->ch[i];

		c->s = ch[i];
		c->s.count_load_time = ktime_to_ns(now);
		c->waiting = false;
		c->armed = false;
	}
	pit->flags = s->flags & PIT_STATE_FLAGS;
	plan_timer(pit, now);
	spin_unlock_irqrestore(&pit->lock, flags);
	return 0;
}
