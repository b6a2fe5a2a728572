// SPDX-License-Identifier: GPL-2.0-only
/*
 * The in-kernel irqchip (KVM_CREATE_IRQCHIP), one VM per case, with a
 * long-mode guest that takes its interrupts through its IDT and waits
 * for them in HLT: the irqchip ioctls and their errnos, the local APIC
 * timer (one-shot, periodic, TSC-deadline), the IOAPIC driven by
 * KVM_IRQ_LINE and by irqfds (edge, and level with a resamplefd),
 * ioeventfds, KVM_SIGNAL_MSI, a halted vCPU kicked out by a signal, and
 * the PIT.  With the irqchip in the kernel HLT never exits to userspace.
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "lib/guest.h"
#include "lib/tap.h"
#include "lib/x86.h"

#define RUN_MS		8000	/* a guest's whole run */
#define SETTLE_MS	50	/* for a vCPU to get into HLT */
#define TIMER_VEC	0xec
#define TIMER_COUNT	1000000	/* 1 ms at KVM's 1 GHz APIC timer */
#define LINE_VEC	0x55
#define IRQFD_VEC	0x56
#define LEVEL_VEC	0x57
#define WAKE_VEC	0x59
#define MSI_VEC		0x66
#define PIT_VEC0	0x30	/* IOAPIC pin 0 */
#define PIT_VEC2	0x32	/* IOAPIC pin 2 */
#define PIT_COUNT	1193	/* 1 kHz */
#define IOEV_PORT	0x700
#define IOEV_MATCH	0x1234
#define IOEV_MMIO	0xd0000000UL	/* in no memslot */
#define IOEV_MMIO_MATCH	0xcafe

/* What the guest does and tells, in the image both sides share */
static volatile struct {
	int pin;		/* IOAPIC pin to route, -1: none */
	uint32_t vector, level, n;
} cfg;
static volatile uint32_t ready;		/* waiting for interrupt #ready */
static volatile uint32_t halts;		/* HLTs executed */
static volatile uint64_t deadline, fired_tsc;

static int kvm_fd;
static const char *skip_reason;

static GUEST_CODE void eoi(struct x86_regs *regs)
{
	(void)regs;
	xapic_write(APIC_EOI, 0);
}

static GUEST_CODE void tsc_eoi(struct x86_regs *regs)
{
	(void)regs;
	fired_tsc = rdtsc();
	xapic_write(APIC_EOI, 0);
}

/*
 * APIC on, its LINT0 and both 8259s masked: the only interrupts are the
 * APIC's own and the IOAPIC's.
 */
static GUEST_CODE void guest_apic_on(void)
{
	outb(0x21, 0xff);
	outb(0xa1, 0xff);
	xapic_write(APIC_LVT0, APIC_LVT_MASKED);
	xapic_write(APIC_SPIV, APIC_SPIV_ENABLE | 0xff);
}

/* Halt (interrupts on) until vector @v was taken @n times in all. */
static GUEST_CODE void wait_vector(uint32_t v, uint32_t n)
{
	while (x86_log.count[v] < n) {
		halts++;
		x86_safe_halt();
	}
}

static GUEST_CODE void guest_oneshot(uint64_t count)
{
	guest_apic_on();
	xapic_write(APIC_TDCR, 0xb);		/* divide by 1 */
	xapic_write(APIC_LVTT, TIMER_VEC);	/* one-shot */
	xapic_write(APIC_TMICT, count);
	wait_vector(TIMER_VEC, 1);
	GUEST_ASSERT(xapic_read(APIC_TMCCT) == 0);
	GUEST_DONE();
}

static GUEST_CODE void guest_periodic(uint64_t count)
{
	guest_apic_on();
	xapic_write(APIC_TDCR, 0xb);
	xapic_write(APIC_LVTT, TIMER_VEC | APIC_TIMER_PERIODIC);
	xapic_write(APIC_TMICT, count);
	wait_vector(TIMER_VEC, 5);
	xapic_write(APIC_TMICT, 0);		/* stops it */
	GUEST_ASSERT(xapic_read(APIC_TMCCT) == 0);
	GUEST_DONE();
}

static GUEST_CODE void guest_tsc_deadline(uint64_t delta)
{
	guest_apic_on();
	xapic_write(APIC_LVTT, TIMER_VEC | APIC_TIMER_TSC_DEADLINE);
	deadline = rdtsc() + delta;
	wrmsr(MSR_IA32_TSC_DEADLINE, deadline);
	wait_vector(TIMER_VEC, 1);
	/* the MSR reads 0 once the timer fired */
	GUEST_ASSERT(rdmsr(MSR_IA32_TSC_DEADLINE) == 0);
	GUEST_DONE();
}

/*
 * Route cfg.pin (if any) to cfg.vector, then for each of cfg.n
 * interrupts say ready and halt until it came.
 */
static GUEST_CODE void guest_wait(uint64_t arg)
{
	uint32_t i;

	(void)arg;
	guest_apic_on();
	if (cfg.pin >= 0)
		ioapic_route(cfg.pin, cfg.vector |
			     (cfg.level ? IOAPIC_REDIR_LEVEL : 0), 0);
	for (i = 1; i <= cfg.n; i++) {
		ready = i;
		wait_vector(cfg.vector, i);
	}
	GUEST_DONE();
}

