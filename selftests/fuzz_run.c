// SPDX-License-Identifier: GPL-2.0-only
/*
 * Random guests: VMs whose memory is random bytes, started in real mode,
 * 32-bit protected mode or 64-bit long mode with random registers, run
 * for a bounded number of exits while the host answers every I/O and
 * MMIO read with random data and throws random (and boundary) arguments
 * at the VM and vCPU ioctls in between.  The host must survive all of
 * it, and KVM_RUN may only answer with an exit or EINTR/EFAULT.
 *
 * Usage: fuzz_run [device [iterations [seed [seconds]]]]
 * (defaults: 200 iterations, a time-based seed, at most 20 seconds)
 *
 * AMD hosts only: a random guest can spin with interrupts off, which
 * freezes Bochs (the Intel test host).  Vireo only: under QEMU TCG,
 * Debian's KVM wedged the whole test host on random guests.
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/vireo.h>
#include <signal.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "lib/tap.h"
#include "lib/util.h"

#define LOW_SIZE	(2UL << 20)	/* slot 0 at 0 */
#define TOP_SIZE	(64UL << 10)	/* slot 1 below 4 GiB: the reset vector */
#define TOP_GPA		(0x100000000ULL - TOP_SIZE)
#define MAX_EXITS	64
#define PT_BASE		0x100000	/* 64-bit page tables in slot 0 */
#define CODE_BASE	0x1000

static uint64_t rng_state;

