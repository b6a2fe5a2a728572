// SPDX-License-Identifier: GPL-2.0-only
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "guest.h"
#include "tap.h"

#define PAGE		4096UL
#define STACK_SIZE	(64 * 1024)

/* linker-defined bounds of this static binary's image */
extern char __executable_start[], _end[];

static uint64_t pml4[512] __attribute__((aligned(4096)));
static uint64_t pdpt[512] __attribute__((aligned(4096)));
static uint64_t pd[4][512] __attribute__((aligned(4096)));
static uint64_t gdt[4] __attribute__((aligned(16)));
static uint8_t guest_stack[STACK_SIZE] __attribute__((aligned(4096)));

GUEST_CODE void guest_ucall(uint64_t cmd, uint64_t arg, const char *file,
			    uint64_t line, const char *expr)
{
	volatile struct ucall uc = {
		.cmd = cmd, .arg = arg, .file = file, .line = line,
		.expr = expr,
	};

	/* the image and its stack live below 4 GiB: a 32-bit pointer */
	asm volatile("outl %%eax, %%dx"
		     : : "a" ((uint32_t)(uintptr_t)&uc), "d" (UCALL_PORT)
		     : "memory");
	if (cmd == UCALL_DONE || cmd == UCALL_ASSERT)
		for (;;)
			asm volatile("hlt");
}

static void build_tables(void)
{
	int i, j;

	/* identity, 2 MiB pages, the first 4 GiB */
	memset(pml4, 0, sizeof(pml4));
	pml4[0] = (uintptr_t)pdpt | 3;
	for (i = 0; i < 4; i++) {
		pdpt[i] = (uintptr_t)pd[i] | 3;
		for (j = 0; j < 512; j++)
			pd[i][j] = ((uint64_t)i << 30) | ((uint64_t)j << 21) |
				   0x83;
	}
	gdt[0] = 0;
	gdt[1] = 0x00af9a000000ffffULL;		/* 0x08: 64-bit code */
	gdt[2] = 0x00cf92000000ffffULL;		/* 0x10: data */
}

bool guest_image_writable(void)
{
	uintptr_t start = (uintptr_t)__executable_start & ~(PAGE - 1);
	uintptr_t end = ((uintptr_t)_end + PAGE - 1) & ~(PAGE - 1);

	if (end > (1ULL << 32)) {
		tap_diag("the image is above 4 GiB");
		return false;
	}
	/* the guest's view of the text must be pinnable for writing */
	if (mprotect((void *)start, end - start,
		     PROT_READ | PROT_WRITE | PROT_EXEC)) {
		tap_diag("mprotect of the image failed");
		return false;
	}
	return true;
}

bool guest_vm_create(struct guest_vm *g, const char *dev,
		     void (*fn)(uint64_t), uint64_t arg)
{
	uintptr_t start = (uintptr_t)__executable_start & ~(PAGE - 1);
	uintptr_t end = ((uintptr_t)_end + PAGE - 1) & ~(PAGE - 1);
	struct kvm_userspace_memory_region mr;
	struct kvm_sregs s;
	struct kvm_regs regs;
	struct kvm_segment cs = {
		.limit = 0xffffffff, .selector = 0x8, .type = 0xb,
		.present = 1, .s = 1, .l = 1, .g = 1,
	};
	struct kvm_segment ds = {
		.limit = 0xffffffff, .selector = 0x10, .type = 0x3,
		.present = 1, .s = 1, .db = 1, .g = 1,
	};

	if (!guest_image_writable())
		return false;
	build_tables();
	if (!vm_create(&g->vm, dev))
		return false;
	mr = (struct kvm_userspace_memory_region) {
		.slot = 0, .guest_phys_addr = start,
		.memory_size = end - start, .userspace_addr = start,
	};
	if (ioctl(g->vm.fd, KVM_SET_USER_MEMORY_REGION, &mr) ||
	    !vcpu_create(&g->vm, &g->vcpu, 0)) {
		vm_destroy(&g->vm);
		return false;
	}
	vcpu_set_supported_cpuid(&g->vm, &g->vcpu);

	ioctl(g->vcpu.fd, KVM_GET_SREGS, &s);
	s.cs = cs;
	s.ds = ds;
	s.es = ds;
	s.fs = ds;
	s.gs = ds;
	s.ss = ds;
	s.gdt.base = (uintptr_t)gdt;
	s.gdt.limit = sizeof(gdt) - 1;
	s.cr0 = 0x80050033;	/* PG, WP, NE, ET, MP, PE */
	s.cr3 = (uintptr_t)pml4;
	s.cr4 = 0x20;		/* PAE */
	s.efer = 0x500;		/* LME, LMA */
	if (ioctl(g->vcpu.fd, KVM_SET_SREGS, &s)) {
		guest_vm_destroy(g);
		return false;
	}
	memset(&regs, 0, sizeof(regs));
	regs.rip = (uintptr_t)fn;
	regs.rdi = arg;
	/* as after a CALL: 16-byte aligned minus the return address */
	regs.rsp = (uintptr_t)guest_stack + STACK_SIZE - 8;
	regs.rflags = 2;
	ioctl(g->vcpu.fd, KVM_SET_REGS, &regs);
	return true;
}

void guest_vm_destroy(struct guest_vm *g)
{
	vcpu_destroy(&g->vm, &g->vcpu);
	vm_destroy(&g->vm);
}

enum ucall_cmd guest_run(struct guest_vm *g, struct ucall *uc)
{
	struct kvm_run *run = g->vcpu.run;
	uint32_t ptr;

	memset(uc, 0, sizeof(*uc));
	if (vcpu_run(&g->vcpu))
		return UCALL_NONE;
	if (run->exit_reason != KVM_EXIT_IO || run->io.port != UCALL_PORT ||
	    run->io.size != 4 || run->io.direction != KVM_EXIT_IO_OUT)
		return UCALL_NONE;
	memcpy(&ptr, (uint8_t *)run + run->io.data_offset, 4);
	memcpy(uc, (void *)(uintptr_t)ptr, sizeof(*uc));
	return uc->cmd;
}
