// SPDX-License-Identifier: GPL-2.0-only
/*
 * VMs, vCPUs and memory slots through the KVM ABI: slots added, moved
 * and deleted between runs (the guest sees exactly the memory that is
 * there now), two VMs side by side, several vCPUs in one VM, a spinning
 * guest kicked out by a signal, immediate_exit, a triple fault, and the
 * errnos KVM gives for bad input.
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/vireo.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/tap.h"
#include "lib/util.h"
#include "lib/vm.h"

#define CODE		0x1000
#define LOW_SIZE	0x8000

/* 16-bit snippets (bytes from GNU as) */
static const uint8_t read_bx[] = {
	0x8a, 0x07,		/* mov (%bx), %al */
	0xe6, 0x40,		/* out %al, $0x40 */
	0xf4,			/* hlt */
};

static const uint8_t spin[] = { 0xfb, 0xeb, 0xfe };	/* sti; jmp . */
static const uint8_t int3[] = { 0xcc };

static void set_rip_rbx(struct vcpu *vcpu, uint64_t rip, uint64_t rbx)
{
	struct kvm_regs regs;

	memset(&regs, 0, sizeof(regs));
	regs.rip = rip;
	regs.rbx = rbx;
	regs.rflags = 2;
	ioctl(vcpu->fd, KVM_SET_REGS, &regs);
}

/*
 * Run read_bx with BX = @addr: returns the byte the guest read (from
 * memory, or @mmio when the access became an MMIO read), -1 otherwise.
 */
static int read_byte(struct vcpu *vcpu, uint64_t addr, uint8_t mmio,
		     bool *was_mmio)
{
	struct kvm_run *run = vcpu->run;
	int v = -1;

	*was_mmio = false;
	set_rip_rbx(vcpu, CODE, addr);
	if (vcpu_run(vcpu))
		return -1;
	if (run->exit_reason == KVM_EXIT_MMIO) {
		if (run->mmio.phys_addr != addr || run->mmio.len != 1 ||
		    run->mmio.is_write)
			return -1;
		*was_mmio = true;
		run->mmio.data[0] = mmio;
		if (vcpu_run(vcpu))
			return -1;
	}
	if (run->exit_reason == KVM_EXIT_IO && run->io.port == 0x40)
		v = *((uint8_t *)run + run->io.data_offset);
	if (vcpu_run(vcpu) || run->exit_reason != KVM_EXIT_HLT)
		return -1;
	return v;
}

static void memslots(const char *dev)
{
	uint8_t *low, *a, *b;
	struct vcpu vcpu;
	struct vm vm;
	bool mmio;
	int v;

	if (!vm_create(&vm, dev))
		tap_bail("no VM");
	low = vm_add_memory(&vm, 0, 0, LOW_SIZE);
	a = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	b = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (!low || !vcpu_create(&vm, &vcpu, 0))
		tap_bail("no memory or vCPU");
	memcpy(low + CODE, read_bx, sizeof(read_bx));
	vcpu_real_mode(&vcpu, CODE);
	a[0] = 'A';
	b[0] = 'B';

	tap_ok(!vm_set_slot(&vm, 1, 0x8000, 4096, a, 0) &&
	       read_byte(&vcpu, 0x8000, 'M', &mmio) == 'A' && !mmio,
	       "a slot added between runs is read by the guest");
	v = vm_set_slot(&vm, 1, 0x9000, 4096, a, 0);
	tap_ok(!v && read_byte(&vcpu, 0x9000, 'M', &mmio) == 'A' && !mmio,
	       "after a move the guest finds the slot at its new address");
	tap_ok(!v && read_byte(&vcpu, 0x8000, 'M', &mmio) == 'M' && mmio,
	       "and its old address has become MMIO");
	tap_ok(!vm_set_slot(&vm, 1, 0x9000, 0, a, 0) &&
	       read_byte(&vcpu, 0x9000, 'N', &mmio) == 'N' && mmio,
	       "a deleted slot's addresses are MMIO");
	tap_ok(!vm_set_slot(&vm, 2, 0x8000, 4096, b, 0) &&
	       read_byte(&vcpu, 0x8000, 'M', &mmio) == 'B' && !mmio,
	       "a new slot where an old one was shows the new memory");
	a[0] = 'a';
	tap_ok(!vm_set_slot(&vm, 1, 0x9000, 4096, a, 0) &&
	       read_byte(&vcpu, 0x9000, 'M', &mmio) == 'a',
	       "the guest sees the VMM's latest write to slot memory");
	vcpu_destroy(&vm, &vcpu);
	vm_destroy(&vm);
}

