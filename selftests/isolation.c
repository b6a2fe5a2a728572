// SPDX-License-Identifier: GPL-2.0-only
/*
 * A guest stays inside its VM:
 *  - outside its memslots a guest reads nothing from the host: reads
 *    just above its slot, at 1 MiB, just below 4 GiB, above 4 GiB and
 *    just below MAXPHYADDR are MMIO exits at exactly that address and
 *    get the VMM's value, writes there are MMIO exits, and no slot
 *    memory changes;
 *  - REP STOSB over a whole slot whose host memory sits between canary
 *    guards fills exactly the slot: writes just past its end and just
 *    before its start are MMIO exits, a write straddling its end is
 *    split there, and the canaries are intact;
 *  - a read-only slot stays read-only for REP STOSB, REP MOVSB and a
 *    straddling write coming from the writable slot below it: every
 *    byte that falls into it is an MMIO exit, its memory is unchanged;
 *  - two VMs with slots at the same GPA run concurrently, each seeing
 *    only its own memory, and destroying one does not disturb the other;
 *  - failures end only the run concerned: KVM_SET_SREGS refuses CR0.PG
 *    without CR0.PE and EFER.LMA outside long mode; an invalid state
 *    the ioctl accepts (a data segment in CS: VM entry fails on VMX, SVM
 *    may run it) ends at most that KVM_RUN, however it is reported, and
 *    the vCPU runs again once its state is valid, while another vCPU of
 *    the VM runs on; a real-mode guest with EFER.LME set and paging and
 *    PAE off runs to its exit (such a guest hung QEMU's emulated SVM
 *    host: fuzz_abi found it), keeps its LME, and its MOV to CR0 that
 *    turns paging on without PAE is #GP (skipped for Debian's KVM in the SVM host,
 *    which this hangs); a
 *    triple fault (SVM only: it stops Bochs) is KVM_EXIT_SHUTDOWN for
 *    its vCPU alone, while another vCPU and another VM run on.
 *
 * The long-mode guests have an IDT whose every vector reports itself on
 * port 0x4f: a fault is a failed check, never a triple fault.
 */
#include <cpuid.h>
#include <linux/kvm.h>
#include <linux/vireo.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lib/tap.h"
#include "lib/util.h"
#include "lib/vm.h"
#include "lib/x86.h"

#define PAGE		0x1000UL
#define LOW_SIZE	0x10000UL	/* slot 0 at GPA 0 */

/* slot 0 of the long-mode VMs */
#define GDT		0x600
#define IDT		0x800
#define STUBS		0xc00		/* 8 bytes per vector */
#define NR_VECTORS	32
#define EXC_PORT	0x4f
#define RW_CODE		0x1000
#define FILL_CODE	0x1040
#define STOS_CODE	0x1080
#define MOVS_CODE	0x10c0
#define STRADDLE_CODE	0x1100
#define PML4		0x2000
#define PDPT		0x3000
#define PD_LOW		0x4000		/* GPA 0-2 MiB, identity */
#define PD_WIN		0x5000		/* linear WINDOW + i * 2 MiB */
#define RESULTS		0x6000
#define MOVS_SRC	0x6800
#define STACK_TOP	0x7ff0
#define WINDOW		0x40000000ULL

/* the 16-bit guests */
#define SIG_CODE	0x1000
#define SIG_DATA	0x4000
#define BAD_CODE	0x1000
#define GOOD_CODE	0x1010
#define LOOP_CODE	0x1100
#define INT3_CODE	0x1200
#define LOOP_PORT	0x41

/* Entries with accessed and dirty set: no walk writes the tables. */
#define PTE_TABLE	0x23ULL		/* present, writable, accessed */
#define PTE_2M		0xe3ULL		/* ... dirty, 2 MiB page */

/* Long-mode snippets (bytes from GNU as) */
static const uint8_t rw_code[] = {
	0x48, 0x8b, 0x03,	/* mov (%rbx), %rax */
	0x48, 0x89, 0x07,	/* mov %rax, (%rdi) */
	0x48, 0x89, 0x13,	/* mov %rdx, (%rbx) */
	0xf4,			/* hlt */
};

static const uint8_t fill_code[] = {
	0xf3, 0xaa,		/* rep stosb */
	0x88, 0x07,		/* mov %al, (%rdi) */
	0x48, 0x89, 0x1e,	/* mov %rbx, (%rsi) */
	0x49, 0x89, 0x10,	/* mov %rdx, (%r8) */
	0xf4,			/* hlt */
};

static const uint8_t stos_code[] = { 0xf3, 0xaa, 0xf4 };	/* rep stosb; hlt */
static const uint8_t movs_code[] = { 0xf3, 0xa4, 0xf4 };	/* rep movsb; hlt */
static const uint8_t straddle_code[] = {
	0x49, 0x89, 0x10,	/* mov %rdx, (%r8) */
	0xf4,			/* hlt */
};

/*
 * 16-bit: BX = signature, DI = rounds.  Each round writes BX + round to
 * SIG_DATA, says so on port 0x50, reads it back and checks that
 * SIG_DATA + 2 holds its complement (the VMM's answer); 0x51 on a
 * mismatch.
 */