static GUEST_CODE void guest_ioeventfd(uint64_t arg)
{
	volatile uint32_t *mmio = (volatile uint32_t *)IOEV_MMIO;
	uint32_t i;

	(void)arg;
	for (i = 0; i < 3; i++) {
		outw(IOEV_PORT, IOEV_MATCH);
		outw(IOEV_PORT + 2, i);
		mmio[0] = i;
		mmio[4] = IOEV_MMIO_MATCH;
	}
	GUEST_SYNC(3);
	outw(IOEV_PORT, IOEV_MATCH + 1);
	mmio[4] = IOEV_MMIO_MATCH + 1;
	GUEST_DONE();
}

static GUEST_CODE void guest_pit(uint64_t arg)
{
	(void)arg;
	guest_apic_on();
	ioapic_route(0, PIT_VEC0, 0);
	ioapic_route(2, PIT_VEC2, 0);
	outb(0x43, 0x34);	/* channel 0, low then high byte, mode 2 */
	outb(0x40, PIT_COUNT & 0xff);
	outb(0x40, PIT_COUNT >> 8);
	while (x86_log.count[PIT_VEC0] + x86_log.count[PIT_VEC2] < 3) {
		halts++;
		x86_safe_halt();
	}
	ioapic_route(0, IOAPIC_REDIR_MASKED, 0);
	ioapic_route(2, IOAPIC_REDIR_MASKED, 0);
	GUEST_DONE();
}

static bool need_cap(long cap, const char *name)
{
	if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, cap) > 0)
		return true;
	skip_reason = name;
	return false;
}

#define NEED(cap)	need_cap(cap, "no " #cap)

static void skip_n(int n, const char *what)
{
	int i;

	for (i = 1; i <= n; i++)
		tap_skip(skip_reason, "%s (%d of %d)", what, i, n);
}

static void fail_n(int n, const char *what)
{
	int i;

	errno = 0;
	for (i = 1; i <= n; i++)
		tap_ok(false, "%s (%d of %d): no VM", what, i, n);
}

/* A VM with the irqchip (and a PIT), then vCPU 0 at @fn(@arg). */
static bool new_vm(struct guest_vm *g, const char *dev,
		   void (*fn)(uint64_t), uint64_t arg, bool pit)
{
	struct kvm_pit_config pc = { .flags = 0 };

	memset(g, 0, sizeof(*g));
	if (!x86_vm_create(&g->vm, dev))
		return false;
	if (ioctl(g->vm.fd, KVM_CREATE_IRQCHIP, 0)) {
		tap_diag("KVM_CREATE_IRQCHIP: %s", strerror(errno));
		goto fail;
	}
	if (pit && ioctl(g->vm.fd, KVM_CREATE_PIT2, &pc)) {
		tap_diag("KVM_CREATE_PIT2: %s", strerror(errno));
		goto fail;
	}
	if (!x86_vcpu_add(&g->vm, &g->vcpu, 0, fn, arg))
		goto fail;
	x86_handlers[TIMER_VEC] = eoi;
	cfg.pin = -1;
	cfg.vector = 0;
	cfg.level = 0;
	cfg.n = 0;
	ready = 0;
	halts = 0;
	deadline = 0;
	fired_tsc = 0;
	return true;
fail:
	vm_destroy(&g->vm);
	return false;
}

/* Wait for the guest's GUEST_DONE; diagnose anything else. */
static bool finish(struct x86_runner *r, const char *who)
{
	bool in_time = x86_runner_wait(r, RUN_MS);

	if (!in_time)
		tap_diag("%s: the guest was not done after %d ms", who, RUN_MS);
	if (r->cmd != UCALL_DONE || r->hlt_exits)
		x86_runner_diag(r, who);
	return in_time && r->cmd == UCALL_DONE;
}

/* The guest said it waits for interrupt @n; give it time to halt. */
static bool guest_waits(struct x86_runner *r, uint32_t n, const char *who)
{
	if (!x86_wait_flag(&ready, n, RUN_MS)) {
		tap_diag("%s: the guest never got ready for interrupt %u",
			 who, n);
		return false;
	}
	usleep(SETTLE_MS * 1000);
	if (x86_runner_done(r)) {
		tap_diag("%s: the vCPU left KVM_RUN instead of halting", who);
		return false;
	}
	return true;
}

static bool same_pic(const struct kvm_pic_state *a,
		     const struct kvm_pic_state *b)
{
	return !memcmp(a, b, sizeof(*a));
}

static bool same_ioapic(const struct kvm_ioapic_state *a,
			const struct kvm_ioapic_state *b)
{
	int i;

	if (a->base_address != b->base_address || a->ioregsel != b->ioregsel ||
	    a->id != b->id || a->irr != b->irr)
		return false;
	for (i = 0; i < KVM_IOAPIC_NUM_PINS; i++)
		if (a->redirtbl[i].bits != b->redirtbl[i].bits)
			return false;
	return true;
}

