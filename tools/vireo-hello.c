// SPDX-License-Identifier: GPL-2.0-only
/*
 * vireo-hello: the smallest VMM.  Creates a VM with 1 MiB of memory, puts
 * a real-mode guest at the reset vector's segment that asks CPUID for the
 * vendor, prints a greeting one byte at a time to port 0x3f8 and halts.
 * The VMM echoes the bytes to stdout.
 *
 * Usage: vireo-hello [device]   (default /dev/vireo; /dev/kvm works too)
 * Exit status 0 when the guest said its whole greeting and halted.
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define MEM_SIZE	0x100000
#define CODE_ADDR	0x1000
#define MSG_ADDR	0x1100
#define SERIAL_PORT	0x3f8

static const char greeting[] = "Hello from a Vireo guest!\n";

/* 16-bit code: SI = message; loop { lodsb; test al; jz done; out; } hlt */
static const unsigned char guest_code[] = {
	0x0f, 0xa2,			/* cpuid (EAX=0: vendor) */
	0xbe, MSG_ADDR & 0xff, MSG_ADDR >> 8,	/* mov si, MSG_ADDR */
	0xba, SERIAL_PORT & 0xff, SERIAL_PORT >> 8, /* mov dx, 0x3f8 */
	0xac,				/* 1: lodsb */
	0x84, 0xc0,			/* test al, al */
	0x74, 0x03,			/* jz 2f */
	0xee,				/* out dx, al */
	0xeb, 0xf8,			/* jmp 1b */
	0xf4,				/* 2: hlt */
};

int main(int argc, char **argv)
{
	const char *dev = argc > 1 ? argv[1] : "/dev/vireo";
	struct kvm_userspace_memory_region region;
	char out[sizeof(greeting) + 16];
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	size_t n = 0;
	struct kvm_run *run;
	int kvm, vm, vcpu;
	long size;
	char *mem;

	kvm = open(dev, O_RDWR | O_CLOEXEC);
	if (kvm < 0) {
		perror(dev);
		return 1;
	}
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0) {
		perror("KVM_CREATE_VM");
		return 1;
	}
	mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE,
		   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	memcpy(mem + CODE_ADDR, guest_code, sizeof(guest_code));
	memcpy(mem + MSG_ADDR, greeting, sizeof(greeting));
	region = (struct kvm_userspace_memory_region) {
		.slot = 0,
		.guest_phys_addr = 0,
		.memory_size = MEM_SIZE,
		.userspace_addr = (unsigned long)mem,
	};
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
		perror("KVM_SET_USER_MEMORY_REGION");
		return 1;
	}
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vcpu < 0 || size < (long)sizeof(*run)) {
		perror("KVM_CREATE_VCPU");
		return 1;
	}
	run = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED) {
		perror("mmap vcpu");
		return 1;
	}
	if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) {
		perror("KVM_GET_SREGS");
		return 1;
	}
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) {
		perror("KVM_SET_SREGS");
		return 1;
	}
	memset(&regs, 0, sizeof(regs));
	regs.rip = CODE_ADDR;
	regs.rflags = 2;
	if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) {
		perror("KVM_SET_REGS");
		return 1;
	}

	for (;;) {
		if (ioctl(vcpu, KVM_RUN, 0) < 0) {
			perror("KVM_RUN");
			return 1;
		}
		if (run->exit_reason == KVM_EXIT_IO &&
		    run->io.direction == KVM_EXIT_IO_OUT &&
		    run->io.port == SERIAL_PORT && run->io.size == 1 &&
		    n < sizeof(out) - 1) {
			out[n++] = *((char *)run + run->io.data_offset);
			continue;
		}
		if (run->exit_reason == KVM_EXIT_HLT)
			break;
		fprintf(stderr, "vireo-hello: unexpected exit %u", run->exit_reason);
		if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR)
			fprintf(stderr, " (suberror %u, data %#llx %#llx)",
				run->internal.suberror,
				(unsigned long long)run->internal.data[0],
				(unsigned long long)run->internal.data[1]);
		if (run->exit_reason == KVM_EXIT_IO)
			fprintf(stderr, " (port %#x size %u dir %u count %u)",
				run->io.port, run->io.size,
				run->io.direction, run->io.count);
		if (run->exit_reason == KVM_EXIT_FAIL_ENTRY)
			fprintf(stderr, " (reason %#llx)",
				(unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		out[n] = 0;
		fprintf(stderr, "; the guest said \"%s\"\n", out);
		return 1;
	}
	out[n] = 0;
	fputs(out, stdout);
	if (strcmp(out, greeting)) {
		fprintf(stderr, "vireo-hello: the guest said something else\n");
		return 1;
	}
	return 0;
}