static const uint8_t sig_code[] = {
	0x31, 0xc9,		/* xor %cx, %cx */
	0x89, 0xd8,		/* 1: mov %bx, %ax */
	0x01, 0xc8,		/* add %cx, %ax */
	0xa3, 0x00, 0x40,	/* mov %ax, 0x4000 */
	0xe7, 0x50,		/* out %ax, $0x50 */
	0x8b, 0x16, 0x00, 0x40,	/* mov 0x4000, %dx */
	0x39, 0xc2,		/* cmp %ax, %dx */
	0x75, 0x10,		/* jne 2f */
	0x8b, 0x16, 0x02, 0x40,	/* mov 0x4002, %dx */
	0xf7, 0xd0,		/* not %ax */
	0x39, 0xc2,		/* cmp %ax, %dx */
	0x75, 0x06,		/* jne 2f */
	0x41,			/* inc %cx */
	0x39, 0xf9,		/* cmp %di, %cx */
	0x72, 0xe0,		/* jb 1b */
	0xf4,			/* hlt */
	0xe7, 0x51,		/* 2: out %ax, $0x51 */
	0xf4,			/* hlt */
};

/* Any mode: an OUT of AL to port LOOP_PORT, AL + 1, again, forever */
static const uint8_t loop_code[] = {
	0xe6, LOOP_PORT,	/* 1: out %al, $0x41 */
	0xfe, 0xc0,		/* inc %al */
	0xeb, 0xfa,		/* jmp 1b */
};

static const uint8_t out_hlt[] = { 0xe6, 0x40, 0xf4 };	/* out %al, $0x40; hlt */
static const uint8_t int3[] = { 0xcc };

static bool is_vmx(void)
{
	return cpu_backend() == VIREO_BACKEND_VMX;
}

static bool set_regs(struct vcpu *vcpu, struct kvm_regs *regs)
{
	regs->rflags = 2;
	regs->rsp = STACK_TOP;
	return !ioctl(vcpu->fd, KVM_SET_REGS, regs);
}

/* ---- long-mode VMs ---- */

struct lm_vm {
	struct vm vm;
	struct vcpu vcpu;
	uint8_t *low;
};

static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

/* A 64-bit interrupt gate to @handler through code selector 0x8. */
static void set_gate(uint8_t *idt, int vector, uint64_t handler)
{
	uint8_t *g = idt + vector * 16;

	memset(g, 0, 16);
	g[0] = handler & 0xff;
	g[1] = (handler >> 8) & 0xff;
	g[2] = 0x08;
	g[5] = 0x8e;			/* present, DPL 0, interrupt gate */
	g[6] = (handler >> 16) & 0xff;
	g[7] = (handler >> 24) & 0xff;
}

/*
 * Slot 0 (64 KiB at GPA 0) with every snippet, a GDT, an IDT whose stubs
 * report their vector on EXC_PORT, and 4-level tables: the first 2 MiB
 * identity-mapped, PD_WIN free for the caller's 2 MiB windows.
 */
static bool lm_create(struct lm_vm *l, const char *dev)
{
	struct kvm_sregs sregs;
	uint8_t *low;
	int i;

	if (!vm_create(&l->vm, dev))
		return false;
	l->low = vm_add_memory(&l->vm, 0, 0, LOW_SIZE);
	if (!l->low || !vcpu_create(&l->vm, &l->vcpu, 0)) {
		vm_destroy(&l->vm);
		return false;
	}
	/* KVM's own page walks then know the guest's MAXPHYADDR */
	if (!vcpu_set_supported_cpuid(&l->vm, &l->vcpu))
		tap_diag("cannot give the vCPU the supported CPUID");
	low = l->low;
	memcpy(low + RW_CODE, rw_code, sizeof(rw_code));
	memcpy(low + FILL_CODE, fill_code, sizeof(fill_code));
	memcpy(low + STOS_CODE, stos_code, sizeof(stos_code));
	memcpy(low + MOVS_CODE, movs_code, sizeof(movs_code));
	memcpy(low + STRADDLE_CODE, straddle_code, sizeof(straddle_code));

	/* null, 64-bit code, data; accessed already */
	put64(low + GDT + 8, 0x00af9b000000ffffULL);
	put64(low + GDT + 16, 0x00cf93000000ffffULL);
	for (i = 0; i < NR_VECTORS; i++) {
		uint8_t *stub = low + STUBS + i * 8;

		stub[0] = 0xb0;			/* mov $i, %al */
		stub[1] = i;
		stub[2] = 0xe6;			/* out %al, $EXC_PORT */
		stub[3] = EXC_PORT;
		stub[4] = 0xf4;			/* hlt */
		set_gate(low + IDT, i, STUBS + i * 8);
	}

	put64(low + PML4, PDPT | PTE_TABLE);
	put64(low + PDPT, PD_LOW | PTE_TABLE);
	put64(low + PDPT + 8, PD_WIN | PTE_TABLE);
	put64(low + PD_LOW, 0 | PTE_2M);

	vcpu_long_mode(&l->vcpu, RW_CODE, PML4);
	if (ioctl(l->vcpu.fd, KVM_GET_SREGS, &sregs))
		goto fail;
	sregs.gdt.base = GDT;
	sregs.gdt.limit = 3 * 8 - 1;
	sregs.idt.base = IDT;
	sregs.idt.limit = NR_VECTORS * 16 - 1;
	if (ioctl(l->vcpu.fd, KVM_SET_SREGS, &sregs))
		goto fail;
	return true;
fail:
	tap_diag("KVM_GET/SET_SREGS: %s", strerror(errno));
	vcpu_destroy(&l->vm, &l->vcpu);
	vm_destroy(&l->vm);
	return false;
}

