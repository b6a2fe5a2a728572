// SPDX-License-Identifier: GPL-2.0-only
/*
 * Two vCPUs of one VM on their own threads play IPI ping-pong through the
 * in-kernel irqchip while the main thread adds and deletes a memslot
 * over and over (each change flushes the running vCPUs).  Strict turns
 * keep at most one IPI in flight each way, so every one must arrive
 * exactly once: a lost IPI stops the game (both vCPUs halt for good), a
 * spurious one shows in the counts.  The vCPUs wait in HLT.
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lib/guest.h"
#include "lib/tap.h"
#include "lib/x86.h"

#define ROUNDS		1000
#define RUN_MS		120000
#define PING_VEC	0x61	/* to vCPU 1 */
#define PONG_VEC	0x62	/* to vCPU 0 */
#define CHURN_SLOT	7
#define CHURN_GPA	0x80000000ULL
#define CHURN_SIZE	0x200000UL

/* Written by the guests */
static volatile struct {
	uint32_t got[2];	/* IPIs taken, by APIC ID */
	uint32_t other;		/* any other vector */
	uint32_t halts[2];
	uint32_t ready;		/* vCPU 1's APIC takes IPIs */
} st;

static GUEST_CODE void ipi_isr(struct x86_regs *regs)
{
	uint32_t id = xapic_read(APIC_ID) >> 24;

	if (id < 2 && regs->vector == (id ? PING_VEC : PONG_VEC))
		__atomic_fetch_add(&st.got[id], 1, __ATOMIC_SEQ_CST);
	else
		__atomic_fetch_add(&st.other, 1, __ATOMIC_SEQ_CST);
	xapic_write(APIC_EOI, 0);
}

/* Halt until *@p reaches @want; only an interrupt ends a HLT. */
static GUEST_CODE void wait_for(volatile uint32_t *p, uint32_t want,
				uint32_t id)
{
	cli();
	while (*p < want) {
		st.halts[id]++;
		x86_safe_halt();
	}
	sti();
}

/* vCPU 0 pings, vCPU 1 answers; each waits for the other's IPI. */
static GUEST_CODE void player(uint64_t id)
{
	uint32_t i;

	xapic_write(APIC_SPIV, APIC_SPIV_ENABLE | 0xff);
	/* a software-disabled APIC drops fixed IPIs: wait for vCPU 1's */
	if (id == 1) {
		st.ready = 1;
	} else {
		sti();
		while (!st.ready)
			asm volatile("pause" : : : "memory");
		cli();
	}
	for (i = 1; i <= ROUNDS; i++) {
		if (id == 0) {
			xapic_send_ipi(1, PING_VEC);
			wait_for(&st.got[0], i, 0);
		} else {
			wait_for(&st.got[1], i, 1);
			xapic_send_ipi(0, PONG_VEC);
		}
	}
	GUEST_DONE();
}

static bool set_slot(struct vm *vm, void *mem, uint64_t size)
{
	struct kvm_userspace_memory_region mr = {
		.slot = CHURN_SLOT, .guest_phys_addr = CHURN_GPA,
		.memory_size = size, .userspace_addr = (uintptr_t)mem,
	};

	return !ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &mr);
}

int main(int argc, char **argv)
{
	const char *dev = test_device(argc, argv);
	struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };
	struct x86_runner r[2];
	struct vcpu vcpu[2];
	unsigned int changes = 0;
	bool slots_ok = true, done;
	struct vm vm;
	const char *skip = NULL;
	uint64_t end;
	void *mem;
	int kvm, i;

	tap_plan(4);
	tap_diag("device %s", dev);
	kvm = open(dev, O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		tap_bail("cannot open %s", dev);
	if (ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_IRQCHIP) <= 0)
		skip = "no KVM_CAP_IRQCHIP";
	close(kvm);
	if (skip) {
		for (i = 1; i <= 4; i++)
			tap_skip(skip, "IPI ping-pong under memslot churn (%d of 4)", i);
		tap_done();
	}

	memset((void *)&st, 0, sizeof(st));
	if (!x86_vm_create(&vm, dev))
		tap_bail("no VM");
	if (ioctl(vm.fd, KVM_CREATE_IRQCHIP, 0))
		tap_bail("KVM_CREATE_IRQCHIP: %s", strerror(errno));
	for (i = 0; i < 2; i++)
		if (!x86_vcpu_add(&vm, &vcpu[i], i, player, i))
			tap_bail("no vCPU %d", i);
	/* vCPU 1 starts in long mode, not in wait-for-SIPI */
	if (ioctl(vcpu[1].fd, KVM_SET_MP_STATE, &mp))
		tap_bail("KVM_SET_MP_STATE: %s", strerror(errno));
	x86_handlers[PING_VEC] = ipi_isr;
	x86_handlers[PONG_VEC] = ipi_isr;
	mem = mmap(NULL, CHURN_SIZE, PROT_READ | PROT_WRITE,
		   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		tap_bail("no memory for the churned slot");

	memset(r, 0, sizeof(r));
	for (i = 1; i >= 0; i--)
		x86_runner_start(&r[i], &vcpu[i]);
	/* add and delete the slot until both players are done */
	end = x86_now_ms() + RUN_MS;
	while (!(x86_runner_done(&r[0]) && x86_runner_done(&r[1])) &&
	       x86_now_ms() < end) {
		if (!set_slot(&vm, mem, CHURN_SIZE) || !set_slot(&vm, mem, 0)) {
			slots_ok = false;
			break;
		}
		changes += 2;
		/*
		 * A breath between changes: back to back, Debian's KVM
		 * (whose slot changes are cheap) zapped the players'
		 * mappings so often that 1000 rounds did not fit in
		 * RUN_MS on a busy machine.
		 */
		usleep(20);
	}
	done = true;
	for (i = 0; i < 2; i++) {
		char who[16];

		snprintf(who, sizeof(who), "vCPU %d", i);
		if (!x86_runner_wait(&r[i], RUN_MS) || r[i].cmd != UCALL_DONE ||
		    r[i].hlt_exits) {
			x86_runner_diag(&r[i], who);
			done = false;
		}
	}
	tap_diag("HLTs: vCPU 0 %u, vCPU 1 %u; memslot changes %u",
		 st.halts[0], st.halts[1], changes);
	tap_ok(done, "both vCPUs played %d rounds of IPI ping-pong to the end, no KVM_EXIT_HLT",
	       ROUNDS);
	tap_ok(st.got[0] == ROUNDS && st.got[1] == ROUNDS,
	       "every IPI arrived exactly once (pings %u, pongs %u of %d)",
	       st.got[1], st.got[0], ROUNDS);
	tap_ok(st.other == 0, "no other vector was taken (%u)", st.other);
	tap_ok(slots_ok && changes > 0,
	       "meanwhile slot %d was added and deleted %u times, every change accepted",
	       CHURN_SLOT, changes / 2);
	for (i = 0; i < 2; i++)
		vcpu_destroy(&vm, &vcpu[i]);
	vm_destroy(&vm);
	munmap(mem, CHURN_SIZE);
	tap_done();
}