/* Two VMs, each with its own memory, run in turns. */
static void two_vms(const char *dev)
{
	struct vcpu c[2];
	struct vm vm[2];
	uint8_t *low;
	bool mmio, ok = true;
	int i, round;

	for (i = 0; i < 2; i++) {
		if (!vm_create(&vm[i], dev))
			tap_bail("no VM");
		low = vm_add_memory(&vm[i], 0, 0, LOW_SIZE);
		if (!low || !vcpu_create(&vm[i], &c[i], 0))
			tap_bail("no memory or vCPU");
		memcpy(low + CODE, read_bx, sizeof(read_bx));
		low[0x4000] = '1' + i;
		vcpu_real_mode(&c[i], CODE);
	}
	for (round = 0; round < 3; round++)
		for (i = 0; i < 2; i++)
			ok &= read_byte(&c[i], 0x4000, 'M', &mmio) == '1' + i;
	tap_ok(ok, "two VMs side by side each see their own memory");
	for (i = 0; i < 2; i++) {
		vcpu_destroy(&vm[i], &c[i]);
		vm_destroy(&vm[i]);
	}
}

/* Several vCPUs of one VM keep their own registers. */
static void vcpus(const char *dev)
{
	static const int ids[] = { 0, 5, 1 };
	struct kvm_regs regs;
	struct vcpu c[3];
	struct vm vm;
	uint8_t *low;
	bool mmio, ok = true;
	int i;

	if (!vm_create(&vm, dev))
		tap_bail("no VM");
	low = vm_add_memory(&vm, 0, 0, LOW_SIZE);
	if (!low)
		tap_bail("no memory");
	memcpy(low + CODE, read_bx, sizeof(read_bx));
	memcpy(low + 0x4000, "xyz", 3);
	for (i = 0; i < 3; i++) {
		if (!vcpu_create(&vm, &c[i], ids[i]))
			tap_bail("no vCPU %d", ids[i]);
		vcpu_real_mode(&c[i], CODE);
	}
	for (i = 0; i < 3; i++)
		ok &= read_byte(&c[i], 0x4000 + i, 'M', &mmio) == "xyz"[i];
	for (i = 0; i < 3; i++) {
		ioctl(c[i].fd, KVM_GET_REGS, &regs);
		ok &= regs.rbx == 0x4000U + i && (regs.rax & 0xff) == (uint8_t)"xyz"[i];
	}
	tap_ok(ok, "three vCPUs (ids 0, 5, 1) run with their own registers");
	for (i = 0; i < 3; i++)
		vcpu_destroy(&vm, &c[i]);
	vm_destroy(&vm);
}

static void on_alarm(int sig)
{
	(void)sig;
}

static void exits(const char *dev)
{
	struct itimerval t = { { 0, 0 }, { 0, 200000 } };
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct sigaction sa;
	struct vcpu vcpu;
	struct vm vm;
	uint8_t *low;
	int ret;

	if (!vm_create(&vm, dev))
		tap_bail("no VM");
	low = vm_add_memory(&vm, 0, 0, LOW_SIZE);
	if (!low || !vcpu_create(&vm, &vcpu, 0))
		tap_bail("no memory or vCPU");
	memcpy(low + CODE, spin, sizeof(spin));
	memcpy(low + 0x2000, int3, sizeof(int3));

	/* a guest that spins with interrupts on, and a signal */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sigaction(SIGALRM, &sa, NULL);
	vcpu_real_mode(&vcpu, CODE);
	setitimer(ITIMER_REAL, &t, NULL);
	ret = vcpu_run(&vcpu);
	tap_ok(ret == -1 && errno == EINTR &&
	       vcpu.run->exit_reason == KVM_EXIT_INTR,
	       "a signal ends KVM_RUN of a spinning guest with EINTR, KVM_EXIT_INTR");
	ioctl(vcpu.fd, KVM_GET_REGS, &regs);
	tap_ok(regs.rip == CODE + 1 && (regs.rflags & 0x200),
	       "the guest was spinning where it should (rip %#llx, IF %d)",
	       regs.rip, !!(regs.rflags & 0x200));

	vcpu.run->immediate_exit = 1;
	ret = vcpu_run(&vcpu);
	vcpu.run->immediate_exit = 0;
	ioctl(vcpu.fd, KVM_GET_REGS, &regs);
	tap_ok(ret == -1 && errno == EINTR && regs.rip == CODE + 1,
	       "immediate_exit returns EINTR without running the guest");

	/* int3 with an empty IDT: #GP, #DF, then a triple fault */
	if (cpu_backend() == VIREO_BACKEND_VMX) {
		tap_skip("a guest triple fault stops Bochs",
			 "a triple fault is KVM_EXIT_SHUTDOWN");
	} else {
		ioctl(vcpu.fd, KVM_GET_SREGS, &sregs);
		sregs.idt.limit = 0;
		ioctl(vcpu.fd, KVM_SET_SREGS, &sregs);
		set_rip_rbx(&vcpu, 0x2000, 0);
		ret = vcpu_run(&vcpu);
		tap_ok(ret == 0 && vcpu.run->exit_reason == KVM_EXIT_SHUTDOWN,
		       "a triple fault is KVM_EXIT_SHUTDOWN (exit %s)",
		       exit_name(vcpu.run->exit_reason));
	}
	vcpu_destroy(&vm, &vcpu);
	vm_destroy(&vm);
}

