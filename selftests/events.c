// SPDX-License-Identifier: GPL-2.0-only
/*
 * Events: KVM_GET/SET_MP_STATE without an irqchip, KVM_GET/SET_VCPU_EVENTS
 * (NMI mask, interrupt shadow, an exception injected into the guest),
 * KVM_INTERRUPT and KVM_NMI delivered through a long-mode guest's IDT,
 * and request_interrupt_window with a guest that turns interrupts on.
 */
#include <linux/kvm.h>
#include <sys/ioctl.h>

#include "lib/guest.h"
#include "lib/tap.h"
#include "lib/x86.h"

#define IRQWIN_PORT0	0xe6	/* guest_x86.S */
#define IRQWIN_PORT1	0xe7

extern const char irqwin_sti[], irqwin_loop[];
void guest_irqwin(uint64_t arg);

/* #UD and #GP injected by the host: the ISR has logged them, return */
static GUEST_CODE void ignore(struct x86_regs *regs)
{
	(void)regs;
}

/* Interrupts on, then ucalls forever: the host injects between them. */
static GUEST_CODE void guest_loop(uint64_t arg)
{
	(void)arg;
	sti();
	for (;;)
		GUEST_SYNC(x86_log.n);
}

static int get_mp(struct vcpu *vcpu)
{
	struct kvm_mp_state mp = { .mp_state = 0xff };

	if (ioctl(vcpu->fd, KVM_GET_MP_STATE, &mp))
		return -1;
	return mp.mp_state;
}

static int set_mp(struct vcpu *vcpu, uint32_t state)
{
	struct kvm_mp_state mp = { .mp_state = state };

	return ioctl(vcpu->fd, KVM_SET_MP_STATE, &mp);
}

static void test_mp_state(struct vcpu *vcpu)
{
	int ret;

	tap_ok(get_mp(vcpu) == KVM_MP_STATE_RUNNABLE,
	       "KVM_GET_MP_STATE of a new vCPU without an irqchip is RUNNABLE");
	ret = set_mp(vcpu, KVM_MP_STATE_RUNNABLE);
	tap_ok(ret == 0 && get_mp(vcpu) == KVM_MP_STATE_RUNNABLE,
	       "KVM_SET_MP_STATE(RUNNABLE) succeeds");
	ret = set_mp(vcpu, KVM_MP_STATE_HALTED);
	tap_ok(ret == -1 && errno == EINVAL &&
	       get_mp(vcpu) == KVM_MP_STATE_RUNNABLE,
	       "KVM_SET_MP_STATE(HALTED) without an irqchip is EINVAL");
}

static void test_events_ioctls(struct vcpu *vcpu)
{
	struct kvm_vcpu_events ev, back;
	uint32_t want = KVM_VCPUEVENT_VALID_NMI_PENDING |
			KVM_VCPUEVENT_VALID_SHADOW;
	int ret;

	memset(&ev, 0xa5, sizeof(ev));
	ret = ioctl(vcpu->fd, KVM_GET_VCPU_EVENTS, &ev);
	tap_ok(ret == 0 && (ev.flags & want) == want &&
	       !ev.exception.injected && !ev.interrupt.injected &&
	       !ev.interrupt.shadow && !ev.nmi.injected && !ev.nmi.pending &&
	       !ev.nmi.masked,
	       "KVM_GET_VCPU_EVENTS of a new vCPU: nothing pending, flags %#x",
	       ev.flags);

	ev.flags = KVM_VCPUEVENT_VALID_SHADOW;
	ev.nmi.masked = 1;
	ev.interrupt.shadow = KVM_X86_SHADOW_INT_STI;
	ret = ioctl(vcpu->fd, KVM_SET_VCPU_EVENTS, &ev);
	memset(&back, 0, sizeof(back));
	ret = ret ? ret : ioctl(vcpu->fd, KVM_GET_VCPU_EVENTS, &back);
	/* AMD has one shadow bit: KVM reports it as STI | MOV_SS */
	tap_ok(ret == 0 && back.nmi.masked == 1 &&
	       (back.interrupt.shadow & KVM_X86_SHADOW_INT_STI),
	       "KVM_SET_VCPU_EVENTS of nmi.masked and an STI shadow reads back (masked %u shadow %u)",
	       back.nmi.masked, back.interrupt.shadow);

	ev.flags = 0x80000000;
	ret = ioctl(vcpu->fd, KVM_SET_VCPU_EVENTS, &ev);
	TAP_ERRNO(ret, EINVAL, "KVM_SET_VCPU_EVENTS with an unknown flag is EINVAL");
	ev.flags = 0;
	ev.exception.injected = 1;
	ev.exception.nr = 2;
	ret = ioctl(vcpu->fd, KVM_SET_VCPU_EVENTS, &ev);
	ev.exception.nr = 32;
	tap_ok(ret == -1 && errno == EINVAL &&
	       ioctl(vcpu->fd, KVM_SET_VCPU_EVENTS, &ev) == -1 &&
	       errno == EINVAL,
	       "an injected exception of vector 2 or 32 is EINVAL");

	/* back to nothing pending, NMIs unmasked, no shadow */
	memset(&ev, 0, sizeof(ev));
	ev.flags = KVM_VCPUEVENT_VALID_SHADOW;
	ret = ioctl(vcpu->fd, KVM_SET_VCPU_EVENTS, &ev);
	ret = ret ? ret : ioctl(vcpu->fd, KVM_GET_VCPU_EVENTS, &back);
	tap_ok(ret == 0 && !back.nmi.masked && !back.interrupt.shadow,
	       "and cleared again");
}