static uint64_t rnd(void)
{
	/* xorshift64*: fast and reproducible from the printed seed */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

static void fill_random(void *buf, size_t len)
{
	uint8_t *p = buf;
	size_t i;

	for (i = 0; i < len; i++)
		p[i] = rnd();
}

static void on_alarm(int sig)
{
	(void)sig;
}

struct counts {
	unsigned long runs, exits[64], eintr, efault, bad_errno;
	unsigned long ioctl_calls;
};

static void set_flat(struct kvm_segment *s, int code, int l, int db)
{
	s->base = 0;
	s->limit = 0xffffffff;
	s->selector = code ? 0x8 : 0x10;
	s->type = code ? 0xb : 0x3;
	s->present = 1;
	s->dpl = 0;
	s->db = db;
	s->s = 1;
	s->l = l;
	s->g = 1;
	s->unusable = 0;
}

/* Identity-map the first 1 GiB with one 1 GiB page... as 2 MiB pages. */
static void build_long_mode_tables(uint8_t *low)
{
	uint64_t *pml4 = (uint64_t *)(low + PT_BASE);
	uint64_t *pdpt = (uint64_t *)(low + PT_BASE + 0x1000);
	uint64_t *pd = (uint64_t *)(low + PT_BASE + 0x2000);
	int i;

	memset(pml4, 0, 0x3000);
	pml4[0] = (PT_BASE + 0x1000) | 3;
	pdpt[0] = (PT_BASE + 0x2000) | 3;
	for (i = 0; i < 512; i++)
		pd[i] = ((uint64_t)i << 21) | 0x83;
}

static void setup_mode(int vcpu, int mode, uint8_t *low)
{
	struct kvm_sregs s;
	struct kvm_regs r;
	int i;

	memset(&r, 0, sizeof(r));
	for (i = 0; i < 16; i++)
		((uint64_t *)&r)[i] = rnd();
	r.rflags = 2 | (rnd() & 0x8d5);	/* arithmetic flags, maybe DF */
	if (ioctl(vcpu, KVM_GET_SREGS, &s) < 0)
		return;
	switch (mode) {
	case 0:		/* real mode at the reset vector */
		r.rip = 0xfff0;
		break;
	case 1:		/* flat 32-bit protected mode, no paging */
		set_flat(&s.cs, 1, 0, 1);
		set_flat(&s.ds, 0, 0, 1);
		s.es = s.ds;
		s.ss = s.ds;
		s.fs = s.ds;
		s.gs = s.ds;
		s.cr0 = 0x11;
		r.rip = CODE_BASE;
		r.rsp = LOW_SIZE - 16;
		break;
	default:	/* 64-bit long mode, identity mapped */
		build_long_mode_tables(low);
		set_flat(&s.cs, 1, 1, 0);
		set_flat(&s.ds, 0, 0, 1);
		s.es = s.ds;
		s.ss = s.ds;
		s.fs = s.ds;
		s.gs = s.ds;
		s.cr0 = 0x80000011;
		s.cr3 = PT_BASE;
		s.cr4 = 0x20;		/* PAE */
		s.efer = 0x500;		/* LME | LMA */
		r.rip = CODE_BASE;
		r.rsp = LOW_SIZE - 16;
		break;
	}
	ioctl(vcpu, KVM_SET_SREGS, &s);
	ioctl(vcpu, KVM_SET_REGS, &r);
}

/* Random and boundary arguments to the VM and vCPU ioctls. */
static void poke_ioctls(int vm, int vcpu, struct kvm_run *run, uint8_t *low,
			struct counts *c)
{
	struct kvm_userspace_memory_region mr;
	struct kvm_sregs s;
	uint8_t junk[512];

	c->ioctl_calls++;
	switch (rnd() % 8) {
	case 0:		/* a random memslot: mostly refused, sometimes not */
		mr.slot = rnd() % 4 + (rnd() % 8 == 0 ? 0x10000 : 0);
		mr.flags = rnd() % 4 == 0 ? rnd() : 0;
		mr.guest_phys_addr = (rnd() % 0x400) << 12;
		mr.memory_size = rnd() % 3 == 0 ? 0 : (rnd() % 16) << 12;
		mr.userspace_addr = (uintptr_t)low + ((rnd() % 256) << 12);
		if (mr.slot < 2)	/* keep the two real slots */
			mr.slot += 2;
		ioctl(vm, KVM_SET_USER_MEMORY_REGION, &mr);
		break;
	case 1:		/* random sregs: must be refused or survived */
		fill_random(&s, sizeof(s));
		ioctl(vcpu, KVM_SET_SREGS, &s);
		break;
	case 2:
		fill_random(junk, sizeof(junk));
		ioctl(vcpu, KVM_SET_REGS, junk);
		break;
	case 3:		/* an unknown vCPU ioctl and VM ioctl */
		ioctl(vcpu, _IOW(KVMIO, 0xf0 + rnd() % 15, uint64_t), junk);
		ioctl(vm, _IO(KVMIO, 0xe0 + rnd() % 15), rnd());
		break;
	case 4:
		run->immediate_exit = 1;
		ioctl(vcpu, KVM_RUN, 0);
		run->immediate_exit = 0;
		break;
	case 5:		/* a bad pointer */
		ioctl(vcpu, KVM_GET_SREGS, (void *)8);
		ioctl(vcpu, KVM_SET_REGS, (void *)-4096L);
		break;
	default:
		break;
	}
}

static void one_vm(int kvm, int mode, struct counts *c, long mmap_size)
{
	struct kvm_userspace_memory_region mr;
	uint8_t *low, *top;
	struct kvm_run *run;
	int vm, vcpu, i;

	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		return;
	low = mmap(NULL, LOW_SIZE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	top = mmap(NULL, TOP_SIZE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	fill_random(low, 0x10000);
	fill_random(top, TOP_SIZE);
	mr = (struct kvm_userspace_memory_region) {
		.slot = 0, .memory_size = LOW_SIZE,
		.userspace_addr = (uintptr_t)low,
	};
	ioctl(vm, KVM_SET_USER_MEMORY_REGION, &mr);
	mr = (struct kvm_userspace_memory_region) {
		.slot = 1, .guest_phys_addr = TOP_GPA,
		.memory_size = TOP_SIZE, .userspace_addr = (uintptr_t)top,
	};
	ioctl(vm, KVM_SET_USER_MEMORY_REGION, &mr);
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	run = mmap(NULL, mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		   vcpu, 0);
	if (vcpu < 0 || run == MAP_FAILED)
		goto out;
	setup_mode(vcpu, mode, low);

	for (i = 0; i < MAX_EXITS; i++) {
		if (rnd() % 8 == 0)
			poke_ioctls(vm, vcpu, run, low, c);
		c->runs++;
		if (ioctl(vcpu, KVM_RUN, 0) < 0) {
			if (errno == EINTR)
				c->eintr++;
			else if (errno == EFAULT)
				c->efault++;
			else
				c->bad_errno++;
			break;
		}
		c->exits[run->exit_reason & 63]++;
		if (run->exit_reason == KVM_EXIT_IO) {
			if (run->io.direction == KVM_EXIT_IO_IN &&
			    run->io.data_offset == 4096 &&
			    (unsigned long)run->io.size * run->io.count <= 4096)
				fill_random((char *)run + run->io.data_offset,
					    run->io.size * run->io.count);
			continue;
		}
		if (run->exit_reason == KVM_EXIT_MMIO) {
			if (!run->mmio.is_write)
				fill_random(run->mmio.data, 8);
			continue;
		}
		if (run->exit_reason != KVM_EXIT_HLT &&
		    run->exit_reason != KVM_EXIT_INTR)
			break;
	}
	munmap(run, mmap_size);
out:
	if (vcpu >= 0)
		close(vcpu);
	close(vm);
	munmap(low, LOW_SIZE);
	munmap(top, TOP_SIZE);
}

int main(int argc, char **argv)
{
	const char *dev = test_device(argc, argv);
	long iterations = argc > 2 ? atol(argv[2]) : 200;
	long seconds = argc > 4 ? atol(argv[4]) : 20;
	struct timespec t0, t;
	uint64_t seed = argc > 3 ? strtoull(argv[3], NULL, 0) :
			(uint64_t)time(NULL);
	struct itimerval tick = { { 0, 20000 }, { 0, 20000 } };
	struct sigaction sa;
	struct counts c;
	long mmap_size, i;
	int kvm, mode;

	tap_plan(3);
	tap_diag("device %s, %ld iterations, seed %#llx", dev, iterations,
		 (unsigned long long)seed);
	if (test_is_kvm(dev)) {
		/* seen with seed 0x6b0668bc: the host never came back */
		tap_skip("Debian's KVM wedges the TCG test host on random guests",
			 "random guests");
		tap_skip("KVM", "KVM_RUN errnos");
		tap_skip("KVM", "the device still answers");
		tap_done();
	}
	if (cpu_backend() != VIREO_BACKEND_SVM) {
		tap_skip("random guests can spin with IF=0, which freezes Bochs",
			 "random guests");
		tap_skip("Intel host", "KVM_RUN errnos");
		tap_skip("Intel host", "the device still answers");
		tap_done();
	}
	rng_state = seed | 1;
	memset(&c, 0, sizeof(c));
	kvm = open(dev, O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		tap_bail("cannot open %s", dev);
	mmap_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);

	/* a spinning guest is kicked out every 20 ms */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sigaction(SIGALRM, &sa, NULL);
	setitimer(ITIMER_REAL, &tick, NULL);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < iterations; i++) {
		mode = rnd() % 3;
		one_vm(kvm, mode, &c, mmap_size);
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - t0.tv_sec >= seconds)
			break;
	}
	iterations = i < iterations ? i + 1 : iterations;
	memset(&tick, 0, sizeof(tick));
	setitimer(ITIMER_REAL, &tick, NULL);

	tap_diag("%ld guests in %ld s", iterations, (long)(t.tv_sec - t0.tv_sec));
	tap_diag("%lu KVM_RUNs, %lu ioctl pokes", c.runs, c.ioctl_calls);
	tap_diag("exits: io %lu mmio %lu hlt %lu shutdown %lu internal %lu fail_entry %lu",
		 c.exits[KVM_EXIT_IO], c.exits[KVM_EXIT_MMIO],
		 c.exits[KVM_EXIT_HLT], c.exits[KVM_EXIT_SHUTDOWN],
		 c.exits[KVM_EXIT_INTERNAL_ERROR],
		 c.exits[KVM_EXIT_FAIL_ENTRY]);
	tap_diag("errors: EINTR %lu, EFAULT %lu", c.eintr, c.efault);
	tap_ok(c.runs >= (unsigned long)iterations,
	       "%ld random guests ran (%lu KVM_RUNs)", iterations, c.runs);
	tap_ok(!c.bad_errno, "KVM_RUN answered only exits, EINTR or EFAULT (%lu others)",
	       c.bad_errno);
	tap_ok(ioctl(kvm, KVM_GET_API_VERSION, 0) == KVM_API_VERSION,
	       "the device still answers");
	close(kvm);
	tap_done();
}