static void lm_destroy(struct lm_vm *l)
{
	vcpu_destroy(&l->vm, &l->vcpu);
	vm_destroy(&l->vm);
	munmap(l->low, LOW_SIZE);
}

/* run_expect(), naming the exception if the guest took one. */
static int expect_run(struct vcpu *vcpu, const struct expect *x, int n)
{
	struct kvm_run *run = vcpu->run;
	int got = run_expect(vcpu, x, n);

	if (got < n && run->exit_reason == KVM_EXIT_IO &&
	    run->io.port == EXC_PORT)
		tap_diag("the guest took exception %u",
			 *((uint8_t *)run + run->io.data_offset));
	return got;
}

/* ---- 1. nothing outside the slots ---- */

static unsigned int maxphyaddr(int kvm)
{
	unsigned int a, b, c, d, guest = 0, host = 0, bits;
	struct kvm_cpuid_entry2 e;

	if (x86_supported_cpuid(kvm, 0x80000008, 0, &e))
		guest = e.eax & 0xff;
	if (__get_cpuid(0x80000008, &a, &b, &c, &d))
		host = a & 0xff;
	/*
	 * The smaller: the test host's CPU walks the guest's tables, and a
	 * bit it does not have would be a reserved-bit fault.  Four-level
	 * nested tables end at 48 bits.
	 */
	bits = guest ? guest : 36;
	if (host && host < bits)
		bits = host;
	if (bits > 48)
		bits = 48;
	tap_diag("MAXPHYADDR: %u (supported CPUID %u, this CPU %u)", bits,
		 guest, host);
	return bits;
}

static void unbacked(const char *dev)
{
	struct {
		uint64_t gpa;
		const char *what;
	} t[] = {
		{ LOW_SIZE, "just above the slot" },
		{ 0x100000, "at 1 MiB" },
		{ 0xffff0000ULL, "just below 4 GiB" },
		{ 0x100000000ULL, "at 4 GiB" },
		{ 0, "just below MAXPHYADDR" },
	};
	const int n = ARRAY_SIZE(t);
	uint8_t *before;
	struct lm_vm l;
	size_t off, bad = 0;
	int i;

	if (!lm_create(&l, dev))
		tap_bail("cannot build a long-mode VM");
	t[n - 1].gpa = (1ULL << maxphyaddr(l.vm.kvm)) - 8;
	for (i = 0; i < n; i++)
		put64(l.low + PD_WIN + i * 8,
		      (t[i].gpa & ~0x1fffffULL) | PTE_2M);
	memset(l.low + RESULTS, 0, PAGE);
	before = malloc(LOW_SIZE);
	if (!before)
		tap_bail("out of memory");
	memcpy(before, l.low, LOW_SIZE);

	for (i = 0; i < n; i++) {
		uint64_t va = WINDOW + i * 0x200000ULL + (t[i].gpa & 0x1fffff);
		uint64_t rval = 0x5256000000000000ULL | (uint64_t)i << 40 |
				(t[i].gpa & 0xffffffffffULL);
		uint64_t wval = ~rval;
		struct kvm_regs regs = {
			.rip = RW_CODE, .rbx = va, .rdi = RESULTS + 8 * i,
			.rdx = wval,
		};
		const struct expect x[] = {
			{ X_MMIO_R, t[i].gpa, 8, rval },
			{ X_MMIO_W, t[i].gpa, 8, wval },
			{ X_HLT, 0, 0, 0 },
		};
		bool ok;

		tap_diag("%s: GPA %#llx", t[i].what,
			 (unsigned long long)t[i].gpa);
		ok = set_regs(&l.vcpu, &regs) &&
		     expect_run(&l.vcpu, x, ARRAY_SIZE(x)) == ARRAY_SIZE(x);
		if (ok && get64(l.low + RESULTS + 8 * i) != rval) {
			tap_diag("the guest read %#llx",
				 (unsigned long long)get64(l.low + RESULTS +
							   8 * i));
			ok = false;
		}
		tap_ok(ok,
		       "a GPA %s, in no slot: a read is an MMIO exit there with the VMM's value, a write an MMIO exit",
		       t[i].what);
	}

	for (off = 0; off < LOW_SIZE; off++) {
		if (off >= RESULTS && off < RESULTS + PAGE)
			continue;
		if (l.low[off] != before[off] && !bad++)
			tap_diag("slot byte %#zx changed: %#x, was %#x", off,
				 l.low[off], before[off]);
	}
	tap_ok(!bad, "those writes changed no slot memory (%zu bytes differ)",
	       bad);
	free(before);
	lm_destroy(&l);
}

/* ---- 2. host memory next to a slot ---- */

#define FILL_GPA	0x100000UL
#define FILL_SIZE	0x10000UL
#define GUARD		0x10000UL

static uint8_t canary(size_t off)
{
	return (off * 7 + 0x3d) & 0xff;
}