/* Run to the next ucall; true if the guest is still in its loop. */
static bool next_sync(struct guest_vm *g)
{
	struct ucall uc;

	if (guest_run(g, &uc) == UCALL_SYNC)
		return true;
	tap_diag("no ucall: exit %s, ucall %llu %s (arg %llu, line/rip %#llx)",
		 exit_name(g->vcpu.run->exit_reason),
		 (unsigned long long)uc.cmd, uc.expr ? uc.expr : "",
		 (unsigned long long)uc.arg, (unsigned long long)uc.line);
	return false;
}

static bool inject_irq(struct guest_vm *g, uint32_t vector)
{
	struct kvm_interrupt irq = { .irq = vector };

	if (!g->vcpu.run->ready_for_interrupt_injection) {
		tap_diag("not ready for interrupt injection, IF %u",
			 g->vcpu.run->if_flag);
		return false;
	}
	return ioctl(g->vcpu.fd, KVM_INTERRUPT, &irq) == 0;
}

static void test_injection(const char *dev)
{
	struct kvm_interrupt irq = { .irq = 256 };
	struct kvm_vcpu_events ev;
	struct kvm_regs regs;
	struct guest_vm g;
	struct vcpu *vcpu;
	uint64_t rip;
	bool ok;
	int ret;

	if (!x86_guest_create(&g, dev, guest_loop, 0))
		tap_bail("cannot build a long-mode guest with an IDT");
	vcpu = &g.vcpu;
	x86_handlers[6] = ignore;
	x86_handlers[13] = ignore;
	test_mp_state(vcpu);
	test_events_ioctls(vcpu);

	ok = next_sync(&g);
	tap_ok(ok && vcpu->run->if_flag == 1 &&
	       vcpu->run->ready_for_interrupt_injection == 1,
	       "a guest with IF=1 exits with if_flag 1 and ready_for_interrupt_injection 1");

	ok = ok && inject_irq(&g, 0x30);
	ok = ok && ioctl(vcpu->fd, KVM_GET_VCPU_EVENTS, &ev) == 0 &&
	     ev.interrupt.injected == 1 && ev.interrupt.nr == 0x30;
	tap_ok(ok, "after KVM_INTERRUPT(0x30) KVM_GET_VCPU_EVENTS shows it injected");
	ok = ok && next_sync(&g);
	tap_ok(ok && x86_log.n == 1 && x86_log.seq[0] == 0x30 &&
	       x86_log.count[0x30] == 1,
	       "the guest's IDT handler took vector 0x30, once (%u vectors)",
	       x86_log.n);
	ok = ok && inject_irq(&g, 0x80) && next_sync(&g);
	tap_ok(ok && x86_log.n == 2 && x86_log.seq[1] == 0x80 &&
	       x86_log.count[0x80] == 1,
	       "then vector 0x80, once: the guest saw 0x%02x 0x%02x",
	       x86_log.seq[0], x86_log.seq[1]);
	ret = ioctl(vcpu->fd, KVM_INTERRUPT, &irq);
	TAP_ERRNO(ret, EINVAL, "KVM_INTERRUPT of vector 256 is EINVAL");

	ok = ok && ioctl(vcpu->fd, KVM_NMI) == 0 && next_sync(&g);
	tap_ok(ok && x86_log.n == 3 && x86_log.seq[2] == 2 &&
	       x86_log.count[2] == 1,
	       "KVM_NMI runs the guest's NMI handler, vector 2 (%u vectors)",
	       x86_log.n);

	/* the OUT of the ucall completes first, so the RIP is final */
	ok = ok && x86_vcpu_complete_io(vcpu) &&
	     ioctl(vcpu->fd, KVM_GET_REGS, &regs) == 0 &&
	     ioctl(vcpu->fd, KVM_GET_VCPU_EVENTS, &ev) == 0;
	rip = regs.rip;
	ev.flags = 0;
	ev.exception.injected = 1;
	ev.exception.nr = 6;
	ev.exception.has_error_code = 0;
	ok = ok && ioctl(vcpu->fd, KVM_SET_VCPU_EVENTS, &ev) == 0;
	memset(&ev, 0, sizeof(ev));
	ok = ok && ioctl(vcpu->fd, KVM_GET_VCPU_EVENTS, &ev) == 0 &&
	     ev.exception.injected && ev.exception.nr == 6;
	tap_ok(ok, "KVM_SET_VCPU_EVENTS queues #UD (vector 6) and KVM_GET_VCPU_EVENTS shows it");
	ok = ok && next_sync(&g);
	tap_ok(ok && x86_log.n == 4 && x86_log.last_vector == 6 &&
	       x86_log.count[6] == 1 && x86_log.last_rip == rip,
	       "the guest's #UD handler ran once, at the vCPU's RIP (%#llx, want %#llx)",
	       (unsigned long long)x86_log.last_rip,
	       (unsigned long long)rip);

	ok = ok && ioctl(vcpu->fd, KVM_GET_VCPU_EVENTS, &ev) == 0;
	ev.flags = 0;
	ev.exception.injected = 1;
	ev.exception.nr = 13;
	ev.exception.has_error_code = 1;
	ev.exception.error_code = 0x28;
	ok = ok && ioctl(vcpu->fd, KVM_SET_VCPU_EVENTS, &ev) == 0 &&
	     next_sync(&g);
	tap_ok(ok && x86_log.n == 5 && x86_log.last_vector == 13 &&
	       x86_log.last_error == 0x28,
	       "an injected #GP reaches the guest with its error code (%#llx)",
	       (unsigned long long)x86_log.last_error);
	ok = ok && next_sync(&g);
	tap_ok(ok && x86_log.n == 5 && get_mp(vcpu) == KVM_MP_STATE_RUNNABLE,
	       "nothing else arrives, and the vCPU is still RUNNABLE");

	/* api.rst says EEXIST; without an irqchip KVM takes the second */
	if (inject_irq(&g, 0x31)) {
		irq.irq = 0x32;
		ret = ioctl(vcpu->fd, KVM_INTERRUPT, &irq);
		next_sync(&g);
		tap_diag("a second KVM_INTERRUPT before KVM_RUN: %d (%s)",
			 ret, ret ? strerror(errno) : "ok");
		tap_diag("the guest took %u vectors, the last %#llx",
			 x86_log.n,
			 (unsigned long long)x86_log.last_vector);
	}
	guest_vm_destroy(&g);
}

