// SPDX-License-Identifier: GPL-2.0-only
/*
 * CPUID: KVM_GET_SUPPORTED_CPUID, KVM_SET_CPUID2/KVM_GET_CPUID2, and a
 * guest whose CPUID instructions return exactly the table the VMM set.
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lib/tap.h"

#define MEM_SIZE	0x10000
#define CODE		0x1000
#define QUERIES		0x2000
#define NQ		6

/* One query: the guest fills in the four outputs. */
struct query {
	uint32_t leaf, sub;
	uint32_t eax, ebx, ecx, edx;
};

/*
 * 16-bit guest: for each of NQ queries at QUERIES, load EAX/ECX, CPUID,
 * store EAX..EDX, then HLT.  (Bytes from GNU as, .code16.)
 */
static const uint8_t guest[] = {
	0xbe, QUERIES & 0xff, QUERIES >> 8,	/* mov si, QUERIES */
	0xbd, NQ, 0x00,				/* mov bp, NQ */
	0x66, 0x8b, 0x04,			/* 1: mov eax, [si] */
	0x66, 0x8b, 0x4c, 0x04,			/* mov ecx, [si+4] */
	0x0f, 0xa2,				/* cpuid */
	0x66, 0x89, 0x44, 0x08,			/* mov [si+8], eax */
	0x66, 0x89, 0x5c, 0x0c,			/* mov [si+12], ebx */
	0x66, 0x89, 0x4c, 0x10,			/* mov [si+16], ecx */
	0x66, 0x89, 0x54, 0x14,			/* mov [si+20], edx */
	0x83, 0xc6, 0x18,			/* add si, 24 */
	0x4d,					/* dec bp */
	0x75, 0xe1,				/* jnz 1b */
	0xf4,					/* hlt */
};

struct cpuid_buf {
	struct kvm_cpuid2 hdr;
	struct kvm_cpuid_entry2 e[256];
};

static struct kvm_cpuid_entry2 ent(uint32_t leaf, uint32_t sub, int indexed,
				   uint32_t a, uint32_t b, uint32_t c,
				   uint32_t d)
{
	struct kvm_cpuid_entry2 e = {
		.function = leaf, .index = sub,
		.flags = indexed ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0,
		.eax = a, .ebx = b, .ecx = c, .edx = d,
	};

	return e;
}

static const struct kvm_cpuid_entry2 *find(const struct cpuid_buf *b,
					   uint32_t leaf, uint32_t sub)
{
	uint32_t i;

	for (i = 0; i < b->hdr.nent; i++)
		if (b->e[i].function == leaf &&
		    (!(b->e[i].flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) ||
		     b->e[i].index == sub))
			return &b->e[i];
	return NULL;
}