/* GET, change, SET, GET of one chip; true when it reads back. */
static bool chip_round_trip(struct vm *vm, uint32_t id)
{
	struct kvm_irqchip a, b;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	a.chip_id = id;
	b.chip_id = id;
	if (ioctl(vm->fd, KVM_GET_IRQCHIP, &a))
		return false;
	switch (id) {
	case KVM_IRQCHIP_PIC_MASTER:
		a.chip.pic.imr = 0xfb;
		a.chip.pic.irq_base = 0x20;
		a.chip.pic.elcr = 0x08 & a.chip.pic.elcr_mask;
		break;
	case KVM_IRQCHIP_PIC_SLAVE:
		a.chip.pic.imr = 0xfe;
		a.chip.pic.irq_base = 0x28;
		a.chip.pic.elcr = 0x0c & a.chip.pic.elcr_mask;
		break;
	default:
		a.chip.ioapic.redirtbl[3].bits = 1ULL << 56 |
						 IOAPIC_REDIR_MASKED | 0x33;
		a.chip.ioapic.redirtbl[20].bits = 2ULL << 56 |
						  IOAPIC_REDIR_MASKED |
						  IOAPIC_REDIR_LEVEL | 0x44;
		a.chip.ioapic.ioregsel = 0x12;
		break;
	}
	if (ioctl(vm->fd, KVM_SET_IRQCHIP, &a) ||
	    ioctl(vm->fd, KVM_GET_IRQCHIP, &b))
		return false;
	if (id == KVM_IRQCHIP_IOAPIC)
		return same_ioapic(&a.chip.ioapic, &b.chip.ioapic);
	return same_pic(&a.chip.pic, &b.chip.pic);
}

static uint32_t lapic_reg(const struct kvm_lapic_state *s, int reg)
{
	uint32_t v;

	memcpy(&v, s->regs + reg, 4);
	return v;
}

static void set_lapic_reg(struct kvm_lapic_state *s, int reg, uint32_t v)
{
	memcpy(s->regs + reg, &v, 4);
}

static void test_api(const char *dev)
{
	struct kvm_irq_level line = { .irq = 5, .level = 1 };
	struct kvm_lapic_state la, lb;
	struct kvm_irqchip chip;
	struct vcpu vcpu, vcpu2;
	struct vm vm, vm2;
	bool ok, have_vcpu;
	int ret, i;

	if (!NEED(KVM_CAP_IRQCHIP)) {
		skip_n(13, "irqchip ioctls");
		return;
	}
	if (!vm_create(&vm, dev) || !vm_create(&vm2, dev)) {
		fail_n(13, "irqchip ioctls");
		return;
	}
	ret = ioctl(vm.fd, KVM_IRQ_LINE, &line);
	TAP_ERRNO(ret, ENXIO, "KVM_IRQ_LINE without an irqchip is ENXIO");
	memset(&chip, 0, sizeof(chip));
	chip.chip_id = KVM_IRQCHIP_PIC_MASTER;
	ret = ioctl(vm.fd, KVM_GET_IRQCHIP, &chip);
	TAP_ERRNO(ret, ENXIO, "KVM_GET_IRQCHIP without an irqchip is ENXIO");

	ret = ioctl(vm.fd, KVM_CREATE_IRQCHIP, 0);
	tap_ok(ret == 0, "KVM_CREATE_IRQCHIP");
	ret = ioctl(vm.fd, KVM_CREATE_IRQCHIP, 0);
	TAP_ERRNO(ret, EEXIST, "a second KVM_CREATE_IRQCHIP is EEXIST");
	ok = vcpu_create(&vm2, &vcpu2, 0);
	ret = ioctl(vm2.fd, KVM_CREATE_IRQCHIP, 0);
	tap_ok(ok && ret == -1 && errno == EINVAL,
	       "KVM_CREATE_IRQCHIP after a vCPU exists is EINVAL");
	if (ok)
		vcpu_destroy(&vm2, &vcpu2);
	vm_destroy(&vm2);

	memset(&chip, 0, sizeof(chip));
	chip.chip_id = KVM_IRQCHIP_IOAPIC;
	ret = ioctl(vm.fd, KVM_GET_IRQCHIP, &chip);
	ok = ret == 0 && chip.chip.ioapic.base_address == IOAPIC_BASE;
	for (i = 0; ok && i < KVM_IOAPIC_NUM_PINS; i++)
		ok = chip.chip.ioapic.redirtbl[i].bits & IOAPIC_REDIR_MASKED;
	tap_ok(ok, "a new IOAPIC is at %#llx with its %d pins masked",
	       (unsigned long long)chip.chip.ioapic.base_address,
	       KVM_IOAPIC_NUM_PINS);
	tap_ok(chip_round_trip(&vm, KVM_IRQCHIP_PIC_MASTER),
	       "KVM_SET_IRQCHIP of the master PIC reads back with KVM_GET_IRQCHIP");
	tap_ok(chip_round_trip(&vm, KVM_IRQCHIP_PIC_SLAVE),
	       "and of the slave PIC");
	tap_ok(chip_round_trip(&vm, KVM_IRQCHIP_IOAPIC),
	       "and of the IOAPIC");
	memset(&chip, 0, sizeof(chip));
	chip.chip_id = 3;
	ret = ioctl(vm.fd, KVM_GET_IRQCHIP, &chip);
	tap_ok(ret == -1 && errno == EINVAL &&
	       ioctl(vm.fd, KVM_SET_IRQCHIP, &chip) == -1 && errno == EINVAL,
	       "KVM_GET_IRQCHIP and KVM_SET_IRQCHIP of chip 3 are EINVAL");

	have_vcpu = vcpu_create(&vm, &vcpu, 0);
	ok = have_vcpu;
	memset(&la, 0, sizeof(la));
	memset(&lb, 0xa5, sizeof(lb));
	ok = ok && !ioctl(vcpu.fd, KVM_GET_LAPIC, &la) &&
	     !ioctl(vcpu.fd, KVM_SET_LAPIC, &la) &&
	     !ioctl(vcpu.fd, KVM_GET_LAPIC, &lb);
	tap_ok(ok && !memcmp(&la, &lb, sizeof(la)),
	       "KVM_GET_LAPIC, KVM_SET_LAPIC, KVM_GET_LAPIC reads the same 1 KiB");
	set_lapic_reg(&la, APIC_TPR, 0x20);
	set_lapic_reg(&la, APIC_LDR, 0x04000000);
	set_lapic_reg(&la, APIC_SPIV, APIC_SPIV_ENABLE | 0xff);
	set_lapic_reg(&la, APIC_LVTT, APIC_LVT_MASKED | 0xec);
	ok = ok && !ioctl(vcpu.fd, KVM_SET_LAPIC, &la) &&
	     !ioctl(vcpu.fd, KVM_GET_LAPIC, &lb);
	tap_ok(ok && lapic_reg(&lb, APIC_TPR) == 0x20 &&
	       lapic_reg(&lb, APIC_LDR) == 0x04000000 &&
	       lapic_reg(&lb, APIC_SPIV) == (APIC_SPIV_ENABLE | 0xff) &&
	       lapic_reg(&lb, APIC_LVTT) == (APIC_LVT_MASKED | 0xec),
	       "KVM_SET_LAPIC of TPR, LDR, SPIV and LVTT reads back (%#x %#x %#x %#x)",
	       lapic_reg(&lb, APIC_TPR), lapic_reg(&lb, APIC_LDR),
	       lapic_reg(&lb, APIC_SPIV), lapic_reg(&lb, APIC_LVTT));
	tap_ok(ok && lapic_reg(&lb, APIC_ID) == 0,
	       "vCPU 0's APIC ID register is 0 (%#x)",
	       lapic_reg(&lb, APIC_ID));
	if (have_vcpu)
		vcpu_destroy(&vm, &vcpu);
	vm_destroy(&vm);
}

