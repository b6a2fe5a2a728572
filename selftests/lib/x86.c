// SPDX-License-Identifier: GPL-2.0-only
#include <cpuid.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

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

/* ---- VMs built in steps, several vCPUs ---- */

#define MP_STACK	(64 * 1024)

struct mp_cpu {
	uint8_t stack[MP_STACK];
	uint8_t ist1[IST_SIZE];
	uint8_t ist2[IST_SIZE];
	struct x86_tss tss __attribute__((aligned(128)));
};

static struct mp_cpu mp_cpus[X86_MAX_VCPUS] __attribute__((aligned(4096)));
static uint64_t mp_gdt[3 + 2 * X86_MAX_VCPUS] __attribute__((aligned(16)));
static uint64_t mp_pml4[512] __attribute__((aligned(4096)));
static uint64_t mp_pdpt[512] __attribute__((aligned(4096)));
static uint64_t mp_pd[4][512] __attribute__((aligned(4096)));

/* LGDT/LIDT operand */
struct x86_dtr {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

static void build_mp_tables(void)
{
	uint64_t base, limit = sizeof(struct x86_tss) - 1;
	int i, j;

	mp_gdt[0] = 0;
	mp_gdt[1] = 0x00af9a000000ffffULL;	/* 0x08: 64-bit code */
	mp_gdt[2] = 0x00cf92000000ffffULL;	/* 0x10: data */
	for (i = 0; i < X86_MAX_VCPUS; i++) {
		struct mp_cpu *c = &mp_cpus[i];

		memset(&c->tss, 0, sizeof(c->tss));
		c->tss.ist[0] = (uintptr_t)c->ist1 + IST_SIZE;
		c->tss.ist[1] = (uintptr_t)c->ist2 + IST_SIZE;
		c->tss.iomap_base = sizeof(c->tss);
		/* available 64-bit TSS: an AP's LTR marks it busy */
		base = (uintptr_t)&c->tss;
		mp_gdt[3 + 2 * i] = (limit & 0xffff) | (base & 0xffffff) << 16 |
				    0x9ULL << 40 | 1ULL << 47 |
				    ((limit >> 16) & 0xf) << 48 |
				    ((base >> 24) & 0xff) << 56;
		mp_gdt[4 + 2 * i] = base >> 32;
	}

	memset(mp_pml4, 0, sizeof(mp_pml4));
	mp_pml4[0] = (uintptr_t)mp_pdpt | 3;
	for (i = 0; i < 4; i++) {
		mp_pdpt[i] = (uintptr_t)mp_pd[i] | 3;
		for (j = 0; j < 512; j++)
			mp_pd[i][j] = ((uint64_t)i << 30) |
				      ((uint64_t)j << 21) | 0x83;
	}
}

bool x86_vm_create(struct vm *vm, const char *dev)
{
	if (!guest_image_writable())
		return false;
	build_tables();
	build_mp_tables();
	x86_log_reset();
	memset((void *)x86_handlers, 0, sizeof(x86_handlers));
	if (!vm_create(vm, dev))
		return false;
	if (!x86_vm_map_image(vm)) {
		tap_diag("KVM_SET_USER_MEMORY_REGION of the image: %s",
			 strerror(errno));
		vm_destroy(vm);
		return false;
	}
	return true;
}

bool x86_vcpu_add(struct vm *vm, struct vcpu *vcpu, int id,
		  void (*fn)(uint64_t), uint64_t arg)
{
	struct kvm_segment cs = {
		.limit = 0xffffffff, .selector = 0x8, .type = 0xb,
		.present = 1, .s = 1, .l = 1, .g = 1,
	};
	struct kvm_segment ds = {
		.limit = 0xffffffff, .selector = 0x10, .type = 0x3,
		.present = 1, .s = 1, .db = 1, .g = 1,
	};
	struct kvm_sregs s;
	struct kvm_regs regs;

	if (id < 0 || id >= X86_MAX_VCPUS)
		return false;
	if (!vcpu_create(vm, vcpu, id)) {
		tap_diag("KVM_CREATE_VCPU %d: %s", id, strerror(errno));
		return false;
	}
	if (!vcpu_set_supported_cpuid(vm, vcpu)) {
		tap_diag("KVM_SET_CPUID2 on vCPU %d: %s", id, strerror(errno));
		goto fail;
	}
	if (!fn)
		return true;
	if (ioctl(vcpu->fd, KVM_GET_SREGS, &s))
		goto fail;
	s.cs = cs;
	s.ds = ds;
	s.es = ds;
	s.fs = ds;
	s.gs = ds;
	s.ss = ds;
	s.gdt.base = (uintptr_t)mp_gdt;
	s.gdt.limit = sizeof(mp_gdt) - 1;
	s.idt.base = (uintptr_t)idt;
	s.idt.limit = sizeof(idt) - 1;
	s.tr = (struct kvm_segment) {
		.base = (uintptr_t)&mp_cpus[id].tss,
		.limit = sizeof(struct x86_tss) - 1,
		.selector = X86_TSS_SEL(id), .type = 0xb, .present = 1,
	};
	s.cr0 = 0x80050033;	/* PG, WP, NE, ET, MP, PE */
	s.cr3 = (uintptr_t)mp_pml4;
	s.cr4 = 0x20;		/* PAE */
	s.efer = 0x500;		/* LME, LMA */
	if (ioctl(vcpu->fd, KVM_SET_SREGS, &s)) {
		tap_diag("KVM_SET_SREGS on vCPU %d: %s", id, strerror(errno));
		goto fail;
	}
	memset(&regs, 0, sizeof(regs));
	regs.rip = (uintptr_t)fn;
	regs.rdi = arg;
	/* as after a CALL: 16-byte aligned minus the return address */
	regs.rsp = (uintptr_t)mp_cpus[id].stack + MP_STACK - 8;
	regs.rflags = 2;
	if (!ioctl(vcpu->fd, KVM_SET_REGS, &regs))
		return true;
fail:
	vcpu_destroy(vm, vcpu);
	return false;
}

GUEST_CODE void x86_guest_load_tables(uint32_t id)
{
	struct x86_dtr gdtr = {
		.limit = sizeof(mp_gdt) - 1, .base = (uintptr_t)mp_gdt,
	};
	struct x86_dtr idtr = {
		.limit = sizeof(idt) - 1, .base = (uintptr_t)idt,
	};

	asm volatile("lgdt %0" : : "m" (gdtr));
	asm volatile("lidt %0" : : "m" (idtr));
	asm volatile("ltr %w0" : : "r" ((uint16_t)X86_TSS_SEL(id)));
}

/* ---- vCPU threads ---- */

static void on_sigusr1(int sig)
{
	(void)sig;
}

static void *runner_thread(void *arg)
{
	struct x86_runner *r = arg;
	struct kvm_run *run = r->vcpu->run;
	uint32_t ptr;

	while (!r->stop) {
		r->runs++;
		r->ret = vcpu_run(r->vcpu);
		r->exit_reason = run->exit_reason;
		if (r->ret) {
			r->err = errno;
			if (r->err == EINTR)
				r->eintr++;
			else if (r->err == EAGAIN)
				r->eagain++;
			else
				break;
			if (r->stop_on_intr)
				break;
			continue;
		}
		r->err = 0;
		if (run->exit_reason == KVM_EXIT_HLT)
			r->hlt_exits++;
		if (run->exit_reason != KVM_EXIT_IO ||
		    run->io.port != UCALL_PORT || run->io.size != 4 ||
		    run->io.direction != KVM_EXIT_IO_OUT)
			break;
		memcpy(&ptr, (uint8_t *)run + run->io.data_offset, 4);
		memcpy(&r->uc, (void *)(uintptr_t)ptr, sizeof(r->uc));
		r->cmd = r->uc.cmd;
		if (r->cmd != UCALL_SYNC)
			break;
		r->syncs++;
		r->last_sync = r->uc.arg;
		if (r->stop_on_sync)
			break;
		r->cmd = UCALL_NONE;
	}
	r->done = true;
	return NULL;
}

void x86_runner_start(struct x86_runner *r, struct vcpu *vcpu)
{
	static bool handler;
	struct sigaction sa;

	if (!handler) {
		/* no SA_RESTART: the signal ends KVM_RUN with EINTR */
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_sigusr1;
		sigaction(SIGUSR1, &sa, NULL);
		handler = true;
	}
	r->vcpu = vcpu;
	r->cmd = UCALL_NONE;
	memset(&r->uc, 0, sizeof(r->uc));
	r->ret = 0;
	r->err = 0;
	r->exit_reason = 0;
	r->done = false;
	r->stop = false;
	vcpu->run->immediate_exit = 0;
	r->started = !pthread_create(&r->thread, NULL, runner_thread, r);
	if (!r->started) {
		r->ret = -1;
		r->err = EAGAIN;
		r->done = true;
	}
}

bool x86_runner_done(struct x86_runner *r)
{
	return r->done;
}

void x86_runner_signal(struct x86_runner *r)
{
	if (r->started && !r->done)
		pthread_kill(r->thread, SIGUSR1);
}

uint64_t x86_now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

bool x86_wait_flag(volatile uint32_t *flag, uint32_t want, unsigned int ms)
{
	uint64_t end = x86_now_ms() + ms;

	while (*flag < want) {
		if (x86_now_ms() >= end)
			return false;
		usleep(1000);
	}
	return true;
}

bool x86_runner_wait(struct x86_runner *r, unsigned int ms)
{
	uint64_t end = x86_now_ms() + ms;
	bool in_time = true;

	if (!r->started)
		return false;
	while (!r->done) {
		if (x86_now_ms() >= end) {
			in_time = false;
			break;
		}
		usleep(1000);
	}
	if (!in_time) {
		r->stop = true;
		r->vcpu->run->immediate_exit = 1;
		/* a signal between two KVM_RUNs is lost: repeat it */
		end = x86_now_ms() + 5000;
		while (!r->done) {
			if (x86_now_ms() >= end)
				tap_bail("a vCPU thread stays in KVM_RUN despite signals");
			pthread_kill(r->thread, SIGUSR1);
			usleep(10000);
		}
		r->vcpu->run->immediate_exit = 0;
	}
	pthread_join(r->thread, NULL);
	r->started = false;
	return in_time;
}

void x86_runner_diag(const struct x86_runner *r, const char *who)
{
	if (r->cmd == UCALL_ASSERT)
		tap_diag("%s: guest assertion '%s' at %s:%llu (arg %#llx)",
			 who, r->uc.expr ? r->uc.expr : "?",
			 r->uc.file ? r->uc.file : "?",
			 (unsigned long long)r->uc.line,
			 (unsigned long long)r->uc.arg);
	else if (r->cmd == UCALL_NONE && r->ret)
		tap_diag("%s: KVM_RUN failed: %s (exit %s), after %u runs",
			 who, strerror(r->err), exit_name(r->exit_reason),
			 r->runs);
	else if (r->cmd == UCALL_NONE)
		tap_diag("%s: exit %s (%u) after %u runs", who,
			 exit_name(r->exit_reason), r->exit_reason, r->runs);
	if (r->hlt_exits || r->eagain)
		tap_diag("%s: %u KVM_EXIT_HLT, %u EAGAIN, %u EINTR", who,
			 r->hlt_exits, r->eagain, r->eintr);
}