static void bad_input(const char *dev)
{
	struct vcpu vcpu, dup;
	struct vm vm;
	uint8_t *mem;
	long nslots, maxid, nas;
	int ret, status;
	pid_t pid;

	if (!vm_create(&vm, dev))
		tap_bail("no VM");
	mem = mmap(NULL, 0x10000, PROT_READ | PROT_WRITE,
		   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	nslots = ioctl(vm.fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_MEMSLOTS);
	nas = ioctl(vm.fd, KVM_CHECK_EXTENSION, KVM_CAP_MULTI_ADDRESS_SPACE);
	if (nas <= 0)
		nas = 1;
	maxid = ioctl(vm.fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPU_ID);
	if (maxid <= 0)
		maxid = ioctl(vm.fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);

	/* KVM_RUN before any memory exists: what KVM says is ENOSPC */
	if (!vcpu_create(&vm, &vcpu, 0))
		tap_bail("no vCPU");
	ret = vcpu_run(&vcpu);
	TAP_ERRNO(ret, ENOSPC, "KVM_RUN on a VM without memory is ENOSPC");

	tap_ok(!vm_set_slot(&vm, 0, 0, 0x8000, mem, 0), "a good slot");
	TAP_ERRNO(vm_set_slot(&vm, 1, 0x4000, 0x8000, mem + 0x8000, 0), EEXIST,
		  "an overlapping slot is EEXIST");
	TAP_ERRNO(vm_set_slot(&vm, 1, 0x10800, 0x1000, mem + 0x8000, 0), EINVAL,
		  "an unaligned guest address is EINVAL");
	TAP_ERRNO(vm_set_slot(&vm, 1, 0x10000, 0x800, mem + 0x8000, 0), EINVAL,
		  "an unaligned size is EINVAL");
	TAP_ERRNO(vm_set_slot(&vm, 1, 0x10000, 0x1000, mem + 0x8008, 0), EINVAL,
		  "an unaligned userspace address is EINVAL");
	TAP_ERRNO(vm_set_slot(&vm, 1, 0x10000, 0x1000, mem + 0x8000, 1U << 7),
		  EINVAL, "unknown flags are EINVAL");
	TAP_ERRNO(vm_set_slot(&vm, nslots, 0x10000, 0x1000, mem + 0x8000, 0),
		  EINVAL, "slot id %ld (KVM_CAP_NR_MEMSLOTS) is EINVAL", nslots);
	TAP_ERRNO(vm_set_slot(&vm, (nas << 16) | 1, 0x10000, 0x1000,
			      mem + 0x8000, 0),
		  EINVAL, "address space %ld (KVM_CAP_MULTI_ADDRESS_SPACE) is EINVAL",
		  nas);
	TAP_ERRNO(vm_set_slot(&vm, 3, 0, 0, mem, 0), EINVAL,
		  "deleting an empty slot is EINVAL");
	TAP_ERRNO(vm_set_slot(&vm, 0, 0, 0x4000, mem, 0), EINVAL,
		  "resizing a slot is EINVAL");

	TAP_ERRNO(ioctl(vm.kvm, KVM_CREATE_VM, 0x7f), EINVAL,
		  "KVM_CREATE_VM with an unknown type is EINVAL");
	TAP_ERRNO(ioctl(vm.fd, KVM_CREATE_VCPU, maxid), EINVAL,
		  "vCPU id %ld (the limit) is EINVAL", maxid);
	tap_ok(!vcpu_create(&vm, &dup, 0) && errno == EEXIST,
	       "a second vCPU 0 is EEXIST");
	TAP_ERRNO(ioctl(vcpu.fd, _IO(KVMIO, 0xfe), 0), EINVAL,
		  "an unknown vCPU ioctl is EINVAL");
	TAP_ERRNO(ioctl(vm.fd, _IO(KVMIO, 0xfe), 0), ENOTTY,
		  "an unknown VM ioctl is ENOTTY");

	pid = fork();
	if (pid == 0) {
		int a = ioctl(vm.fd, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY);
		int ea = errno;
		int b = ioctl(vcpu.fd, KVM_RUN, 0);
		int eb = errno;

		_exit(a == -1 && ea == EIO && b == -1 && eb == EIO ? 0 : 1);
	}
	waitpid(pid, &status, 0);
	tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	       "a forked child's VM and vCPU ioctls are EIO");
	vcpu_destroy(&vm, &vcpu);
	vm_destroy(&vm);
}

int main(int argc, char **argv)
{
	const char *dev = test_device(argc, argv);

	tap_plan(29);
	tap_diag("device %s", dev);
	memslots(dev);
	two_vms(dev);
	vcpus(dev);
	exits(dev);
	bad_input(dev);
	tap_done();
}
