// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tap.h"
#include "vm.h"

bool vm_create(struct vm *vm, const char *dev)
{
	vm->kvm = open(dev, O_RDWR | O_CLOEXEC);
	if (vm->kvm < 0) {
		tap_diag("open %s: %s", dev, strerror(errno));
		return false;
	}
	vm->fd = ioctl(vm->kvm, KVM_CREATE_VM, 0);
	vm->run_size = ioctl(vm->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->fd < 0 || vm->run_size < (long)sizeof(struct kvm_run)) {
		tap_diag("KVM_CREATE_VM: %s", strerror(errno));
		close(vm->kvm);
		return false;
	}
	return true;
}

void vm_destroy(struct vm *vm)
{
	close(vm->fd);
	close(vm->kvm);
}

void *vm_add_memory(struct vm *vm, uint32_t slot, uint64_t gpa, size_t size)
{
	struct kvm_userspace_memory_region mr;
	void *mem;

	mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
		   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return NULL;
	mr = (struct kvm_userspace_memory_region) {
		.slot = slot, .guest_phys_addr = gpa, .memory_size = size,
		.userspace_addr = (uintptr_t)mem,
	};
	if (ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &mr)) {
		tap_diag("slot %u at %#llx: %s", slot, (unsigned long long)gpa,
			 strerror(errno));
		munmap(mem, size);
		return NULL;
	}
	return mem;
}

int vm_set_slot(struct vm *vm, uint32_t slot, uint64_t gpa, uint64_t size,
		void *mem, uint32_t flags)
{
	struct kvm_userspace_memory_region mr = {
		.slot = slot, .flags = flags, .guest_phys_addr = gpa,
		.memory_size = size, .userspace_addr = (uintptr_t)mem,
	};

	return ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &mr);
}

bool vcpu_create(struct vm *vm, struct vcpu *vcpu, int id)
{
	vcpu->fd = ioctl(vm->fd, KVM_CREATE_VCPU, id);
	if (vcpu->fd < 0)
		return false;
	vcpu->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE,
			 MAP_SHARED, vcpu->fd, 0);
	if (vcpu->run == MAP_FAILED) {
		close(vcpu->fd);
		return false;
	}
	return true;
}

void vcpu_destroy(struct vm *vm, struct vcpu *vcpu)
{
	munmap(vcpu->run, vm->run_size);
	close(vcpu->fd);
}

bool vcpu_set_supported_cpuid(struct vm *vm, struct vcpu *vcpu)
{
	static struct {
		struct kvm_cpuid2 hdr;
		struct kvm_cpuid_entry2 e[256];
	} cpuid;

	cpuid.hdr.nent = 256;
	return !ioctl(vm->kvm, KVM_GET_SUPPORTED_CPUID, &cpuid) &&
	       !ioctl(vcpu->fd, KVM_SET_CPUID2, &cpuid);
}

int vcpu_run(struct vcpu *vcpu)
{
	return ioctl(vcpu->fd, KVM_RUN, 0);
}

const char *lost_state_note(const struct kvm_run *run)
{
	if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR &&
	    run->internal.ndata >= 2 && run->internal.data[1] == 0x4c4f5354)
		return " (the emulated CPU lost the guest's state: see Documentation/testing.rst)";
	return "";
}

const char *exit_name(uint32_t reason)
{
	static const char *const names[] = {
		[KVM_EXIT_UNKNOWN] = "UNKNOWN", [KVM_EXIT_EXCEPTION] = "EXCEPTION",
		[KVM_EXIT_IO] = "IO", [KVM_EXIT_HYPERCALL] = "HYPERCALL",
		[KVM_EXIT_DEBUG] = "DEBUG", [KVM_EXIT_HLT] = "HLT",
		[KVM_EXIT_MMIO] = "MMIO", [KVM_EXIT_SHUTDOWN] = "SHUTDOWN",
		[KVM_EXIT_FAIL_ENTRY] = "FAIL_ENTRY", [KVM_EXIT_INTR] = "INTR",
		[KVM_EXIT_INTERNAL_ERROR] = "INTERNAL_ERROR",
	};

	if (reason < ARRAY_SIZE(names) && names[reason])
		return names[reason];
	return "?";
}

static void set_regs(struct vcpu *vcpu, uint64_t rip)
{
	struct kvm_regs regs;

	memset(&regs, 0, sizeof(regs));
	regs.rip = rip;
	regs.rflags = 2;
	regs.rsp = 0x7ff0;
	ioctl(vcpu->fd, KVM_SET_REGS, &regs);
}

void vcpu_real_mode(struct vcpu *vcpu, uint64_t rip)
{
	struct kvm_sregs s;

	ioctl(vcpu->fd, KVM_GET_SREGS, &s);
	s.cs.selector = 0;
	s.cs.base = 0;
	ioctl(vcpu->fd, KVM_SET_SREGS, &s);
	set_regs(vcpu, rip);
}

static void flat(struct kvm_segment *seg, uint16_t sel, int code, int l)
{
	*seg = (struct kvm_segment) {
		.base = 0, .limit = 0xffffffff, .selector = sel,
		.type = code ? 0xb : 0x3, .present = 1, .dpl = 0,
		.db = !l, .s = 1, .l = l, .g = 1,
	};
}

