// SPDX-License-Identifier: GPL-2.0-only
#include <cpuid.h>
#include <string.h>
#include <sys/ioctl.h>

#include "tap.h"
#include "x86.h"

#define IST_SIZE	(16 * 1024)
#define SEL_CODE	0x08
#define SEL_DATA	0x10
#define SEL_TSS		0x18

/* the 64-bit TSS: only the IST pointers matter here */
struct x86_tss {
	uint32_t reserved0;
	uint64_t rsp[3];
	uint64_t reserved1;
	uint64_t ist[7];
	uint64_t reserved2;
	uint16_t reserved3;
	uint16_t iomap_base;
} __attribute__((packed));

extern char __executable_start[], _end[];
/* guest_x86.S: the entry stub of each vector */
extern const uint64_t x86_isr_stubs[256];

volatile struct x86_log x86_log;
x86_handler_t volatile x86_handlers[256];

static uint64_t gdt[5] __attribute__((aligned(16)));
static uint64_t idt[512] __attribute__((aligned(4096)));
static struct x86_tss tss __attribute__((aligned(128)));
/* IST1 for everything, IST2 for NMIs so an NMI never lands on IST1 */
static uint8_t ist1[IST_SIZE] __attribute__((aligned(4096)));
static uint8_t ist2[IST_SIZE] __attribute__((aligned(4096)));

GUEST_CODE void x86_guest_isr(struct x86_regs *regs)
{
	uint64_t v = regs->vector & 0xff;
	x86_handler_t h = x86_handlers[v];
	uint32_t n = x86_log.n;

	x86_log.count[v]++;
	if (n < X86_LOG_SEQ)
		x86_log.seq[n] = v;
	x86_log.n = n + 1;
	x86_log.last_vector = v;
	x86_log.last_error = regs->error_code;
	x86_log.last_rip = regs->rip;
	x86_log.last_rflags = regs->rflags;
	if (h)
		h(regs);
	else if (v < 32 && v != 2)
		guest_ucall(UCALL_ASSERT, v, __FILE__, regs->rip,
			    "unexpected exception");
}

GUEST_CODE uint64_t x86_guest_enable_fpu(uint64_t xcr0)
{
	uint32_t lo = 0, hi = 0;
	uint64_t cr4;

	asm volatile("mov %%cr4, %0" : "=r" (cr4));
	cr4 |= X86_CR4_OSFXSR | X86_CR4_OSXMMEXCPT;
	if (xcr0)
		cr4 |= X86_CR4_OSXSAVE;
	asm volatile("mov %0, %%cr4" : : "r" (cr4) : "memory");
	/* XGETBV right after XSETBV: nothing in between exits */
	if (xcr0)
		asm volatile("xsetbv\n\t"
			     "xgetbv"
			     : "=a" (lo), "=d" (hi)
			     : "c" (0), "a" ((uint32_t)xcr0),
			       "d" ((uint32_t)(xcr0 >> 32)));
	return (uint64_t)hi << 32 | lo;
}

static void build_tables(void)
{
	uint64_t base = (uintptr_t)&tss, limit = sizeof(tss) - 1, off;
	int i;

	gdt[0] = 0;
	gdt[1] = 0x00af9a000000ffffULL;		/* 0x08: 64-bit code */
	gdt[2] = 0x00cf92000000ffffULL;		/* 0x10: data */
	/* 0x18: busy 64-bit TSS, two slots */
	gdt[3] = (limit & 0xffff) | (base & 0xffffff) << 16 |
		 0xbULL << 40 | 1ULL << 47 | ((limit >> 16) & 0xf) << 48 |
		 ((base >> 24) & 0xff) << 56;
	gdt[4] = base >> 32;

	memset(&tss, 0, sizeof(tss));
	tss.ist[0] = (uintptr_t)ist1 + IST_SIZE;
	tss.ist[1] = (uintptr_t)ist2 + IST_SIZE;
	tss.iomap_base = sizeof(tss);

	for (i = 0; i < 256; i++) {
		off = x86_isr_stubs[i];
		/* present 64-bit interrupt gate, DPL 0 */
		idt[2 * i] = (off & 0xffff) | (uint64_t)SEL_CODE << 16 |
			     (uint64_t)(i == 2 ? 2 : 1) << 32 |
			     0x8eULL << 40 | ((off >> 16) & 0xffff) << 48;
		idt[2 * i + 1] = off >> 32;
	}
}