static void test_timer(const char *dev, const char *what,
		       void (*fn)(uint64_t), uint64_t arg, uint32_t ticks)
{
	struct x86_runner r;
	struct guest_vm g;
	bool ok;

	if (!NEED(KVM_CAP_IRQCHIP) || !NEED(KVM_CAP_HLT)) {
		skip_n(1, what);
		return;
	}
	if (!new_vm(&g, dev, fn, arg, false)) {
		fail_n(1, what);
		return;
	}
	memset(&r, 0, sizeof(r));
	x86_runner_start(&r, &g.vcpu);
	ok = finish(&r, what);
	tap_ok(ok && r.hlt_exits == 0 &&
	       (ticks == 1 ? x86_log.count[TIMER_VEC] == 1 :
			     x86_log.count[TIMER_VEC] >= ticks),
	       "%s: %u timer interrupts in %u HLTs, no KVM_EXIT_HLT",
	       what, x86_log.count[TIMER_VEC], halts);
	guest_vm_destroy(&g);
}

static bool set_tsc_deadline_cpuid(struct guest_vm *g)
{
	static struct {
		struct kvm_cpuid2 hdr;
		struct kvm_cpuid_entry2 e[256];
	} c;
	uint32_t i;

	c.hdr.nent = 256;
	if (ioctl(g->vm.kvm, KVM_GET_SUPPORTED_CPUID, &c))
		return false;
	for (i = 0; i < c.hdr.nent; i++)
		if (c.e[i].function == 1)
			c.e[i].ecx |= 1U << 24;
	return !ioctl(g->vcpu.fd, KVM_SET_CPUID2, &c);
}

static void test_tsc_deadline(const char *dev)
{
	const char *what = "APIC timer in TSC-deadline mode";
	struct kvm_cpuid_entry2 e;
	struct x86_runner r;
	struct guest_vm g;
	bool ok;

	if (!NEED(KVM_CAP_IRQCHIP) || !NEED(KVM_CAP_HLT) ||
	    !NEED(KVM_CAP_TSC_DEADLINE_TIMER)) {
		skip_n(2, what);
		return;
	}
	if (!x86_supported_cpuid(kvm_fd, 1, 0, &e) || !(e.ecx & (1U << 24)))
		tap_diag("%s does not list TSC-deadline; %s does",
			 "KVM_GET_SUPPORTED_CPUID", "KVM_CAP_TSC_DEADLINE_TIMER");
	if (!new_vm(&g, dev, guest_tsc_deadline, 2000000, false)) {
		fail_n(2, what);
		return;
	}
	x86_handlers[TIMER_VEC] = tsc_eoi;
	ok = set_tsc_deadline_cpuid(&g);
	tap_ok(ok, "KVM_SET_CPUID2 with CPUID.1:ECX.TSC_DEADLINE[24]");
	memset(&r, 0, sizeof(r));
	x86_runner_start(&r, &g.vcpu);
	ok = finish(&r, what) && ok;
	tap_ok(ok && r.hlt_exits == 0 && x86_log.count[TIMER_VEC] == 1 &&
	       fired_tsc >= deadline,
	       "%s: one interrupt, %llu TSC ticks after the deadline, the MSR 0 after it",
	       what, (unsigned long long)(fired_tsc - deadline));
	guest_vm_destroy(&g);
}