static void test_irq_window(const char *dev)
{
	struct kvm_regs regs;
	struct kvm_run *run;
	struct guest_vm g;
	uint64_t rip = 0;
	bool ok;

	if (!x86_guest_create(&g, dev, guest_irqwin, 0))
		tap_bail("cannot build the interrupt-window guest");
	run = g.vcpu.run;
	ok = vcpu_run(&g.vcpu) == 0 && run->exit_reason == KVM_EXIT_IO &&
	     run->io.port == IRQWIN_PORT0;
	tap_ok(ok && run->if_flag == 0 &&
	       run->ready_for_interrupt_injection == 0,
	       "with IF=0 the exit has if_flag 0 and ready_for_interrupt_injection 0");

	run->request_interrupt_window = 1;
	ok = ok && vcpu_run(&g.vcpu) == 0;
	run->request_interrupt_window = 0;
	if (ok && !ioctl(g.vcpu.fd, KVM_GET_REGS, &regs))
		rip = regs.rip;
	tap_ok(ok && run->exit_reason == KVM_EXIT_IRQ_WINDOW_OPEN &&
	       run->ready_for_interrupt_injection == 1 && run->if_flag == 1 &&
	       rip >= (uintptr_t)irqwin_sti && rip <= (uintptr_t)irqwin_loop,
	       "request_interrupt_window: the guest's STI opens it (exit %u, ready %u, if_flag %u, %#llx past STI)",
	       run->exit_reason,
	       run->ready_for_interrupt_injection, run->if_flag,
	       (unsigned long long)(rip - (uintptr_t)irqwin_sti));

	ok = ok && inject_irq(&g, 0x41) && vcpu_run(&g.vcpu) == 0 &&
	     run->exit_reason == KVM_EXIT_IO && run->io.port == IRQWIN_PORT1;
	tap_ok(ok && x86_log.n == 1 && x86_log.seq[0] == 0x41 &&
	       x86_log.last_rip == rip && (x86_log.last_rflags & 0x200),
	       "KVM_INTERRUPT in the open window is taken right there (vector %#x)",
	       x86_log.seq[0]);
	guest_vm_destroy(&g);
}

int main(int argc, char **argv)
{
	const char *dev = test_device(argc, argv);

	tap_plan(21);
	test_injection(dev);
	test_irq_window(dev);
	tap_done();
}