int main(int argc, char **argv)
{
	const char *dev = test_device(argc, argv);
	static struct cpuid_buf sup, mine, back;
	const struct kvm_cpuid_entry2 *e;
	struct kvm_userspace_memory_region mr;
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct kvm_run *run;
	struct query *q;
	int kvm, vm, vcpu, i, ok, ret;
	uint8_t *mem;

	tap_plan(11);
	kvm = open(dev, O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		tap_bail("cannot open %s", dev);

	sup.hdr.nent = 1;
	ret = ioctl(kvm, KVM_GET_SUPPORTED_CPUID, &sup);
	TAP_ERRNO(ret, E2BIG, "KVM_GET_SUPPORTED_CPUID with 1 entry is E2BIG");
	sup.hdr.nent = 256;
	ret = ioctl(kvm, KVM_GET_SUPPORTED_CPUID, &sup);
	tap_ok(ret == 0 && sup.hdr.nent > 2,
	       "KVM_GET_SUPPORTED_CPUID lists %u entries", sup.hdr.nent);
	e = find(&sup, 0x40000000, 0);
	tap_ok(e && e->ebx == 0x4b4d564b && e->ecx == 0x564b4d56 &&
	       e->edx == 0x4d, "leaf 0x40000000 carries the KVMKVMKVM signature");
	if (test_is_kvm(dev)) {
		tap_skip("KVM offers nested virtualization",
			 "no VMX in leaf 1, no SVM in leaf 0x80000001");
	} else {
		e = find(&sup, 1, 0);
		ok = e && !(e->ecx & (1U << 5));
		e = find(&sup, 0x80000001, 0);
		tap_ok(ok && e && !(e->ecx & (1U << 2)),
		       "no VMX in leaf 1, no SVM in leaf 0x80000001");
	}

	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE,
		   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	memcpy(mem + CODE, guest, sizeof(guest));
	mr = (struct kvm_userspace_memory_region) {
		.slot = 0, .memory_size = MEM_SIZE,
		.userspace_addr = (uintptr_t)mem,
	};
	vcpu = -1;
	if (vm >= 0 && !ioctl(vm, KVM_SET_USER_MEMORY_REGION, &mr))
		vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0)
		tap_bail("cannot create a VM and a vCPU");
	run = mmap(NULL, ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0),
		   PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);

	/* A table no CPU has: "VireoTestCPU", odd values, indexed leaf 7. */
	mine.e[0] = ent(0, 0, 0, 7, 0x65726956, 0x55504354, 0x7473546f);
	mine.e[1] = ent(1, 0, 0, 0x000806e9, 0x00010800, 0x12345678 & ~(1U << 27),
			0x9abcdef0);
	mine.e[2] = ent(7, 0, 1, 1, 0x11111111, 0x22222222, 0x33333333);
	mine.e[3] = ent(7, 1, 1, 0, 0x44444444, 0x55555555, 0x66666666);
	mine.e[4] = ent(0x80000000, 0, 0, 0x80000001, 0, 0, 0);
	mine.e[5] = ent(0x80000001, 0, 0, 0, 0, 0x00000121, 0x2c100800);
	mine.hdr.nent = 6;
	tap_ok(ioctl(vcpu, KVM_SET_CPUID2, &mine) == 0, "KVM_SET_CPUID2");

	back.hdr.nent = 2;
	ret = ioctl(vcpu, KVM_GET_CPUID2, &back);
	/* KVM leaves nent alone on E2BIG */
	TAP_ERRNO(ret, E2BIG, "KVM_GET_CPUID2 with room for 2 is E2BIG");
	back.hdr.nent = 256;
	ret = ioctl(vcpu, KVM_GET_CPUID2, &back);
	/* Vireo sets nent to the table's size; Debian's KVM leaves it */
	ok = ret == 0 && (back.hdr.nent == 6 || back.hdr.nent == 256);
	if (!ok)
		tap_diag("KVM_GET_CPUID2: %d, nent %u", ret, back.hdr.nent);
	for (i = 0; ok && i < 6; i++) {
		const struct kvm_cpuid_entry2 *a = &back.e[i], *b = &mine.e[i];

		ok = a->function == b->function && a->index == b->index &&
		     a->flags == b->flags && a->eax == b->eax &&
		     a->ebx == b->ebx && a->ecx == b->ecx && a->edx == b->edx;
		if (!ok)
			tap_diag("entry %d: %#x.%u %x %08x %08x %08x %08x", i,
				 a->function, a->index, a->flags, a->eax,
				 a->ebx, a->ecx, a->edx);
	}
	tap_ok(ok, "KVM_GET_CPUID2 returns the table");

	q = (struct query *)(mem + QUERIES);
	q[0] = (struct query){ .leaf = 0 };
	q[1] = (struct query){ .leaf = 1 };
	q[2] = (struct query){ .leaf = 7, .sub = 0 };
	q[3] = (struct query){ .leaf = 7, .sub = 1 };
	q[4] = (struct query){ .leaf = 0x80000001 };
	q[5] = (struct query){ .leaf = 5 };	/* not in the table */
	ioctl(vcpu, KVM_GET_SREGS, &sregs);
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	ioctl(vcpu, KVM_SET_SREGS, &sregs);
	memset(&regs, 0, sizeof(regs));
	regs.rip = CODE;
	regs.rflags = 2;
	ioctl(vcpu, KVM_SET_REGS, &regs);
	ret = ioctl(vcpu, KVM_RUN, 0);
	tap_ok(ret == 0 && run->exit_reason == KVM_EXIT_HLT,
	       "the guest ran its CPUIDs and halted (exit %u)",
	       run->exit_reason);

	ok = 1;
	for (i = 0; i < NQ - 1; i++) {
		e = find(&mine, q[i].leaf, q[i].sub);
		if (!e || q[i].eax != e->eax || q[i].ebx != e->ebx ||
		    q[i].ecx != e->ecx || q[i].edx != e->edx) {
			tap_diag("leaf %#x.%u: got %08x %08x %08x %08x",
				 q[i].leaf, q[i].sub, q[i].eax, q[i].ebx,
				 q[i].ecx, q[i].edx);
			ok = 0;
		}
	}
	tap_ok(ok, "the guest saw exactly the table, subleaves included");
	tap_ok(!q[5].eax && !q[5].ebx && !q[5].ecx && !q[5].edx,
	       "a leaf outside the table reads as zeros");

	mine.e[1].edx ^= 1;
	ret = ioctl(vcpu, KVM_SET_CPUID2, &mine);
	mine.e[1].edx ^= 1;
	tap_ok(ret == -1 && errno == EINVAL &&
	       ioctl(vcpu, KVM_SET_CPUID2, &mine) == 0,
	       "after KVM_RUN only the same table may be set again");
	close(vcpu);
	close(vm);
	close(kvm);
	tap_done();
}