static void test_irq_line(const char *dev)
{
	const char *what = "IOAPIC pin 5 by KVM_IRQ_LINE";
	struct kvm_irq_level line = { .irq = 5, .level = 1 };
	struct x86_runner r;
	struct guest_vm g;
	int up = -1, down = -1;
	bool ok;

	if (!NEED(KVM_CAP_IRQCHIP) || !NEED(KVM_CAP_HLT)) {
		skip_n(2, what);
		return;
	}
	if (!new_vm(&g, dev, guest_wait, 0, false)) {
		fail_n(2, what);
		return;
	}
	x86_handlers[LINE_VEC] = eoi;
	cfg.pin = 5;
	cfg.vector = LINE_VEC;
	cfg.n = 1;
	memset(&r, 0, sizeof(r));
	x86_runner_start(&r, &g.vcpu);
	ok = guest_waits(&r, 1, what);
	if (ok) {
		up = ioctl(g.vm.fd, KVM_IRQ_LINE, &line);
		line.level = 0;
		down = ioctl(g.vm.fd, KVM_IRQ_LINE, &line);
	}
	tap_ok(ok && up == 0 && down == 0,
	       "KVM_IRQ_LINE gsi 5 to 1 and back to 0 while the guest halts");
	ok = finish(&r, what) && ok;
	tap_ok(ok && r.hlt_exits == 0 && x86_log.count[LINE_VEC] == 1 &&
	       x86_log.n == 1,
	       "the guest took vector %#x from the edge pin once (%u vectors in all)",
	       LINE_VEC, x86_log.n);
	guest_vm_destroy(&g);
}

static void test_irqfd(const char *dev)
{
	const char *what = "IOAPIC pin 6 by an irqfd";
	struct kvm_irqfd irqfd = { .gsi = 6 };
	uint64_t one = 1;
	struct x86_runner r;
	struct guest_vm g;
	int efd, ret;
	bool ok;

	if (!NEED(KVM_CAP_IRQCHIP) || !NEED(KVM_CAP_HLT) ||
	    !NEED(KVM_CAP_IRQFD)) {
		skip_n(3, what);
		return;
	}
	if (!new_vm(&g, dev, guest_wait, 0, false)) {
		fail_n(3, what);
		return;
	}
	x86_handlers[IRQFD_VEC] = eoi;
	cfg.pin = 6;
	cfg.vector = IRQFD_VEC;
	cfg.n = 1;
	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	irqfd.fd = efd;
	ret = ioctl(g.vm.fd, KVM_IRQFD, &irqfd);
	tap_ok(efd >= 0 && ret == 0, "KVM_IRQFD on gsi 6");
	memset(&r, 0, sizeof(r));
	x86_runner_start(&r, &g.vcpu);
	ok = ret == 0 && guest_waits(&r, 1, what) &&
	     write(efd, &one, 8) == 8;
	ok = finish(&r, what) && ok;
	tap_ok(ok && r.hlt_exits == 0 && x86_log.count[IRQFD_VEC] == 1 &&
	       x86_log.n == 1,
	       "an eventfd write wakes the halted guest with vector %#x, once (%u vectors)",
	       IRQFD_VEC, x86_log.n);
	irqfd.flags = KVM_IRQFD_FLAG_DEASSIGN;
	ret = ioctl(g.vm.fd, KVM_IRQFD, &irqfd);
	tap_ok(ret == 0, "KVM_IRQFD_FLAG_DEASSIGN removes it");
	close(efd);
	guest_vm_destroy(&g);
}

/* The eventfd's count, waiting up to @ms for it to be signalled. */
static uint64_t eventfd_wait(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	uint64_t v = 0;

	if (poll(&p, 1, ms) != 1 || read(fd, &v, 8) != 8)
		return 0;
	return v;
}

static void test_resample(const char *dev)
{
	const char *what = "level-triggered IOAPIC pin 7 by a resampling irqfd";
	struct kvm_irqfd irqfd = { .gsi = 7, .flags = KVM_IRQFD_FLAG_RESAMPLE };
	uint64_t one = 1, first = 0, second = 0;
	uint32_t after_eoi = 0;
	struct x86_runner r;
	struct guest_vm g;
	int efd, rfd, ret;
	bool ok;

	if (!NEED(KVM_CAP_IRQCHIP) || !NEED(KVM_CAP_HLT) ||
	    !NEED(KVM_CAP_IRQFD) || !NEED(KVM_CAP_IRQFD_RESAMPLE)) {
		skip_n(4, what);
		return;
	}
	if (!new_vm(&g, dev, guest_wait, 0, false)) {
		fail_n(4, what);
		return;
	}
	x86_handlers[LEVEL_VEC] = eoi;
	cfg.pin = 7;
	cfg.vector = LEVEL_VEC;
	cfg.level = 1;
	cfg.n = 2;
	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	rfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	irqfd.fd = efd;
	irqfd.resamplefd = rfd;
	ret = ioctl(g.vm.fd, KVM_IRQFD, &irqfd);
	tap_ok(efd >= 0 && rfd >= 0 && ret == 0,
	       "KVM_IRQFD with KVM_IRQFD_FLAG_RESAMPLE on gsi 7");
	memset(&r, 0, sizeof(r));
	x86_runner_start(&r, &g.vcpu);
	ok = ret == 0 && guest_waits(&r, 1, what) &&
	     write(efd, &one, 8) == 8 && x86_wait_flag(&ready, 2, RUN_MS);
	if (ok) {
		first = eventfd_wait(rfd, RUN_MS);
		usleep(100 * 1000);
		after_eoi = x86_log.count[LEVEL_VEC];
	}
	tap_ok(ok && first >= 1,
	       "the guest's EOI signals the resamplefd (%llu)",
	       (unsigned long long)first);
	tap_ok(ok && after_eoi == 1,
	       "one signal, one interrupt: %u deliveries after the EOI",
	       after_eoi);
	ok = ok && guest_waits(&r, 2, what) && write(efd, &one, 8) == 8;
	ok = finish(&r, what) && ok;
	if (ok)
		second = eventfd_wait(rfd, RUN_MS);
	tap_ok(ok && r.hlt_exits == 0 && x86_log.count[LEVEL_VEC] == 2 &&
	       second >= 1,
	       "a second signal, a second interrupt (%u) and resample (%llu)",
	       x86_log.count[LEVEL_VEC], (unsigned long long)second);
	close(efd);
	close(rfd);
	guest_vm_destroy(&g);
}

