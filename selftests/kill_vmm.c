// SPDX-License-Identifier: GPL-2.0-only
/*
 * Kill anywhere: VMMs with two running vCPUs (one spinning in the guest,
 * one exiting to userspace in a loop) and a thread moving a memslot are
 * killed with SIGKILL at random moments, inside KVM_RUN or not.  Then
 * every VM must be gone: on Vireo the backend module's reference count
 * is back to zero (each VM holds one), and a new VM still runs.
 *
 * Usage: kill_vmm [device [rounds [seed]]]  (40 rounds; 15 on Intel:
 * Bochs is slow)
 *
 * Vireo only: under QEMU TCG, Debian's KVM stalled the host (an RCU
 * self-detected stall on the CPU running the spinning vCPU, seed
 * 0x6b0678cc), so there is nothing to compare.
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/vireo.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/tap.h"
#include "lib/util.h"
#include "lib/vm.h"

#define CODE	0x1000

static const uint8_t spin[] = { 0xfb, 0xeb, 0xfe };	/* sti; jmp . */
static const uint8_t out_loop[] = { 0xe6, 0x50, 0xeb, 0xfc };

static struct vm vm;
static uint8_t *mem2;

static void *run_vcpu(void *arg)
{
	struct vcpu *vcpu = arg;

	for (;;)
		vcpu_run(vcpu);
	return NULL;
}

static void *move_slot(void *arg)
{
	struct kvm_userspace_memory_region mr = {
		.slot = 1, .memory_size = 0x10000,
		.userspace_addr = (uintptr_t)mem2,
	};
	uint64_t gpa = 0x100000;

	(void)arg;
	for (;;) {
		mr.guest_phys_addr = gpa;
		ioctl(vm.fd, KVM_SET_USER_MEMORY_REGION, &mr);
		gpa = gpa == 0x100000 ? 0x200000 : 0x100000;
	}
	return NULL;
}

/* The child: a small VMM that runs until it is killed. */
static void vmm(const char *dev)
{
	struct vcpu c[2];
	pthread_t t[3];
	uint8_t *low;
	int i;

	if (!vm_create(&vm, dev))
		_exit(2);
	low = vm_add_memory(&vm, 0, 0, 0x10000);
	mem2 = vm_add_memory(&vm, 1, 0x100000, 0x10000);
	if (!low || !mem2)
		_exit(2);
	memcpy(low + CODE, spin, sizeof(spin));
	memcpy(low + CODE + 0x100, out_loop, sizeof(out_loop));
	for (i = 0; i < 2; i++) {
		if (!vcpu_create(&vm, &c[i], i))
			_exit(2);
		vcpu_real_mode(&c[i], CODE + 0x100 * i);
		pthread_create(&t[i], NULL, run_vcpu, &c[i]);
	}
	pthread_create(&t[2], NULL, move_slot, NULL);
	for (;;)
		pause();
}

static long module_refcnt(const char *mod)
{
	char path[128];
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/module/%s/refcnt", mod);
	f = fopen(path, "r");
	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

int main(int argc, char **argv)
{
	const char *dev = test_device(argc, argv);
	int rounds = argc > 2 ? atoi(argv[2]) :
		     cpu_backend() == VIREO_BACKEND_VMX ? 15 : 40;
	unsigned int seed = argc > 3 ? strtoul(argv[3], NULL, 0) :
			    (unsigned int)time(NULL);
	const char *backend = cpu_backend() == VIREO_BACKEND_SVM ?
			      "vireo_svm" : "vireo_vmx";
	int i, status, killed = 0, early = 0;
	struct vcpu vcpu;
	uint8_t *low;
	pid_t pid;

	tap_plan(3);
	tap_diag("device %s, %d rounds, seed %#x", dev, rounds, seed);
	if (test_is_kvm(dev)) {
		tap_skip("Debian's KVM stalls the TCG test host on spinning vCPUs",
			 "VMMs killed at random moments");
		tap_skip("KVM", "every VM is gone");
		tap_skip("KVM", "a new VM runs afterwards");
		tap_done();
	}
	srand(seed);
	for (i = 0; i < rounds; i++) {
		pid = fork();
		if (pid == 0)
			vmm(dev);
		usleep(rand() % 60000);
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
			killed++;
		else
			early++;
	}
	tap_ok(killed == rounds, "%d VMMs killed at random moments (%d ended early)",
	       killed, early);

	/* VM teardown may finish just after the process is reaped */
	for (i = 0; i < 50 && module_refcnt(backend) != 0; i++)
		usleep(100000);
	tap_ok(module_refcnt(backend) == 0, "every VM is gone: %s refcount %ld",
	       backend, module_refcnt(backend));

	if (!vm_create(&vm, dev))
		tap_bail("no VM after the kills");
	low = vm_add_memory(&vm, 0, 0, 0x10000);
	memcpy(low + CODE, out_loop, sizeof(out_loop));
	tap_ok(low && vcpu_create(&vm, &vcpu, 0) &&
	       (vcpu_real_mode(&vcpu, CODE), !vcpu_run(&vcpu)) &&
	       vcpu.run->exit_reason == KVM_EXIT_IO && vcpu.run->io.port == 0x50,
	       "a new VM runs afterwards");
	tap_done();
}