static void fill(const char *dev)
{
	const uint64_t before_q = 0x0102030405060708ULL;
	const uint64_t straddle = 0x1122334455667788ULL;
	const struct expect x[] = {
		{ X_MMIO_W, FILL_GPA + FILL_SIZE, 1, 0x5a },
		{ X_MMIO_W, FILL_GPA - 8, 8, before_q },
		{ X_MMIO_W, FILL_GPA + FILL_SIZE, 4, straddle >> 32 },
		{ X_HLT, 0, 0, 0 },
	};
	struct kvm_regs regs = {
		.rip = FILL_CODE, .rax = 0x5a, .rdi = FILL_GPA,
		.rcx = FILL_SIZE, .rsi = FILL_GPA - 8, .rbx = before_q,
		.r8 = FILL_GPA + FILL_SIZE - 4, .rdx = straddle,
	};
	const size_t total = GUARD + FILL_SIZE + GUARD;
	size_t off, not_filled = 0, hurt = 0;
	uint8_t *map, *slot;
	struct lm_vm l;
	uint32_t tail;
	int got = 0;

	if (!lm_create(&l, dev))
		tap_bail("cannot build a long-mode VM");
	map = mmap(NULL, total, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED)
		tap_bail("mmap: %s", strerror(errno));
	for (off = 0; off < total; off++)
		map[off] = canary(off);
	slot = map + GUARD;
	if (vm_set_slot(&l.vm, 1, FILL_GPA, FILL_SIZE, slot, 0))
		tap_diag("slot 1: %s", strerror(errno));
	else if (set_regs(&l.vcpu, &regs))
		got = expect_run(&l.vcpu, x, ARRAY_SIZE(x));

	for (off = 0; off < FILL_SIZE - 4; off++)
		if (slot[off] != 0x5a && !not_filled++)
			tap_diag("slot byte %#zx is %#x", off, slot[off]);
	tap_ok(got >= 1 && !not_filled,
	       "REP STOSB fills the guest's whole %lu KiB slot (%zu bytes not)",
	       FILL_SIZE >> 10, not_filled);
	tap_ok(got >= 2,
	       "writes just past the slot's end and just before its start are MMIO exits there");
	memcpy(&tail, slot + FILL_SIZE - 4, 4);
	tap_ok(got == ARRAY_SIZE(x) && tail == (uint32_t)straddle,
	       "a write straddling the slot's end: the slot takes its first half, the rest is a 4-byte MMIO exit (slot has %#x)",
	       tail);
	for (off = 0; off < total; off++) {
		if (off >= GUARD && off < GUARD + FILL_SIZE)
			continue;
		if (map[off] != canary(off) && !hurt++)
			tap_diag("canary at %s%#zx is %#x",
				 off < GUARD ? "slot - " : "slot end + ",
				 off < GUARD ? GUARD - off :
					       off - GUARD - FILL_SIZE,
				 map[off]);
	}
	tap_ok(!hurt,
	       "the host memory around the slot is untouched (%lu KiB each side, %zu bytes changed)",
	       GUARD >> 10, hurt);
	lm_destroy(&l);
	munmap(map, total);
}

/* ---- 3. a read-only slot above a writable one ---- */

#define RW_GPA		0x100000UL	/* slot 1, writable */
#define RO_GPA		0x101000UL	/* slot 2, read-only */

static uint8_t ro_pattern(size_t off)
{
	return (off * 13 + 0x71) & 0xff;
}

static bool ro_intact(const uint8_t *ro)
{
	size_t off;

	for (off = 0; off < PAGE; off++) {
		if (ro[off] != ro_pattern(off)) {
			tap_diag("read-only slot byte %#zx is %#x", off,
				 ro[off]);
			return false;
		}
	}
	return true;
}

static void readonly(const char *dev)
{
	static const char src[] = "ABCDEFGH";
	struct expect x[9];
	struct kvm_regs regs;
	uint8_t *mem, *rw, *ro;
	struct lm_vm l;
	size_t off;
	bool ok;
	int i;

	if (!lm_create(&l, dev))
		tap_bail("cannot build a long-mode VM");
	if (ioctl(l.vm.fd, KVM_CHECK_EXTENSION, KVM_CAP_READONLY_MEM) <= 0) {
		for (i = 0; i < 3; i++)
			tap_skip("no KVM_CAP_READONLY_MEM",
				 "a read-only slot stays read-only");
		lm_destroy(&l);
		return;
	}
	mem = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE,
		   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		tap_bail("mmap: %s", strerror(errno));
	rw = mem;
	ro = mem + PAGE;
	for (off = 0; off < PAGE; off++)
		ro[off] = ro_pattern(off);
	memcpy(l.low + MOVS_SRC, src, 8);
	if (vm_set_slot(&l.vm, 1, RW_GPA, PAGE, rw, 0) ||
	    vm_set_slot(&l.vm, 2, RO_GPA, PAGE, ro, KVM_MEM_READONLY))
		tap_diag("slots: %s", strerror(errno));

	/* REP STOSB: 8 bytes below the boundary, 8 above */
	for (i = 0; i < 8; i++)
		x[i] = (struct expect){ X_MMIO_W, RO_GPA + i, 1, 0xab };
	x[8] = (struct expect){ X_HLT, 0, 0, 0 };
	regs = (struct kvm_regs){
		.rip = STOS_CODE, .rax = 0xab, .rdi = RO_GPA - 8, .rcx = 16,
	};
	ok = set_regs(&l.vcpu, &regs) && expect_run(&l.vcpu, x, 9) == 9;
	for (i = 0; i < 8; i++)
		ok &= rw[PAGE - 8 + i] == 0xab;
	tap_ok(ok && ro_intact(ro),
	       "REP STOSB across into a read-only slot: each byte there is an MMIO exit, its memory unchanged");

	/* REP MOVSB: 4 and 4 */
	for (i = 0; i < 4; i++)
		x[i] = (struct expect){ X_MMIO_W, RO_GPA + i, 1, src[4 + i] };
	x[4] = (struct expect){ X_HLT, 0, 0, 0 };
	regs = (struct kvm_regs){
		.rip = MOVS_CODE, .rsi = MOVS_SRC, .rdi = RO_GPA - 4,
		.rcx = 8,
	};
	ok = set_regs(&l.vcpu, &regs) && expect_run(&l.vcpu, x, 5) == 5 &&
	     !memcmp(rw + PAGE - 4, src, 4);
	tap_ok(ok && ro_intact(ro),
	       "REP MOVSB across into a read-only slot: each byte there is an MMIO exit, its memory unchanged");

	/* one 8-byte store over the boundary */
	x[0] = (struct expect){ X_MMIO_W, RO_GPA, 4, 0x11223344 };
	x[1] = (struct expect){ X_HLT, 0, 0, 0 };
	regs = (struct kvm_regs){
		.rip = STRADDLE_CODE, .r8 = RO_GPA - 4,
		.rdx = 0x1122334455667788ULL,
	};
	ok = set_regs(&l.vcpu, &regs) && expect_run(&l.vcpu, x, 2) == 2 &&
	     !memcmp(rw + PAGE - 4, "\x88\x77\x66\x55", 4);
	tap_ok(ok && ro_intact(ro),
	       "a store straddling into a read-only slot: its writable half lands, the rest is a 4-byte MMIO exit");
	lm_destroy(&l);
	munmap(mem, 2 * PAGE);
}