static int add_ioeventfd(struct vm *vm, uint64_t addr, uint32_t len,
			 uint32_t flags, uint64_t match)
{
	struct kvm_ioeventfd io = {
		.datamatch = match, .addr = addr, .len = len, .flags = flags,
	};

	io.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (io.fd < 0)
		return -1;
	if (ioctl(vm->fd, KVM_IOEVENTFD, &io)) {
		tap_diag("KVM_IOEVENTFD at %#llx: %s",
			 (unsigned long long)addr, strerror(errno));
		close(io.fd);
		return -1;
	}
	return io.fd;
}

static uint64_t eventfd_count(int fd)
{
	uint64_t v = 0;

	if (fd < 0 || read(fd, &v, 8) != 8)
		return 0;
	return v;
}

static void test_ioeventfd(const char *dev)
{
	const char *what = "ioeventfds";
	uint64_t n[4];
	uint32_t data = 0;
	struct x86_runner r;
	struct kvm_run *run;
	struct guest_vm g;
	int fd[4], i;
	bool ok;

	if (!NEED(KVM_CAP_IOEVENTFD)) {
		skip_n(5, what);
		return;
	}
	if (!new_vm(&g, dev, guest_ioeventfd, 0, false)) {
		fail_n(5, what);
		return;
	}
	run = g.vcpu.run;
	fd[0] = add_ioeventfd(&g.vm, IOEV_PORT, 2,
			      KVM_IOEVENTFD_FLAG_PIO |
			      KVM_IOEVENTFD_FLAG_DATAMATCH, IOEV_MATCH);
	fd[1] = add_ioeventfd(&g.vm, IOEV_PORT + 2, 2,
			      KVM_IOEVENTFD_FLAG_PIO, 0);
	fd[2] = add_ioeventfd(&g.vm, IOEV_MMIO, 4, 0, 0);
	fd[3] = add_ioeventfd(&g.vm, IOEV_MMIO + 16, 4,
			      KVM_IOEVENTFD_FLAG_DATAMATCH, IOEV_MMIO_MATCH);
	ok = fd[0] >= 0 && fd[1] >= 0 && fd[2] >= 0 && fd[3] >= 0;
	tap_ok(ok,
	       "KVM_IOEVENTFD on port %#x (datamatch %#x), port %#x, %s %#lx and %#lx (datamatch %#x)",
	       IOEV_PORT, IOEV_MATCH, IOEV_PORT + 2, "MMIO", IOEV_MMIO,
	       IOEV_MMIO + 16, IOEV_MMIO_MATCH);

	memset(&r, 0, sizeof(r));
	r.stop_on_sync = true;
	x86_runner_start(&r, &g.vcpu);
	ok = x86_runner_wait(&r, RUN_MS) && ok;
	for (i = 0; i < 4; i++)
		n[i] = eventfd_count(fd[i]);
	tap_ok(ok && r.cmd == UCALL_SYNC && r.runs == 1,
	       "12 writes to them exit to userspace not once: the first exit is the guest's report");
	if (r.cmd != UCALL_SYNC)
		x86_runner_diag(&r, what);
	tap_ok(ok && n[0] == 3 && n[1] == 3 && n[2] == 3 && n[3] == 3,
	       "each eventfd counts 3 (%llu %llu %llu %llu)",
	       (unsigned long long)n[0], (unsigned long long)n[1],
	       (unsigned long long)n[2], (unsigned long long)n[3]);

	x86_runner_start(&r, &g.vcpu);
	ok = x86_runner_wait(&r, RUN_MS) && ok;
	if (run->exit_reason == KVM_EXIT_IO)
		memcpy(&data, (uint8_t *)run + run->io.data_offset, 2);
	tap_ok(ok && r.cmd == UCALL_NONE && r.ret == 0 &&
	       run->exit_reason == KVM_EXIT_IO && run->io.port == IOEV_PORT &&
	       run->io.direction == KVM_EXIT_IO_OUT && run->io.size == 2 &&
	       data == IOEV_MATCH + 1 && eventfd_count(fd[0]) == 0,
	       "a write of %#x to port %#x (datamatch %#x) is KVM_EXIT_IO (exit %s)",
	       IOEV_MATCH + 1, IOEV_PORT, IOEV_MATCH,
	       exit_name(run->exit_reason));

	x86_runner_start(&r, &g.vcpu);
	ok = x86_runner_wait(&r, RUN_MS) && ok;
	data = 0;
	if (run->exit_reason == KVM_EXIT_MMIO)
		memcpy(&data, run->mmio.data, 4);
	tap_ok(ok && r.cmd == UCALL_NONE && r.ret == 0 &&
	       run->exit_reason == KVM_EXIT_MMIO &&
	       run->mmio.phys_addr == IOEV_MMIO + 16 && run->mmio.len == 4 &&
	       run->mmio.is_write && data == IOEV_MMIO_MATCH + 1 &&
	       eventfd_count(fd[3]) == 0,
	       "and one of %#x to MMIO %#lx (datamatch %#x) is KVM_EXIT_MMIO (exit %s)",
	       IOEV_MMIO_MATCH + 1, IOEV_MMIO + 16, IOEV_MMIO_MATCH,
	       exit_name(run->exit_reason));
	x86_runner_start(&r, &g.vcpu);
	if (!finish(&r, what))
		tap_diag("the guest did not finish after the two exits");
	for (i = 0; i < 4; i++)
		if (fd[i] >= 0)
			close(fd[i]);
	guest_vm_destroy(&g);
}