void x86_log_reset(void)
{
	memset((void *)&x86_log, 0, sizeof(x86_log));
}

bool x86_vcpu_load_tables(struct vcpu *vcpu)
{
	struct kvm_sregs s;

	if (ioctl(vcpu->fd, KVM_GET_SREGS, &s))
		return false;
	s.gdt.base = (uintptr_t)gdt;
	s.gdt.limit = sizeof(gdt) - 1;
	s.idt.base = (uintptr_t)idt;
	s.idt.limit = sizeof(idt) - 1;
	s.tr = (struct kvm_segment) {
		.base = (uintptr_t)&tss, .limit = sizeof(tss) - 1,
		.selector = SEL_TSS, .type = 0xb, .present = 1,
	};
	return !ioctl(vcpu->fd, KVM_SET_SREGS, &s);
}

bool x86_guest_create(struct guest_vm *g, const char *dev,
		      void (*fn)(uint64_t), uint64_t arg)
{
	build_tables();
	x86_log_reset();
	memset((void *)x86_handlers, 0, sizeof(x86_handlers));
	if (!guest_vm_create(g, dev, fn, arg))
		return false;
	if (!x86_vcpu_load_tables(&g->vcpu)) {
		tap_diag("KVM_SET_SREGS with an IDT and a TSS failed");
		guest_vm_destroy(g);
		return false;
	}
	return true;
}

bool x86_vm_map_image(struct vm *vm)
{
	uintptr_t start = (uintptr_t)__executable_start & ~4095UL;
	uintptr_t end = ((uintptr_t)_end + 4095) & ~4095UL;
	struct kvm_userspace_memory_region mr = {
		.slot = 0, .guest_phys_addr = start,
		.memory_size = end - start, .userspace_addr = start,
	};

	return !ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &mr);
}

bool x86_vcpu_complete_io(struct vcpu *vcpu)
{
	int ret;

	vcpu->run->immediate_exit = 1;
	ret = vcpu_run(vcpu);
	vcpu->run->immediate_exit = 0;
	return ret == -1 && errno == EINTR;
}

bool x86_supported_cpuid(int kvm, uint32_t leaf, uint32_t sub,
			 struct kvm_cpuid_entry2 *out)
{
	static struct {
		struct kvm_cpuid2 hdr;
		struct kvm_cpuid_entry2 e[256];
	} cpuid;
	uint32_t i;

	cpuid.hdr.nent = 256;
	if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, &cpuid))
		return false;
	for (i = 0; i < cpuid.hdr.nent; i++) {
		struct kvm_cpuid_entry2 *e = &cpuid.e[i];

		if (e->function != leaf)
			continue;
		if ((e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) &&
		    e->index != sub)
			continue;
		*out = *e;
		return true;
	}
	return false;
}

bool x86_get_msr(struct vcpu *vcpu, uint32_t index, uint64_t *value)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} m = { .hdr.nmsrs = 1, .e.index = index };

	if (ioctl(vcpu->fd, KVM_GET_MSRS, &m) != 1)
		return false;
	*value = m.e.data;
	return true;
}

bool x86_set_msr(struct vcpu *vcpu, uint32_t index, uint64_t value)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} m = { .hdr.nmsrs = 1, .e.index = index, .e.data = value };

	return ioctl(vcpu->fd, KVM_SET_MSRS, &m) == 1;
}

bool x86_host_is_tcg(void)
{
	unsigned int a, sig[3];

	__cpuid(1, a, sig[0], sig[1], sig[2]);
	if (!(sig[1] & (1U << 31)))	/* no hypervisor */
		return false;
	__cpuid(0x40000000, a, sig[0], sig[1], sig[2]);
	return !memcmp(sig, "TCGTCGTCGTCG", 12);
}

bool x86_host_has_avx(void)
{
	unsigned int a, b, c, d, lo, hi;

	__cpuid(1, a, b, c, d);
	/* AVX and OSXSAVE */
	if ((c & (1U << 28 | 1U << 27)) != (1U << 28 | 1U << 27))
		return false;
	asm volatile("xgetbv" : "=a" (lo), "=d" (hi) : "c" (0));
	return (lo & 6) == 6;
}