/* ---- 4. two VMs at once ---- */

struct sig_vm {
	struct vm vm;
	struct vcpu vcpu;
	uint8_t *low;
	uint16_t sig;
	int rounds;
	bool ok;
	pthread_t thread;
	char why[256];
};

static uint16_t get16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, 2);
	return v;
}

static void *sig_thread(void *arg)
{
	struct sig_vm *s = arg;
	struct kvm_run *run = s->vcpu.run;
	uint16_t want, v;
	int r;

	s->ok = false;
	for (r = 0; r < s->rounds; r++) {
		want = s->sig + r;
		if (vcpu_run(&s->vcpu) || run->exit_reason != KVM_EXIT_IO ||
		    run->io.port != 0x50 || run->io.size != 2) {
			snprintf(s->why, sizeof(s->why),
				 "round %d: exit %s port %#x (%s), suberror %u, data %#llx %#llx%s",
				 r, exit_name(run->exit_reason), run->io.port,
				 strerror(errno), run->internal.suberror,
				 (unsigned long long)run->internal.data[0],
				 (unsigned long long)run->internal.data[1],
				 lost_state_note(run));
			return NULL;
		}
		v = get16((uint8_t *)run + run->io.data_offset);
		if (v != want || get16(s->low + SIG_DATA) != want) {
			snprintf(s->why, sizeof(s->why),
				 "round %d: the guest wrote %#x, its memory holds %#x, not %#x",
				 r, v, get16(s->low + SIG_DATA), want);
			return NULL;
		}
		want = ~want;
		memcpy(s->low + SIG_DATA + 2, &want, 2);
	}
	if (vcpu_run(&s->vcpu) || run->exit_reason != KVM_EXIT_HLT) {
		snprintf(s->why, sizeof(s->why),
			 "the end: exit %s port %#x (%s)",
			 exit_name(run->exit_reason), run->io.port,
			 strerror(errno));
		return NULL;
	}
	s->ok = true;
	return NULL;
}

static void sig_create(struct sig_vm *s, const char *dev, uint16_t sig)
{
	if (!vm_create(&s->vm, dev))
		tap_bail("no VM");
	s->low = vm_add_memory(&s->vm, 0, 0, LOW_SIZE);
	if (!s->low || !vcpu_create(&s->vm, &s->vcpu, 0))
		tap_bail("no memory or vCPU");
	memcpy(s->low + SIG_CODE, sig_code, sizeof(sig_code));
	vcpu_real_mode(&s->vcpu, SIG_CODE);
	s->sig = sig;
}

static void sig_start(struct sig_vm *s, int rounds)
{
	struct kvm_regs regs = {
		.rip = SIG_CODE, .rbx = s->sig, .rdi = rounds,
	};

	s->rounds = rounds;
	s->ok = false;
	snprintf(s->why, sizeof(s->why), "did not start");
	if (set_regs(&s->vcpu, &regs))
		pthread_create(&s->thread, NULL, sig_thread, s);
	else
		s->thread = 0;
}

static bool sig_join(struct sig_vm *s, const char *name)
{
	if (s->thread)
		pthread_join(s->thread, NULL);
	if (!s->ok)
		tap_diag("VM %s: %s", name, s->why);
	return s->ok;
}