static void test_msi(const char *dev)
{
	const char *what = "KVM_SIGNAL_MSI";
	struct kvm_msi msi = { .address_lo = XAPIC_BASE, .data = MSI_VEC };
	struct x86_runner r;
	struct guest_vm g;
	int ret = -1, nobody = -1;
	bool ok;

	if (!NEED(KVM_CAP_IRQCHIP) || !NEED(KVM_CAP_HLT) ||
	    !NEED(KVM_CAP_SIGNAL_MSI)) {
		skip_n(3, what);
		return;
	}
	if (!new_vm(&g, dev, guest_wait, 0, false)) {
		fail_n(3, what);
		return;
	}
	x86_handlers[MSI_VEC] = eoi;
	cfg.vector = MSI_VEC;
	cfg.n = 1;
	memset(&r, 0, sizeof(r));
	x86_runner_start(&r, &g.vcpu);
	ok = guest_waits(&r, 1, what);
	if (ok)
		ret = ioctl(g.vm.fd, KVM_SIGNAL_MSI, &msi);
	tap_ok(ok && ret == 1,
	       "KVM_SIGNAL_MSI to APIC ID 0, vector %#x, fixed, edge: delivered to 1 APIC (%d)",
	       MSI_VEC, ret);
	ok = finish(&r, what) && ok;
	tap_ok(ok && r.hlt_exits == 0 && x86_log.count[MSI_VEC] == 1 &&
	       x86_log.n == 1,
	       "it wakes the halted guest, which takes vector %#x once",
	       MSI_VEC);
	/* APIC ID 5 does not exist: nobody takes it */
	msi.address_lo = XAPIC_BASE | 5 << 12;
	nobody = ioctl(g.vm.fd, KVM_SIGNAL_MSI, &msi);
	tap_ok(nobody == 0,
	       "an MSI to APIC ID 5, which no vCPU has, returns 0 (%d)",
	       nobody);
	guest_vm_destroy(&g);
}

static int get_mp_state(struct vcpu *vcpu)
{
	struct kvm_mp_state mp = { .mp_state = 0xff };

	if (ioctl(vcpu->fd, KVM_GET_MP_STATE, &mp))
		return -1;
	return mp.mp_state;
}

static void test_hlt_signal(const char *dev)
{
	const char *what = "a halted vCPU and a signal";
	struct kvm_irq_level line = { .irq = 9, .level = 1 };
	struct x86_runner r;
	struct guest_vm g;
	int mp = -1;
	bool ok, kicked, still;

	if (!NEED(KVM_CAP_IRQCHIP) || !NEED(KVM_CAP_HLT)) {
		skip_n(4, what);
		return;
	}
	if (!new_vm(&g, dev, guest_wait, 0, false)) {
		fail_n(4, what);
		return;
	}
	x86_handlers[WAKE_VEC] = eoi;
	cfg.pin = 9;
	cfg.vector = WAKE_VEC;
	cfg.n = 1;
	memset(&r, 0, sizeof(r));
	r.stop_on_intr = true;
	x86_runner_start(&r, &g.vcpu);
	ok = guest_waits(&r, 1, what);
	if (ok)
		x86_runner_signal(&r);
	kicked = x86_runner_wait(&r, 2000);
	tap_ok(ok && kicked && r.ret == -1 && r.err == EINTR &&
	       r.exit_reason == KVM_EXIT_INTR,
	       "a signal ends KVM_RUN of the halted vCPU: EINTR, KVM_EXIT_INTR (exit %s)",
	       exit_name(r.exit_reason));
	if (kicked)
		mp = get_mp_state(&g.vcpu);
	tap_ok(ok && kicked && mp == KVM_MP_STATE_HALTED &&
	       x86_log.count[WAKE_VEC] == 0,
	       "the vCPU is still KVM_MP_STATE_HALTED (%d), no interrupt taken",
	       mp);

	r.stop_on_intr = false;
	x86_runner_start(&r, &g.vcpu);
	usleep(200 * 1000);
	still = !x86_runner_done(&r) && x86_log.count[WAKE_VEC] == 0;
	tap_ok(ok && still,
	       "KVM_RUN again: the vCPU goes on halting (%u HLTs so far)",
	       halts);
	ok = ok && !ioctl(g.vm.fd, KVM_IRQ_LINE, &line);
	line.level = 0;
	ok = ok && !ioctl(g.vm.fd, KVM_IRQ_LINE, &line);
	ok = finish(&r, what) && ok;
	tap_ok(ok && r.hlt_exits == 0 && x86_log.count[WAKE_VEC] == 1,
	       "until an interrupt (KVM_IRQ_LINE gsi 9) wakes it");
	guest_vm_destroy(&g);
}