void vcpu_prot_mode(struct vcpu *vcpu, uint64_t rip, uint64_t cr0,
		    uint64_t cr3, uint64_t cr4)
{
	struct kvm_sregs s;

	ioctl(vcpu->fd, KVM_GET_SREGS, &s);
	flat(&s.cs, 0x8, 1, 0);
	flat(&s.ds, 0x10, 0, 0);
	s.es = s.ds;
	s.fs = s.ds;
	s.gs = s.ds;
	s.ss = s.ds;
	s.cr0 = cr0;
	s.cr3 = cr3;
	s.cr4 = cr4;
	s.efer = 0;
	ioctl(vcpu->fd, KVM_SET_SREGS, &s);
	set_regs(vcpu, rip);
}

void vcpu_long_mode(struct vcpu *vcpu, uint64_t rip, uint64_t cr3)
{
	struct kvm_sregs s;

	ioctl(vcpu->fd, KVM_GET_SREGS, &s);
	flat(&s.cs, 0x8, 1, 1);
	flat(&s.ds, 0x10, 0, 0);
	s.es = s.ds;
	s.fs = s.ds;
	s.gs = s.ds;
	s.ss = s.ds;
	s.cr0 = 0x80000011;
	s.cr3 = cr3;
	s.cr4 = 0x20;
	s.efer = 0x500;
	ioctl(vcpu->fd, KVM_SET_SREGS, &s);
	set_regs(vcpu, rip);
}

#define MMIO_2M		(0x10000000 >> 21)

void build_pse32_tables(uint8_t *slot, uint64_t slot_gpa, uint64_t base)
{
	uint32_t *pd = (uint32_t *)(slot + base - slot_gpa);

	memset(pd, 0, 4096);
	pd[0] = 0x83;				/* 4 MiB at 0 */
	pd[0x10000000 >> 22] = 0x10000000 | 0x83;
}

void build_pae_tables(uint8_t *slot, uint64_t slot_gpa, uint64_t base)
{
	uint64_t *pdpt = (uint64_t *)(slot + base - slot_gpa);
	uint64_t *pd = (uint64_t *)(slot + base - slot_gpa + 0x1000);

	memset(pdpt, 0, 0x2000);
	pdpt[0] = (base + 0x1000) | 1;
	pd[0] = 0x83;				/* 2 MiB at 0 */
	pd[MMIO_2M] = 0x10000000 | 0x83;
}

void build_long_tables(uint8_t *slot, uint64_t slot_gpa, uint64_t base)
{
	uint64_t *pml4 = (uint64_t *)(slot + base - slot_gpa);
	uint64_t *pdpt = (uint64_t *)(slot + base - slot_gpa + 0x1000);
	uint64_t *pd = (uint64_t *)(slot + base - slot_gpa + 0x2000);

	memset(pml4, 0, 0x3000);
	pml4[0] = (base + 0x1000) | 3;
	pdpt[0] = (base + 0x2000) | 3;
	pd[0] = 0x83;
	pd[MMIO_2M] = 0x10000000 | 0x83;
}

int run_expect(struct vcpu *vcpu, const struct expect *x, int n)
{
	struct kvm_run *run = vcpu->run;
	uint8_t *data;
	uint64_t v;
	int i;

	for (i = 0; i < n; i++) {
		if (vcpu_run(vcpu)) {
			tap_diag("step %d: KVM_RUN: %s", i, strerror(errno));
			return i;
		}
		switch (x[i].kind) {
		case X_OUT:
		case X_IN:
			data = (uint8_t *)run + run->io.data_offset;
			if (run->exit_reason != KVM_EXIT_IO ||
			    run->io.port != x[i].where ||
			    run->io.size != x[i].size || run->io.count != 1 ||
			    run->io.direction != (x[i].kind == X_IN ?
						  KVM_EXIT_IO_IN :
						  KVM_EXIT_IO_OUT))
				goto bad;
			v = 0;
			if (x[i].kind == X_IN) {
				memcpy(data, &x[i].value, x[i].size);
				break;
			}
			memcpy(&v, data, x[i].size);
			if (v != x[i].value)
				goto bad_value;
			break;
		case X_MMIO_W:
		case X_MMIO_R:
			if (run->exit_reason != KVM_EXIT_MMIO ||
			    run->mmio.phys_addr != x[i].where ||
			    run->mmio.len != x[i].size ||
			    run->mmio.is_write != (x[i].kind == X_MMIO_W ? 1 : 0))
				goto bad;
			v = 0;
			if (x[i].kind == X_MMIO_R) {
				memcpy(run->mmio.data, &x[i].value, x[i].size);
				break;
			}
			memcpy(&v, run->mmio.data, x[i].size);
			if (v != x[i].value)
				goto bad_value;
			break;
		case X_HLT:
			if (run->exit_reason != KVM_EXIT_HLT)
				goto bad;
			break;
		}
	}
	return n;
bad:
	tap_diag("step %d: exit %s (port %#x size %u dir %u; mmio %#llx len %u write %u)",
		 i, exit_name(run->exit_reason), run->io.port, run->io.size,
		 run->io.direction, (unsigned long long)run->mmio.phys_addr,
		 run->mmio.len, run->mmio.is_write);
	return i;
bad_value:
	tap_diag("step %d: the guest wrote %#llx, not %#llx", i,
		 (unsigned long long)v, (unsigned long long)x[i].value);
	return i;
}