static void two_vms(const char *dev)
{
	const int rounds = is_vmx() ? 40 : 200;
	struct sig_vm a, b;
	uint16_t last_a;
	bool ok;

	sig_create(&a, dev, 0xa000);
	sig_create(&b, dev, 0xb000);
	sig_start(&a, rounds);
	sig_start(&b, rounds);
	ok = sig_join(&a, "A");
	ok &= sig_join(&b, "B");
	tap_ok(ok,
	       "two VMs, slots at the same GPA, run at once: each sees only its own memory (%d rounds each)",
	       rounds);

	/* B runs while A goes away, then once more on its own */
	last_a = a.sig + rounds - 1;
	b.sig = 0xb400;
	sig_start(&b, rounds);
	vcpu_destroy(&a.vm, &a.vcpu);
	vm_destroy(&a.vm);
	if (get16(a.low + SIG_DATA) != last_a) {
		tap_diag("VM A's memory holds %#x, not its last %#x",
			 get16(a.low + SIG_DATA), last_a);
		ok = false;
	}
	munmap(a.low, LOW_SIZE);
	ok &= sig_join(&b, "B");
	b.sig = 0xb800;
	sig_start(&b, rounds);
	ok &= sig_join(&b, "B");
	tap_ok(ok,
	       "VM A destroyed while VM B runs: B carries on with its memory, A's holds A's last write");
	vcpu_destroy(&b.vm, &b.vcpu);
	vm_destroy(&b.vm);
	munmap(b.low, LOW_SIZE);
}

/* ---- 5. failures end only the run concerned ---- */

/* A vCPU on a thread of its own, running loop_code until told to stop */
struct looper {
	struct vcpu *vcpu;
	pthread_t thread;
	int stop;
	int count;
	bool bad;
	char why[128];
};

static void *looper_thread(void *arg)
{
	struct looper *lp = arg;
	struct kvm_run *run = lp->vcpu->run;
	int n = 0;
	uint8_t v;

	while (!__atomic_load_n(&lp->stop, __ATOMIC_ACQUIRE)) {
		if (vcpu_run(lp->vcpu) || run->exit_reason != KVM_EXIT_IO ||
		    run->io.port != LOOP_PORT || run->io.size != 1 ||
		    run->io.direction != KVM_EXIT_IO_OUT) {
			snprintf(lp->why, sizeof(lp->why),
				 "exit %d: %s port %#x (%s)", n,
				 exit_name(run->exit_reason), run->io.port,
				 strerror(errno));
			lp->bad = true;
			break;
		}
		v = *((uint8_t *)run + run->io.data_offset);
		if (v != (uint8_t)n) {
			snprintf(lp->why, sizeof(lp->why),
				 "exit %d: the guest said %u", n, v);
			lp->bad = true;
			break;
		}
		__atomic_store_n(&lp->count, ++n, __ATOMIC_RELEASE);
	}
	return NULL;
}

static void looper_start(struct looper *lp, struct vcpu *vcpu)
{
	memset(lp, 0, sizeof(*lp));
	lp->vcpu = vcpu;
	vcpu_real_mode(vcpu, LOOP_CODE);
	pthread_create(&lp->thread, NULL, looper_thread, lp);
}

static int looper_count(struct looper *lp)
{
	return __atomic_load_n(&lp->count, __ATOMIC_ACQUIRE);
}

/* Wait (20 s at most) until @lp has made @n exits; false if it stopped. */
static bool looper_wait(struct looper *lp, int n)
{
	int ms;

	for (ms = 0; ms < 20000; ms++) {
		if (looper_count(lp) >= n)
			return true;
		if (lp->bad)
			return false;
		usleep(1000);
	}
	snprintf(lp->why, sizeof(lp->why), "only %d exits in 20 s",
		 looper_count(lp));
	return false;
}

static bool looper_stop(struct looper *lp, const char *name)
{
	__atomic_store_n(&lp->stop, 1, __ATOMIC_RELEASE);
	pthread_join(lp->thread, NULL);
	if (lp->bad)
		tap_diag("%s: %s", name, lp->why);
	return !lp->bad;
}

static void flat_seg(struct kvm_segment *seg, uint16_t sel, uint8_t type)
{
	*seg = (struct kvm_segment) {
		.base = 0, .limit = 0xffffffff, .selector = sel, .type = type,
		.present = 1, .dpl = 0, .db = 1, .s = 1, .g = 1,
	};
}

/* How a KVM_RUN ended, for a diagnostic. */
static void describe_run(const struct kvm_run *run, int ret, int err,
			 char *buf, size_t size)
{
	unsigned long long reason;

	if (ret) {
		snprintf(buf, size, "KVM_RUN failed: %s", strerror(err));
	} else if (run->exit_reason == KVM_EXIT_FAIL_ENTRY) {
		reason = run->fail_entry.hardware_entry_failure_reason;
		snprintf(buf, size, "KVM_EXIT_FAIL_ENTRY, reason %#llx",
			 reason);
	} else if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR) {
		snprintf(buf, size, "KVM_EXIT_INTERNAL_ERROR, suberror %u",
			 run->internal.suberror);
	} else {
		snprintf(buf, size, "it ran: exit %s (%u), port %#x",
			 exit_name(run->exit_reason), run->exit_reason,
			 run->io.port);
	}
}