static bool same_channel(const struct kvm_pit_channel_state *a,
			 const struct kvm_pit_channel_state *b)
{
	return a->count == b->count && a->mode == b->mode &&
	       a->rw_mode == b->rw_mode && a->bcd == b->bcd &&
	       a->gate == b->gate && a->read_state == b->read_state &&
	       a->write_state == b->write_state;
}

static void test_pit(const char *dev)
{
	const char *what = "the PIT";
	struct kvm_pit_config pc = { .flags = 0 };
	struct kvm_pit_state2 a, b;
	struct x86_runner r;
	struct guest_vm g;
	struct vm vm;
	uint32_t pin0, pin2;
	bool ok;
	int ret;

	if (!NEED(KVM_CAP_IRQCHIP) || !NEED(KVM_CAP_HLT) ||
	    !NEED(KVM_CAP_PIT2)) {
		skip_n(6, what);
		return;
	}
	if (!vm_create(&vm, dev)) {
		fail_n(6, what);
		return;
	}
	/*
	 * KVM takes it (the PIT's GSI 0 then goes nowhere); Vireo's PIT
	 * is part of the irqchip and refuses with ENOENT (api.rst).
	 */
	ret = ioctl(vm.fd, KVM_CREATE_PIT2, &pc);
	tap_ok(test_is_kvm(dev) ? ret == 0 : ret == -1 && errno == ENOENT,
	       "KVM_CREATE_PIT2 without an irqchip: KVM takes it, Vireo says ENOENT (%d)",
	       ret);
	vm_destroy(&vm);

	if (!new_vm(&g, dev, guest_pit, 0, true)) {
		fail_n(5, what);
		return;
	}
	ret = ioctl(g.vm.fd, KVM_CREATE_PIT2, &pc);
	TAP_ERRNO(ret, EEXIST, "a second KVM_CREATE_PIT2 is EEXIST");
	x86_handlers[PIT_VEC0] = eoi;
	x86_handlers[PIT_VEC2] = eoi;
	memset(&r, 0, sizeof(r));
	x86_runner_start(&r, &g.vcpu);
	ok = finish(&r, what);
	pin0 = x86_log.count[PIT_VEC0];
	pin2 = x86_log.count[PIT_VEC2];
	/* KVM's default routing: GSI 0 is IOAPIC pin 0 (and PIC IRQ 0) */
	tap_ok(ok && r.hlt_exits == 0 && pin0 >= 3 && pin2 == 0,
	       "PIT channel 0 in mode 2 at 1 kHz: %u ticks on IOAPIC pin 0, %u on pin 2, in %u HLTs",
	       pin0, pin2, halts);

	memset(&a, 0, sizeof(a));
	ret = ioctl(g.vm.fd, KVM_GET_PIT2, &a);
	tap_ok(ret == 0 && a.channels[0].mode == 2 &&
	       a.channels[0].count == PIT_COUNT && a.channels[0].rw_mode == 3,
	       "KVM_GET_PIT2: channel 0 as the guest set it (mode %u, count %u, rw_mode %u)",
	       a.channels[0].mode, a.channels[0].count,
	       a.channels[0].rw_mode);
	a.channels[1].count = 0x1234;
	a.channels[1].mode = 3;
	a.channels[1].rw_mode = 3;
	memset(&b, 0, sizeof(b));
	ok = ret == 0 && !ioctl(g.vm.fd, KVM_SET_PIT2, &a) &&
	     !ioctl(g.vm.fd, KVM_GET_PIT2, &b);
	tap_ok(ok && same_channel(&a.channels[0], &b.channels[0]) &&
	       same_channel(&a.channels[1], &b.channels[1]) &&
	       same_channel(&a.channels[2], &b.channels[2]) &&
	       a.flags == b.flags,
	       "KVM_SET_PIT2 then KVM_GET_PIT2 reads back (channel 1: count %#x mode %u)",
	       b.channels[1].count, b.channels[1].mode);
	guest_vm_destroy(&g);
	memset(&vm, 0, sizeof(vm));
	ok = vm_create(&vm, dev) && !ioctl(vm.fd, KVM_CREATE_IRQCHIP, 0);
	ret = ioctl(vm.fd, KVM_GET_PIT2, &a);
	tap_ok(ok && ret == -1 && errno == ENXIO,
	       "KVM_GET_PIT2 without a PIT is ENXIO");
	vm_destroy(&vm);
}

int main(int argc, char **argv)
{
	const char *dev = test_device(argc, argv);

	tap_plan(44);
	tap_diag("device %s", dev);
	kvm_fd = open(dev, O_RDWR | O_CLOEXEC);
	if (kvm_fd < 0)
		tap_bail("cannot open %s", dev);
	test_api(dev);
	test_timer(dev, "APIC timer one-shot", guest_oneshot, TIMER_COUNT, 1);
	test_timer(dev, "APIC timer periodic", guest_periodic, TIMER_COUNT, 5);
	test_tsc_deadline(dev);
	test_irq_line(dev);
	test_irqfd(dev);
	test_resample(dev);
	test_ioeventfd(dev);
	test_msi(dev);
	test_hlt_signal(dev);
	test_pit(dev);
	close(kvm_fd);
	tap_done();
}