static void bad_state(const char *dev)
{
	const struct expect good[] = {
		{ X_OUT, 0x40, 1, 0x77 },
		{ X_HLT, 0, 0, 0 },
	};
	struct kvm_sregs s0, s;
	struct kvm_regs regs;
	struct vcpu c0, c1;
	struct looper lp;
	struct vm vm;
	uint8_t *low;
	char what[160];
	int ret, err, mark;
	bool ok, lp_ok;

	if (!vm_create(&vm, dev))
		tap_bail("no VM");
	low = vm_add_memory(&vm, 0, 0, LOW_SIZE);
	if (!low || !vcpu_create(&vm, &c0, 0) || !vcpu_create(&vm, &c1, 1))
		tap_bail("no memory or vCPUs");
	memcpy(low + BAD_CODE, out_hlt, sizeof(out_hlt));
	memcpy(low + GOOD_CODE, out_hlt, sizeof(out_hlt));
	memcpy(low + LOOP_CODE, loop_code, sizeof(loop_code));

	looper_start(&lp, &c1);
	lp_ok = looper_wait(&lp, 5);

	if (ioctl(c0.fd, KVM_GET_SREGS, &s0))
		tap_bail("KVM_GET_SREGS: %s", strerror(errno));
	s = s0;
	s.cr0 = 0x80000010;		/* PG and ET, no PE */
	TAP_ERRNO(ioctl(c0.fd, KVM_SET_SREGS, &s), EINVAL,
		  "KVM_SET_SREGS with CR0.PG but not CR0.PE is EINVAL");
	s = s0;
	s.cr0 = 0x10;
	s.efer |= 0x400;		/* LMA without LME and paging */
	TAP_ERRNO(ioctl(c0.fd, KVM_SET_SREGS, &s), EINVAL,
		  "KVM_SET_SREGS with EFER.LMA outside long mode is EINVAL");

	/* protected mode, flat, but CS is a read-only data segment */
	s = s0;
	flat_seg(&s.cs, 0x8, 0x1);
	flat_seg(&s.ds, 0x10, 0x3);
	s.es = s.ds;
	s.fs = s.ds;
	s.gs = s.ds;
	s.ss = s.ds;
	s.cr0 = 0x11;
	s.cr4 = 0;
	s.efer = 0;
	mark = looper_count(&lp);
	ret = ioctl(c0.fd, KVM_SET_SREGS, &s);
	if (ret) {
		err = errno;
		ok = err == EINVAL;
		snprintf(what, sizeof(what), "KVM_SET_SREGS refused it: %s",
			 strerror(err));
	} else {
		memset(&regs, 0, sizeof(regs));
		regs.rip = BAD_CODE;
		set_regs(&c0, &regs);
		ret = vcpu_run(&c0);
		err = errno;
		ok = !ret || err == EINVAL;
		describe_run(c0.run, ret, err, what, sizeof(what));
		/* an OUT it ran is completed before the state changes */
		if (!ret && c0.run->exit_reason == KVM_EXIT_IO)
			x86_vcpu_complete_io(&c0);
	}
	tap_diag("CS a data segment: %s", what);
	tap_ok(ok,
	       "an invalid state KVM_SET_SREGS takes (CS a data segment) ends at most that run");

	/* the same vCPU, valid again */
	vcpu_prot_mode(&c0, GOOD_CODE, 0x11, 0, 0);
	memset(&regs, 0, sizeof(regs));
	regs.rip = GOOD_CODE;
	regs.rax = 0x77;
	ok = set_regs(&c0, &regs) &&
	     run_expect(&c0, good, ARRAY_SIZE(good)) == ARRAY_SIZE(good);
	tap_ok(ok, "then, with a valid state, the same vCPU runs its guest to the expected exits");

	lp_ok = lp_ok && looper_wait(&lp, looper_count(&lp) + 5);
	lp_ok &= looper_stop(&lp, "vCPU 1");
	tap_ok(lp_ok && looper_count(&lp) > mark,
	       "vCPU 1 of the same VM ran its guest meanwhile (%d exits, all as expected)",
	       looper_count(&lp));
	vcpu_destroy(&vm, &c0);
	vcpu_destroy(&vm, &c1);
	vm_destroy(&vm);
	munmap(low, LOW_SIZE);
}

static void triple_fault(const char *dev)
{
	struct looper l1, l2;
	struct vcpu x0, x1, y0;
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct vm x, y;
	uint8_t *xlow, *ylow;
	int ret, m1, m2;
	bool ok;

	if (is_vmx()) {
		tap_skip("a guest triple fault stops Bochs",
			 "a triple fault in vCPU 0 is KVM_EXIT_SHUTDOWN");
		tap_skip("a guest triple fault stops Bochs",
			 "vCPU 1 of that VM and a second VM run on");
		return;
	}
	if (!vm_create(&x, dev) || !vm_create(&y, dev))
		tap_bail("no VM");
	xlow = vm_add_memory(&x, 0, 0, LOW_SIZE);
	ylow = vm_add_memory(&y, 0, 0, LOW_SIZE);
	if (!xlow || !ylow || !vcpu_create(&x, &x0, 0) ||
	    !vcpu_create(&x, &x1, 1) || !vcpu_create(&y, &y0, 0))
		tap_bail("no memory or vCPUs");
	memcpy(xlow + LOOP_CODE, loop_code, sizeof(loop_code));
	memcpy(ylow + LOOP_CODE, loop_code, sizeof(loop_code));
	memcpy(xlow + INT3_CODE, int3, sizeof(int3));

	looper_start(&l1, &x1);
	looper_start(&l2, &y0);
	ok = looper_wait(&l1, 5) && looper_wait(&l2, 5);

	/* int3 with an empty IDT: #GP, #DF, then shutdown */
	vcpu_real_mode(&x0, INT3_CODE);
	ioctl(x0.fd, KVM_GET_SREGS, &sregs);
	sregs.idt.limit = 0;
	ioctl(x0.fd, KVM_SET_SREGS, &sregs);
	memset(&regs, 0, sizeof(regs));
	regs.rip = INT3_CODE;
	set_regs(&x0, &regs);
	ret = vcpu_run(&x0);
	tap_ok(ret == 0 && x0.run->exit_reason == KVM_EXIT_SHUTDOWN,
	       "a triple fault in vCPU 0 is KVM_EXIT_SHUTDOWN (exit %s)",
	       ret ? strerror(errno) : exit_name(x0.run->exit_reason));

	m1 = looper_count(&l1);
	m2 = looper_count(&l2);
	ok = ok && looper_wait(&l1, m1 + 10) && looper_wait(&l2, m2 + 10);
	ok &= looper_stop(&l1, "vCPU 1");
	ok &= looper_stop(&l2, "the second VM");
	tap_ok(ok,
	       "vCPU 1 of that VM and a second VM ran on, before and after it (%d and %d exits)",
	       looper_count(&l1), looper_count(&l2));
	vcpu_destroy(&x, &x0);
	vcpu_destroy(&x, &x1);
	vcpu_destroy(&y, &y0);
	vm_destroy(&x);
	vm_destroy(&y);
	munmap(xlow, LOW_SIZE);
	munmap(ylow, LOW_SIZE);
}

/*
 * Real mode: OUT to 0x40, then MOV to CR0 with PG and PE, which is #GP
 * with EFER.LME and without CR4.PAE; vector 13's IVT entry (at 0x34)
 * points at an OUT to 0x4d.
 */
#define LME_CODE	0x1000
#define LME_GP		0x1100
static const uint8_t lme_code[] = {
	0xe6, 0x40,				/* out %al, $0x40 */
	0x0f, 0x20, 0xc0,			/* mov %cr0, %eax */
	0x66, 0x0d, 0x01, 0x00, 0x00, 0x80,	/* or $0x80000001, %eax */
	0x0f, 0x22, 0xc0,			/* mov %eax, %cr0 */
	0xe6, 0x41,				/* out %al, $0x41: no #GP */
	0xf4,					/* hlt */
};

static const uint8_t lme_gp[] = { 0xe6, 0x4d, 0xf4 };	/* out; hlt */

static const char lme_check[] =
	"a real-mode guest with EFER.LME, no paging, no PAE runs to its exit, keeps its LME";

static void lme_real_mode(const char *dev)
{
	struct kvm_sregs s;
	struct kvm_regs regs;
	struct vcpu c;
	struct vm vm;
	uint8_t *low;
	char what[160];
	int ret, err;
	bool ok;

	if (test_is_kvm(dev) && cpu_backend() == VIREO_BACKEND_SVM) {
		/* QEMU's #VMEXIT keeps the guest's CR0: the host hangs */
		tap_skip("Debian's KVM hangs the QEMU TCG SVM host here",
			 "%s", lme_check);
		tap_skip("Debian's KVM hangs the QEMU TCG SVM host here",
			 "its MOV to CR0 turning paging on without PAE is #GP");
		return;
	}
	if (!vm_create(&vm, dev))
		tap_bail("no VM");
	low = vm_add_memory(&vm, 0, 0, LOW_SIZE);
	if (!low || !vcpu_create(&vm, &c, 0))
		tap_bail("no memory or vCPU");
	memcpy(low + LME_CODE, lme_code, sizeof(lme_code));
	memcpy(low + LME_GP, lme_gp, sizeof(lme_gp));
	low[13 * 4] = LME_GP & 0xff;
	low[13 * 4 + 1] = LME_GP >> 8;
	if (ioctl(c.fd, KVM_GET_SREGS, &s))
		tap_bail("KVM_GET_SREGS: %s", strerror(errno));
	s.cs.selector = 0;
	s.cs.base = 0;
	s.efer |= 0x100;		/* LME */
	s.cr4 &= ~0x20ULL;		/* no PAE */
	if (ioctl(c.fd, KVM_SET_SREGS, &s))
		tap_bail("KVM_SET_SREGS with EFER.LME in real mode: %s",
			 strerror(errno));
	memset(&regs, 0, sizeof(regs));
	regs.rip = LME_CODE;
	set_regs(&c, &regs);

	ret = vcpu_run(&c);
	err = errno;
	describe_run(c.run, ret, err, what, sizeof(what));
	tap_diag("EFER.LME in real mode: %s", what);
	ok = !ret && c.run->exit_reason == KVM_EXIT_IO && c.run->io.port == 0x40;
	ok = ok && !ioctl(c.fd, KVM_GET_SREGS, &s) && (s.efer & 0x100) &&
	     !(s.efer & 0x400);
	tap_diag("then EFER %#llx", (unsigned long long)s.efer);
	tap_ok(ok, "%s", lme_check);

	ret = vcpu_run(&c);
	err = errno;
	describe_run(c.run, ret, err, what, sizeof(what));
	tap_diag("MOV to CR0 with PG: %s", what);
	tap_ok(!ret && c.run->exit_reason == KVM_EXIT_IO &&
	       c.run->io.port == 0x4d,
	       "its MOV to CR0 turning paging on without PAE is #GP");
	vcpu_destroy(&vm, &c);
	vm_destroy(&vm);
	munmap(low, LOW_SIZE);
}

int main(int argc, char **argv)
{
	const char *dev = test_device(argc, argv);

	tap_plan(24);
	tap_diag("device %s", dev);
	unbacked(dev);
	fill(dev);
	readonly(dev);
	two_vms(dev);
	bad_state(dev);
	lme_real_mode(dev);
	triple_fault(dev);
	tap_done();
}
