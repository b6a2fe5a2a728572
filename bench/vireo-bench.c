// SPDX-License-Identifier: GPL-2.0-only
/*
 * vireo-bench: micro-benchmarks of a hypervisor that speaks the KVM ioctl
 * ABI.  The same binary runs against /dev/vireo and against /dev/kvm.
 *
 * Usage: vireo-bench [-c CGROUP_DIR] DEVICE
 *
 *   -c DIR   join the cgroup v2 directory DIR first (it must exist and
 *            have the memory controller); needed for the memory figures
 *
 * Prints comment lines ("# ...") and one line per operation:
 *
 *   BENCH <name> <value> <unit>
 *   BENCH <name> n/a <unit> <reason>
 *
 * Times are CLOCK_MONOTONIC nanoseconds as the host running the
 * hypervisor sees them.  Exit status 0 when every operation was either
 * measured or is unsupported by the device; 1 when one failed.
 */
#include <cpuid.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
#define __printf(a, b)	__attribute__((format(printf, a, b)))

/* Guest-physical layout (identity-mapped by the guest's page tables) */
#define LOW_SIZE	0x200000ULL	/* slot 0: tables, code */
#define GUEST_PML4	0x1000ULL
#define GUEST_PDPT	0x2000ULL
#define GUEST_PD	0x3000ULL	/* 512 x 2 MiB: the first GiB */
#define GUEST_GDT	0x4000ULL	/* null, 64-bit code 0x8, data 0x10 */
#define GUEST_IDT	0x5000ULL	/* 256 interrupt gates */
#define GUEST_DATA	0x6000ULL	/* the irqchip guests' counters */
#define GUEST_PD_APIC	0x7000ULL	/* 3-4 GiB: the IOAPIC and the APIC */
#define GUEST_CODE	0x8000ULL
#define GUEST_STACK0	(LOW_SIZE - 16)		/* vCPU 0 */
#define GUEST_STACK1	(LOW_SIZE / 2 - 16)	/* vCPU 1 */
#define TOUCH_GPA	0x10000000ULL	/* slot 1: the touched memory */
#define TOUCH_SIZE	(64ULL << 20)
#define TOUCH_PAGES	(TOUCH_SIZE / 4096)
#define MMIO_GPA	0x30000000ULL	/* in no slot */
#define HUGE_SIZE	(2ULL << 20)

/* Must match guest.S */
#define BENCH_IO_PORT	0xe0
#define BENCH_FAIL_PORT	0xe1
#define BENCH_DONE_PORT	0xe2
#define VEC_PING	0x40	/* vCPU 0 to vCPU 1 */
#define VEC_PONG	0x41	/* and back */
#define VEC_TIMER	0x50
#define VEC_IRQFD	0x60

/* The words the guests' handlers count in, at GUEST_DATA */
struct guest_data {
	uint32_t pings, pongs, stop, timer, irqfd;
};

/* How often each measurement is repeated; the fastest one is kept. */
#define REPEAT		5
/* Exits per measured guest run (and twice as many, see exit_bench()) */
#define EXIT_ITERS	200
#define LIFECYCLES	8
/* Idle VMs created at once for the memory figure */
#define MEM_VMS		32
/* One page in DIRTY_STRIDE is dirtied: 10 % */
#define DIRTY_STRIDE	10
#define DIRTY_ROUNDS	5
/* Interrupts per measured guest run (and twice as many) */
#define IRQ_ROUNDS	200
/* The IOAPIC pin the irqfd raises: no PIC input, no device on it */
#define IRQFD_GSI	16
/* A guest of the irqchip benchmarks that takes longer is stuck */
#define WATCHDOG_S	20

extern const uint8_t guest_code[], guest_code_end[];
extern const uint8_t g_hlt[], g_cpuid[], g_vmmcall[], g_vmcall[], g_out[],
	g_mmio[], g_touch[];
extern const uint8_t g_ipi_ping[], g_ipi_pong[], g_apic_timer[], g_irqfd[],
	g_vectors[], h_ping[], h_pong[], h_timer[], h_irqfd[];

/* What an operation came to */
enum result { MEASURED, UNSUPPORTED, FAILED };

#define WHY_LEN		256
static char why[WHY_LEN];	/* the reason for UNSUPPORTED or FAILED */

static __printf(2, 3) enum result set_why(enum result r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	return r;
}

/* set_why() for a thread of its own: into @err, WHY_LEN bytes */
static __printf(2, 3) void set_err(char *err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, WHY_LEN, fmt, ap);
	va_end(ap);
}

struct dev {
	const char *path;
	int fd;
	long run_size;
	bool amd;
	struct kvm_cpuid2 *cpuid;	/* KVM_GET_SUPPORTED_CPUID */
	struct kvm_sregs sregs;		/* 64-bit mode, flat */
	uint8_t *low;			/* slot 0 of every VM: code, tables */
	const char *cgroup;
};

struct guest {
	int vm, vcpu;
	struct kvm_run *run;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static uint64_t code_gpa(const uint8_t *snippet)
{
	return GUEST_CODE + (uint64_t)(snippet - guest_code);
}

/* ---- setting up guests ---- */

/*
 * The GDT that the segments of dev_open() describe, for what reloads
 * them (an interrupt, IRETQ), and an IDT of interrupt gates: every
 * vector to its stub in g_vectors, which reports it, but those of the
 * irqchip benchmarks.
 */
static void build_tables(uint8_t *low)
{
	static const struct {
		int vector;
		const uint8_t *handler;
	} handlers[] = {
		{ VEC_PING, h_ping }, { VEC_PONG, h_pong },
		{ VEC_TIMER, h_timer }, { VEC_IRQFD, h_irqfd },
	};
	uint64_t *gdt = (uint64_t *)(low + GUEST_GDT);
	uint64_t *idt = (uint64_t *)(low + GUEST_IDT);
	uint64_t off;
	size_t k;
	int i;

	gdt[0] = 0;
	gdt[1] = 0x00af9b000000ffffULL;	/* code: P, S, type 0xb, L, G */
	gdt[2] = 0x00cf93000000ffffULL;	/* data: P, S, type 0x3, D/B, G */
	for (i = 0; i < 256; i++) {
		off = code_gpa(g_vectors) + 16 * i;
		for (k = 0; k < ARRAY_SIZE(handlers); k++)
			if (handlers[k].vector == i)
				off = code_gpa(handlers[k].handler);
		/* selector 0x8, present, DPL 0, 64-bit interrupt gate */
		idt[2 * i] = (off & 0xffff) | 0x8 << 16 | 0x8eULL << 40 |
			     (off >> 16 & 0xffff) << 48;
		idt[2 * i + 1] = off >> 32;
	}
}

/*
 * Identity tables (2 MiB pages) for the first GiB and for the fourth,
 * where the IOAPIC and the local APIC are (uncached), and the code.
 */
static void build_low(uint8_t *low)
{
	uint64_t *pml4 = (uint64_t *)(low + GUEST_PML4);
	uint64_t *pdpt = (uint64_t *)(low + GUEST_PDPT);
	uint64_t *pd = (uint64_t *)(low + GUEST_PD);
	uint64_t *pd_apic = (uint64_t *)(low + GUEST_PD_APIC);
	int i;

	/* present, writable; accessed and dirty already set */
	pml4[0] = GUEST_PDPT | 0x23;
	pdpt[0] = GUEST_PD | 0x23;
	pdpt[3] = GUEST_PD_APIC | 0x23;
	for (i = 0; i < 512; i++) {
		pd[i] = ((uint64_t)i << 21) | 0xe3;	/* + PS, D */
		pd_apic[i] = (3ULL << 30 | (uint64_t)i << 21) | 0xfb; /* + PCD, PWT */
	}
	memcpy(low + GUEST_CODE, guest_code, guest_code_end - guest_code);
	build_tables(low);
}

static void flat_seg(struct kvm_segment *s, uint16_t sel, bool code)
{
	*s = (struct kvm_segment) {
		.base = 0, .limit = 0xffffffff, .selector = sel,
		.type = code ? 0xb : 0x3, .present = 1, .s = 1,
		.db = !code, .l = code, .g = 1,
	};
}

static int set_memory(int vm, uint32_t slot, uint64_t gpa, uint64_t size,
		      void *mem, uint32_t flags)
{
	struct kvm_userspace_memory_region r = {
		.slot = slot, .flags = flags, .guest_phys_addr = gpa,
		.memory_size = size, .userspace_addr = (uintptr_t)mem,
	};

	return ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r);
}

/* Anonymous private memory, aligned to 2 MiB, huge pages or not. */
static uint8_t *alloc_guest_memory(size_t size, bool thp)
{
	uint8_t *p, *aligned;

	p = mmap(NULL, size + HUGE_SIZE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	aligned = (uint8_t *)(((uintptr_t)p + HUGE_SIZE - 1) &
			      ~(HUGE_SIZE - 1));
	if (aligned > p)
		munmap(p, aligned - p);
	munmap(aligned + size, p + HUGE_SIZE - aligned);
	if (madvise(aligned, size, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) &&
	    thp) {
		munmap(aligned, size);
		return NULL;
	}
	return aligned;
}

static void guest_close(struct dev *d, struct guest *g)
{
	if (g->run && g->run != MAP_FAILED)
		munmap(g->run, d->run_size);
	if (g->vcpu >= 0)
		close(g->vcpu);
	if (g->vm >= 0)
		close(g->vm);
	g->run = NULL;
	g->vcpu = -1;
	g->vm = -1;
}

/* A VM with slot 0 and one vCPU in 64-bit mode; false with why set. */
static bool guest_open(struct dev *d, struct guest *g, bool cpuid)
{
	g->vcpu = -1;
	g->run = NULL;
	g->vm = ioctl(d->fd, KVM_CREATE_VM, 0);
	if (g->vm < 0) {
		set_why(FAILED, "KVM_CREATE_VM: %s", strerror(errno));
		return false;
	}
	if (set_memory(g->vm, 0, 0, LOW_SIZE, d->low, 0)) {
		set_why(FAILED, "slot 0: %s", strerror(errno));
		goto fail;
	}
	g->vcpu = ioctl(g->vm, KVM_CREATE_VCPU, 0);
	if (g->vcpu < 0) {
		set_why(FAILED, "KVM_CREATE_VCPU: %s", strerror(errno));
		goto fail;
	}
	g->run = mmap(NULL, d->run_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		      g->vcpu, 0);
	if (g->run == MAP_FAILED) {
		set_why(FAILED, "mmap of the vCPU: %s", strerror(errno));
		goto fail;
	}
	if (cpuid && ioctl(g->vcpu, KVM_SET_CPUID2, d->cpuid)) {
		set_why(FAILED, "KVM_SET_CPUID2: %s", strerror(errno));
		goto fail;
	}
	if (ioctl(g->vcpu, KVM_SET_SREGS, &d->sregs)) {
		set_why(FAILED, "KVM_SET_SREGS: %s", strerror(errno));
		goto fail;
	}
	return true;
fail:
	guest_close(d, g);
	return false;
}

/* Enter @snippet with R8..R11 set. */
static bool guest_enter_at(struct guest *g, const uint8_t *snippet,
			   uint64_t r8, uint64_t r9, uint64_t r10,
			   uint64_t r11)
{
	struct kvm_regs regs;

	memset(&regs, 0, sizeof(regs));
	regs.rip = code_gpa(snippet);
	regs.rflags = 2;
	regs.rsp = LOW_SIZE - 16;
	regs.r8 = r8;
	regs.r9 = r9;
	regs.r10 = r10;
	regs.r11 = r11;
	if (ioctl(g->vcpu, KVM_SET_REGS, &regs)) {
		set_why(FAILED, "KVM_SET_REGS: %s", strerror(errno));
		return false;
	}
	return true;
}

static const char *exit_name(uint32_t reason)
{
	static const char *const names[] = {
		[KVM_EXIT_UNKNOWN] = "UNKNOWN", [KVM_EXIT_EXCEPTION] = "EXCEPTION",
		[KVM_EXIT_IO] = "IO", [KVM_EXIT_HYPERCALL] = "HYPERCALL",
		[KVM_EXIT_HLT] = "HLT", [KVM_EXIT_MMIO] = "MMIO",
		[KVM_EXIT_SHUTDOWN] = "SHUTDOWN",
		[KVM_EXIT_FAIL_ENTRY] = "FAIL_ENTRY", [KVM_EXIT_INTR] = "INTR",
		[KVM_EXIT_INTERNAL_ERROR] = "INTERNAL_ERROR",
	};

	if (reason < ARRAY_SIZE(names) && names[reason])
		return names[reason];
	return "?";
}

/* Exceptions that push an error code */
static bool has_error_code(uint32_t vector)
{
	return vector == 8 || (vector >= 10 && vector <= 14) ||
	       vector == 17 || vector == 21 || vector == 29 || vector == 30;
}

/*
 * Say in @err what the unexpected exit in @run was.  A 4-byte OUT to
 * BENCH_FAIL_PORT comes from a stub of g_vectors: the vector it was
 * entered by, and, when the stack is in @low (slot 0, if not NULL),
 * where the guest was then.
 */
static void describe_exit(int vcpu, struct kvm_run *run, const uint8_t *low,
			  char *err)
{
	const uint8_t *p = (const uint8_t *)run + run->io.data_offset;
	const uint64_t *frame;
	struct kvm_regs regs;
	uint32_t v;

	if (run->exit_reason == KVM_EXIT_IO &&
	    run->io.port == BENCH_FAIL_PORT && run->io.size == 4) {
		memcpy(&v, p, sizeof(v));
		if (!low || ioctl(vcpu, KVM_GET_REGS, &regs) ||
		    regs.rsp > LOW_SIZE - 24 || regs.rsp % 8) {
			set_err(err, "the guest took the unexpected vector %#x", v);
			return;
		}
		frame = (const uint64_t *)(low + regs.rsp);
		if (has_error_code(v))
			set_err(err, "the guest took the unexpected vector %#x (error code %#llx) at RIP %#llx",
				v, (unsigned long long)frame[0],
				(unsigned long long)frame[1]);
		else
			set_err(err, "the guest took the unexpected vector %#x at RIP %#llx",
				v, (unsigned long long)frame[0]);
	} else if (run->exit_reason == KVM_EXIT_IO) {
		set_err(err, "unexpected exit IO (port %#x dir %u size %u count %u)%s",
			run->io.port, run->io.direction, run->io.size,
			run->io.count, run->io.port == BENCH_FAIL_PORT ?
			": the guest got a wrong answer" : "");
	} else if (run->exit_reason == KVM_EXIT_MMIO) {
		set_err(err, "unexpected exit MMIO (%#llx len %u write %u)",
			(unsigned long long)run->mmio.phys_addr,
			run->mmio.len, run->mmio.is_write);
	} else if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR) {
		set_err(err, "unexpected exit INTERNAL_ERROR (suberror %u, data %#llx %#llx)",
			run->internal.suberror,
			(unsigned long long)run->internal.data[0],
			(unsigned long long)run->internal.data[1]);
	} else {
		set_err(err, "unexpected exit %s (%u)",
			exit_name(run->exit_reason), run->exit_reason);
	}
}

/*
 * KVM_RUN until the guest halts.  OUTs to BENCH_IO_PORT and MMIO writes
 * to MMIO_GPA are the exits the benchmarks ask for: they are checked,
 * counted in *@user_exits and the guest resumed.  Anything else fails.
 */
static bool run_to_hlt(struct guest *g, uint64_t *user_exits)
{
	struct kvm_run *run = g->run;
	uint32_t v;
	uint8_t *p;

	for (;;) {
		if (ioctl(g->vcpu, KVM_RUN, 0)) {
			set_why(FAILED, "KVM_RUN: %s", strerror(errno));
			return false;
		}
		switch (run->exit_reason) {
		case KVM_EXIT_HLT:
			return true;
		case KVM_EXIT_IO:
			p = (uint8_t *)run + run->io.data_offset;
			if (run->io.port != BENCH_IO_PORT ||
			    run->io.direction != KVM_EXIT_IO_OUT ||
			    run->io.size != 1 || run->io.count != 1 ||
			    *p != 0x5a)
				goto bad;
			break;
		case KVM_EXIT_MMIO:
			memcpy(&v, run->mmio.data, sizeof(v));
			if (run->mmio.phys_addr != MMIO_GPA ||
			    !run->mmio.is_write || run->mmio.len != 4 ||
			    v != 0x5a5a5a5a)
				goto bad;
			break;
		default:
			goto bad;
		}
		if (user_exits)
			(*user_exits)++;
	}
bad:
	describe_exit(g->vcpu, run, NULL, why);
	return false;
}

/* Time one run of @snippet to its HLT; 0 with why set on failure. */
static uint64_t timed_run(struct guest *g, const uint8_t *snippet,
			  uint64_t r8, uint64_t r9, uint64_t r10, uint64_t r11,
			  uint64_t *user_exits)
{
	uint64_t t0, t1;

	if (!guest_enter_at(g, snippet, r8, r9, r10, r11))
		return 0;
	t0 = now_ns();
	if (!run_to_hlt(g, user_exits))
		return 0;
	t1 = now_ns();
	return t1 - t0 ? t1 - t0 : 1;
}

/* ---- 1 and 2: exits ---- */

/*
 * The guest loops @n and then 2 @n times over one exiting instruction;
 * the difference of the two runs divided by @n is the cost of one exit
 * and its handling, without the cost of entering and leaving KVM_RUN.
 * The fastest of REPEAT runs of each length is used.
 */
static enum result exit_bench(struct dev *d, const uint8_t *snippet,
			      bool to_user, double *ns)
{
	uint64_t t1 = UINT64_MAX, t2 = UINT64_MAX, t, exits;
	const uint64_t n = EXIT_ITERS;
	enum result r = MEASURED;
	struct guest g;
	int i, k;

	if (!guest_open(d, &g, true))
		return FAILED;
	/* warm up: maps the code page, the MMIO entry, the exit paths */
	if (!timed_run(&g, snippet, 2, MMIO_GPA, 0, 0, NULL)) {
		r = FAILED;
		goto out;
	}
	for (i = 0; i < REPEAT; i++) {
		for (k = 1; k <= 2; k++) {
			exits = 0;
			t = timed_run(&g, snippet, k * n, MMIO_GPA, 0, 0,
				      &exits);
			if (!t) {
				r = FAILED;
				goto out;
			}
			if (exits != (to_user ? k * n : 0)) {
				r = set_why(FAILED, "%llu exits to userspace, expected %llu",
					    (unsigned long long)exits,
					    (unsigned long long)(to_user ? k * n : 0));
				goto out;
			}
			if (k == 1)
				t1 = min_u64(t1, t);
			else
				t2 = min_u64(t2, t);
		}
	}
	if (t2 <= t1) {
		r = set_why(FAILED, "%llu exits took no longer than %llu",
			    (unsigned long long)(2 * n),
			    (unsigned long long)n);
		goto out;
	}
	*ns = (double)(t2 - t1) / n;
out:
	guest_close(d, &g);
	return r;
}

static enum result bench_cpuid(struct dev *d, double *ns)
{
	return exit_bench(d, g_cpuid, false, ns);
}

static enum result bench_hypercall(struct dev *d, double *ns)
{
	return exit_bench(d, d->amd ? g_vmmcall : g_vmcall, false, ns);
}

static enum result bench_pio(struct dev *d, double *ns)
{
	return exit_bench(d, g_out, true, ns);
}

static enum result bench_mmio(struct dev *d, double *ns)
{
	return exit_bench(d, g_mmio, true, ns);
}

/* ---- 3: first touch ---- */

/* kB of @addr's mapping backed by transparent huge pages, or -1. */
static long anon_huge_kb(const void *addr)
{
	unsigned long start, end, want = (uintptr_t)addr;
	char line[256];
	bool in = false;
	long kb = -1;
	FILE *f;

	f = fopen("/proc/self/smaps", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &start, &end) == 2 &&
		    strchr(line, '-') < strchr(line, ' ')) {
			in = want >= start && want < end;
			continue;
		}
		if (in && sscanf(line, "AnonHugePages: %ld kB", &kb) == 1)
			break;
	}
	fclose(f);
	return kb;
}

static bool thp_available(void)
{
	char buf[128] = "";
	FILE *f;

	f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
	if (!f)
		return false;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = 0;
	fclose(f);
	return !strstr(buf, "[never]");
}

/*
 * The guest writes once to each 4 KiB page of TOUCH_SIZE bytes of fresh
 * memory, then does it again; the difference per page is what the
 * first touch costs (the nested page fault and the host's page fault).
 */
static enum result touch_once(struct dev *d, bool thp, double *ns)
{
	const uint64_t end = TOUCH_GPA + TOUCH_SIZE;
	enum result r = MEASURED;
	uint64_t first, second;
	uint8_t *mem = NULL;
	struct guest g;

	if (!guest_open(d, &g, true))
		return FAILED;
	mem = alloc_guest_memory(TOUCH_SIZE, thp);
	if (!mem) {
		r = set_why(FAILED, "mmap/madvise of %llu MiB: %s",
			    TOUCH_SIZE >> 20, strerror(errno));
		goto out;
	}
	if (set_memory(g.vm, 1, TOUCH_GPA, TOUCH_SIZE, mem, 0)) {
		r = set_why(FAILED, "slot 1: %s", strerror(errno));
		goto out;
	}
	/* the code page: mapped before the clock starts */
	if (!timed_run(&g, g_hlt, 0, 0, 0, 0, NULL)) {
		r = FAILED;
		goto out;
	}
	first = timed_run(&g, g_touch, 0, TOUCH_GPA, end, 4096, NULL);
	second = first ? timed_run(&g, g_touch, 0, TOUCH_GPA, end, 4096,
				   NULL) : 0;
	if (!second) {
		r = FAILED;
		goto out;
	}
	if (*(uint64_t *)(mem + TOUCH_SIZE - 4096) != end - 4096) {
		r = set_why(FAILED, "the guest's writes are not in the VMM's memory");
		goto out;
	}
	if (thp)
		printf("# touch_thp: %ld of %llu kB of the host mapping in huge pages\n",
		       anon_huge_kb(mem), TOUCH_SIZE >> 10);
	if (first <= second) {
		r = set_why(FAILED, "the first touch was not slower than the second");
		goto out;
	}
	*ns = (double)(first - second) / TOUCH_PAGES;
out:
	guest_close(d, &g);
	if (mem)
		munmap(mem, TOUCH_SIZE);
	return r;
}

static enum result touch_bench(struct dev *d, bool thp, double *ns)
{
	double best = 0, t;
	enum result r;
	int i;

	if (thp && !thp_available())
		return set_why(UNSUPPORTED, "the host kernel has transparent huge pages off");
	for (i = 0; i < 2; i++) {
		r = touch_once(d, thp, &t);
		if (r != MEASURED)
			return r;
		if (!i || t < best)
			best = t;
	}
	*ns = best;
	return MEASURED;
}

static enum result bench_touch_4k(struct dev *d, double *ns)
{
	return touch_bench(d, false, ns);
}

static enum result bench_touch_thp(struct dev *d, double *ns)
{
	return touch_bench(d, true, ns);
}

/* ---- 4: dirty logging ---- */

static int popcount_bitmap(const uint64_t *map, uint64_t bits, uint64_t stride,
			   bool *pattern_ok)
{
	uint64_t i;
	int n = 0;
	bool set;

	*pattern_ok = true;
	for (i = 0; i < bits; i++) {
		set = map[i / 64] >> (i % 64) & 1;
		n += set;
		if (set != (i % stride == 0))
			*pattern_ok = false;
	}
	return n;
}

static enum result bench_dirty_log(struct dev *d, double *ns)
{
	struct kvm_enable_cap cap = {
		.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
		.args = { KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE },
	};
	const uint64_t end = TOUCH_GPA + TOUCH_SIZE;
	uint64_t bitmap[TOUCH_PAGES / 64];
	struct kvm_clear_dirty_log clear;
	struct kvm_dirty_log get;
	uint64_t t0, t, best = UINT64_MAX;
	enum result r = MEASURED;
	uint8_t *mem = NULL;
	bool pattern_ok;
	struct guest g;
	int ret, i, n = 0;

	ret = ioctl(d->fd, KVM_CHECK_EXTENSION,
		    KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
	if (ret <= 0 || !(ret & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE))
		return set_why(UNSUPPORTED,
			       "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 is not offered (KVM_CHECK_EXTENSION: %d)",
			       ret);
	if (!guest_open(d, &g, true))
		return FAILED;
	mem = alloc_guest_memory(TOUCH_SIZE, false);
	if (!mem) {
		r = set_why(FAILED, "mmap: %s", strerror(errno));
		goto out;
	}
	if (ioctl(g.vm, KVM_ENABLE_CAP, &cap)) {
		r = set_why(UNSUPPORTED, "KVM_ENABLE_CAP(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2): %s",
			    strerror(errno));
		goto out;
	}
	if (set_memory(g.vm, 1, TOUCH_GPA, TOUCH_SIZE, mem,
		       KVM_MEM_LOG_DIRTY_PAGES)) {
		r = set_why(errno == EINVAL ? UNSUPPORTED : FAILED,
			    "a slot with KVM_MEM_LOG_DIRTY_PAGES: %s",
			    strerror(errno));
		goto out;
	}
	get = (struct kvm_dirty_log) { .slot = 1, .dirty_bitmap = bitmap };
	clear = (struct kvm_clear_dirty_log) {
		.slot = 1, .first_page = 0, .num_pages = TOUCH_PAGES,
		.dirty_bitmap = bitmap,
	};
	/* every page mapped and dirty once, then all clean */
	if (!timed_run(&g, g_touch, 0, TOUCH_GPA, end, 4096, NULL)) {
		r = FAILED;
		goto out;
	}
	if (ioctl(g.vm, KVM_GET_DIRTY_LOG, &get) ||
	    ioctl(g.vm, KVM_CLEAR_DIRTY_LOG, &clear)) {
		r = set_why(FAILED, "KVM_GET/CLEAR_DIRTY_LOG: %s",
			    strerror(errno));
		goto out;
	}
	for (i = 0; i < DIRTY_ROUNDS; i++) {
		if (!timed_run(&g, g_touch, 0, TOUCH_GPA, end,
			       4096 * DIRTY_STRIDE, NULL)) {
			r = FAILED;
			goto out;
		}
		memset(bitmap, 0, sizeof(bitmap));
		t0 = now_ns();
		if (ioctl(g.vm, KVM_GET_DIRTY_LOG, &get) ||
		    ioctl(g.vm, KVM_CLEAR_DIRTY_LOG, &clear)) {
			r = set_why(FAILED, "KVM_GET/CLEAR_DIRTY_LOG: %s",
				    strerror(errno));
			goto out;
		}
		t = now_ns() - t0;
		n = popcount_bitmap(bitmap, TOUCH_PAGES, DIRTY_STRIDE,
				    &pattern_ok);
		if (!pattern_ok) {
			r = set_why(FAILED, "the dirty log has %d pages, not every %dth page",
				    n, DIRTY_STRIDE);
			goto out;
		}
		best = min_u64(best, t);
	}
	printf("# dirty_log: %d of %llu pages dirty in each round\n", n,
	       TOUCH_PAGES);
	*ns = best;
out:
	guest_close(d, &g);
	if (mem)
		munmap(mem, TOUCH_SIZE);
	return r;
}

/* ---- 5: VM lifecycle and memory ---- */

/* Create, add slot 0, create a vCPU, run to its first exit, destroy. */
static enum result bench_lifecycle(struct dev *d, double *ns)
{
	uint64_t t0, t, best = UINT64_MAX;
	struct guest g;
	int i;

	for (i = 0; i <= LIFECYCLES; i++) {
		t0 = now_ns();
		if (!guest_open(d, &g, false))
			return FAILED;
		if (!guest_enter_at(&g, g_hlt, 0, 0, 0, 0) ||
		    !run_to_hlt(&g, NULL)) {
			guest_close(d, &g);
			return FAILED;
		}
		guest_close(d, &g);
		t = now_ns() - t0;
		/* the first one is a warm-up */
		if (i)
			best = min_u64(best, t);
	}
	*ns = best;
	return MEASURED;
}

/* A value from the cgroup's memory.current or memory.stat; -1 if none. */
static long long cgroup_value(const char *cg, const char *file,
			      const char *key)
{
	char path[512], line[256], name[64], *end;
	long long v = -1, val;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", cg, file);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (!key) {
			val = strtoll(line, &end, 10);
			if (end != line)
				v = val;
			break;
		}
		if (sscanf(line, "%63s %lld", name, &val) == 2 &&
		    !strcmp(name, key)) {
			v = val;
			break;
		}
	}
	fclose(f);
	return v;
}

struct mem_figures {
	long long current, kernel;
};

static bool read_mem(const char *cg, struct mem_figures *m)
{
	/* memory.stat is flushed at least every 2 s */
	sleep(3);
	m->current = cgroup_value(cg, "memory.current", NULL);
	m->kernel = cgroup_value(cg, "memory.stat", "kernel");
	return m->current >= 0 && m->kernel >= 0;
}

/*
 * MEM_VMS idle VMs with one vCPU each (its kvm_run mapped, never run, no
 * memory slot): what the VMM's memory cgroup was charged for them.
 */
static enum result mem_bench(struct dev *d, struct mem_figures *per_vm)
{
	static struct guest g[MEM_VMS];
	struct mem_figures before, after = { 0, 0 };
	enum result r = MEASURED;
	int i;

	if (!d->cgroup)
		return set_why(UNSUPPORTED, "not run in a memory cgroup (-c)");
	if (!read_mem(d->cgroup, &before))
		return set_why(UNSUPPORTED, "no memory.current or memory.stat:kernel in %s",
			       d->cgroup);
	for (i = 0; i < MEM_VMS; i++) {
		g[i].vcpu = -1;
		g[i].run = NULL;
		g[i].vm = ioctl(d->fd, KVM_CREATE_VM, 0);
		if (g[i].vm < 0) {
			r = set_why(FAILED, "KVM_CREATE_VM: %s", strerror(errno));
			break;
		}
		g[i].vcpu = ioctl(g[i].vm, KVM_CREATE_VCPU, 0);
		if (g[i].vcpu < 0) {
			r = set_why(FAILED, "KVM_CREATE_VCPU: %s", strerror(errno));
			i++;
			break;
		}
		g[i].run = mmap(NULL, d->run_size, PROT_READ | PROT_WRITE,
				MAP_SHARED, g[i].vcpu, 0);
		if (g[i].run == MAP_FAILED) {
			r = set_why(FAILED, "mmap of the vCPU: %s", strerror(errno));
			i++;
			break;
		}
	}
	if (r == MEASURED && !read_mem(d->cgroup, &after))
		r = set_why(FAILED, "the cgroup's memory files went away");
	while (i--)
		guest_close(d, &g[i]);
	if (r != MEASURED)
		return r;
	per_vm->current = (after.current - before.current) / MEM_VMS;
	per_vm->kernel = (after.kernel - before.kernel) / MEM_VMS;
	return MEASURED;
}

static struct mem_figures mem_result;
static enum result mem_status;

static enum result bench_mem_current(struct dev *d, double *kib)
{
	mem_status = mem_bench(d, &mem_result);
	*kib = mem_result.current / 1024.0;
	return mem_status;
}

/* Reported from the same run as bench_mem_current(), which goes first. */
static enum result bench_mem_kernel(struct dev *d, double *kib)
{
	(void)d;
	*kib = mem_result.kernel / 1024.0;
	return mem_status;
}

/* ---- 6: the in-kernel irqchip ---- */

/*
 * A guest that never gets its interrupt would halt in the kernel for
 * good: alarm(WATCHDOG_S) sends SIGALRM, which only the main thread
 * takes, to end its KVM_RUN or its wait.  A vCPU thread is stopped with
 * immediate_exit and SIGUSR1.
 */
static volatile sig_atomic_t timed_out;

static void on_signal(int sig)
{
	if (sig == SIGALRM)
		timed_out = 1;
}

static void install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;	/* no SA_RESTART: KVM_RUN returns */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
}

static void watchdog(bool on)
{
	timed_out = 0;
	alarm(on ? WATCHDOG_S : 0);
}

/* Append to why */
static __printf(1, 2) void add_why(const char *fmt, ...)
{
	size_t len = strlen(why);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why + len, sizeof(why) - len, fmt, ap);
	va_end(ap);
}

struct vcpu {
	int fd;
	struct kvm_run *run;
};

/* A VM with the in-kernel irqchip, slot 0 and one or two vCPUs */
struct irq_guest {
	int vm, nr;
	struct vcpu v[2];
};

static volatile struct guest_data *guest_data(struct dev *d)
{
	return (volatile struct guest_data *)(d->low + GUEST_DATA);
}

static void irq_close(struct dev *d, struct irq_guest *g)
{
	int i;

	for (i = 0; i < g->nr; i++) {
		if (g->v[i].run && g->v[i].run != MAP_FAILED)
			munmap(g->v[i].run, d->run_size);
		if (g->v[i].fd >= 0)
			close(g->v[i].fd);
	}
	if (g->vm >= 0)
		close(g->vm);
	g->vm = -1;
	g->nr = 0;
}

static enum result irqchip_supported(struct dev *d)
{
	if (ioctl(d->fd, KVM_CHECK_EXTENSION, KVM_CAP_IRQCHIP) <= 0)
		return set_why(UNSUPPORTED,
			       "no in-kernel irqchip (KVM_CAP_IRQCHIP is not offered)");
	return MEASURED;
}

/* Set up vCPU @i of @g in 64-bit mode, runnable; false with why set. */
static bool irq_vcpu_setup(struct dev *d, struct irq_guest *g, int i)
{
	struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };
	struct vcpu *v = &g->v[i];
	struct kvm_sregs s;
	uint64_t apic_base;

	v->run = mmap(NULL, d->run_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		      v->fd, 0);
	if (v->run == MAP_FAILED) {
		set_why(FAILED, "mmap of vCPU %d: %s", i, strerror(errno));
		return false;
	}
	if (ioctl(v->fd, KVM_SET_CPUID2, d->cpuid)) {
		set_why(FAILED, "KVM_SET_CPUID2: %s", strerror(errno));
		return false;
	}
	/* d->sregs but for IA32_APIC_BASE: each keeps its own BSP flag */
	if (ioctl(v->fd, KVM_GET_SREGS, &s)) {
		set_why(FAILED, "KVM_GET_SREGS: %s", strerror(errno));
		return false;
	}
	apic_base = s.apic_base;
	s = d->sregs;
	s.apic_base = apic_base;
	if (ioctl(v->fd, KVM_SET_SREGS, &s)) {
		set_why(FAILED, "KVM_SET_SREGS: %s", strerror(errno));
		return false;
	}
	/* an AP would wait for INIT and SIPI */
	if (ioctl(v->fd, KVM_SET_MP_STATE, &mp)) {
		set_why(FAILED, "KVM_SET_MP_STATE(RUNNABLE) of vCPU %d: %s", i,
			strerror(errno));
		return false;
	}
	return true;
}

/* KVM_CREATE_IRQCHIP, slot 0, then @nr vCPUs; false with why set. */
static bool irq_open(struct dev *d, struct irq_guest *g, int nr)
{
	g->nr = 0;
	g->vm = ioctl(d->fd, KVM_CREATE_VM, 0);
	if (g->vm < 0) {
		set_why(FAILED, "KVM_CREATE_VM: %s", strerror(errno));
		return false;
	}
	if (ioctl(g->vm, KVM_CREATE_IRQCHIP, 0)) {
		set_why(FAILED, "KVM_CREATE_IRQCHIP: %s", strerror(errno));
		goto fail;
	}
	if (set_memory(g->vm, 0, 0, LOW_SIZE, d->low, 0)) {
		set_why(FAILED, "slot 0: %s", strerror(errno));
		goto fail;
	}
	while (g->nr < nr) {
		g->v[g->nr].run = NULL;
		g->v[g->nr].fd = ioctl(g->vm, KVM_CREATE_VCPU, g->nr);
		g->nr++;
		if (g->v[g->nr - 1].fd < 0) {
			set_why(FAILED, "KVM_CREATE_VCPU %d: %s", g->nr - 1,
				strerror(errno));
			goto fail;
		}
		if (!irq_vcpu_setup(d, g, g->nr - 1))
			goto fail;
	}
	return true;
fail:
	irq_close(d, g);
	return false;
}

/*
 * Enter @snippet on @v with the stack at @rsp and R8 = @r8.  The exit
 * before (an OUT) is completed first, by a KVM_RUN with immediate_exit,
 * as the API asks before the registers are changed.
 */
static bool vcpu_enter(struct vcpu *v, const uint8_t *snippet, uint64_t rsp,
		       uint64_t r8, char *err)
{
	struct kvm_regs regs;
	int ret;

	v->run->immediate_exit = 1;
	ret = ioctl(v->fd, KVM_RUN, 0);
	v->run->immediate_exit = 0;
	if (!ret || errno != EINTR) {
		set_err(err, "KVM_RUN with immediate_exit: %s",
			ret ? strerror(errno) : "the guest ran");
		return false;
	}
	memset(&regs, 0, sizeof(regs));
	regs.rip = code_gpa(snippet);
	regs.rflags = 2;
	regs.rsp = rsp;
	regs.r8 = r8;
	if (ioctl(v->fd, KVM_SET_REGS, &regs)) {
		set_err(err, "KVM_SET_REGS: %s", strerror(errno));
		return false;
	}
	return true;
}

/*
 * KVM_RUN @v until its guest writes a byte to @port; any other exit
 * fails, with the reason in @err, and so do the watchdog and another
 * thread's worker_stop().
 */
static bool run_to_port(struct dev *d, struct vcpu *v, uint16_t port,
			char *err)
{
	struct kvm_run *run = v->run;

	for (;;) {
		if (!ioctl(v->fd, KVM_RUN, 0))
			break;
		if (errno != EINTR) {
			set_err(err, "KVM_RUN: %s", strerror(errno));
			return false;
		}
		if (timed_out) {
			set_err(err, "timed out after %d s", WATCHDOG_S);
			return false;
		}
		if (__atomic_load_n(&run->immediate_exit, __ATOMIC_SEQ_CST)) {
			set_err(err, "stopped");
			return false;
		}
	}
	if (run->exit_reason == KVM_EXIT_IO &&
	    run->io.direction == KVM_EXIT_IO_OUT && run->io.port == port &&
	    run->io.size == 1 && run->io.count == 1)
		return true;
	describe_exit(v->fd, run, d->low, err);
	return false;
}

/*
 * A vCPU run by a thread of its own.  The thread posts @sem when its
 * guest is ready and again when it is done (@done set; @ok false with
 * @err saying why if it failed).
 */
struct worker {
	struct dev *d;
	int index;		/* of the vCPU */
	struct vcpu *v;
	pthread_t tid;
	sem_t sem;
	bool ok, done;
	char err[WHY_LEN];
	int ackfd;		/* irqfd: one count per interrupt taken */
};

static bool worker_start(struct worker *w, void *(*fn)(void *))
{
	sigset_t alarm_set, old;
	int ret;

	w->ok = false;
	w->done = false;
	w->err[0] = 0;
	w->v->run->immediate_exit = 0;
	if (sem_init(&w->sem, 0, 0)) {
		set_why(FAILED, "sem_init: %s", strerror(errno));
		return false;
	}
	/* SIGALRM is for the main thread */
	sigemptyset(&alarm_set);
	sigaddset(&alarm_set, SIGALRM);
	pthread_sigmask(SIG_BLOCK, &alarm_set, &old);
	ret = pthread_create(&w->tid, NULL, fn, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret) {
		sem_destroy(&w->sem);
		set_why(FAILED, "pthread_create: %s", strerror(ret));
		return false;
	}
	return true;
}

/* Wait for the worker's post that says it is ready (@done false) or done. */
static bool worker_wait(struct worker *w, bool done)
{
	while (sem_wait(&w->sem)) {
		if (errno == EINTR && !timed_out)
			continue;
		set_why(FAILED, "vCPU %d: timed out after %d s", w->index,
			WATCHDOG_S);
		return false;
	}
	if (w->done && !w->ok) {
		set_why(FAILED, "vCPU %d: %s", w->index, w->err);
		return false;
	}
	if (w->done != done) {
		set_why(FAILED, "vCPU %d: %s", w->index,
			done ? "not done" : "done before it was ready");
		return false;
	}
	return true;
}

/* Stop the worker's vCPU wherever it is, and end the thread. */
static void worker_stop(struct worker *w)
{
	__atomic_store_n(&w->v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	pthread_kill(w->tid, SIGUSR1);
	pthread_join(w->tid, NULL);
	sem_destroy(&w->sem);
}

/* vCPU 1 of the IPI round trip: ready, then done when D_STOP is set. */
static void *pong_thread(void *arg)
{
	struct worker *w = arg;

	w->ok = vcpu_enter(w->v, g_ipi_pong, GUEST_STACK1, 0, w->err) &&
		run_to_port(w->d, w->v, BENCH_IO_PORT, w->err);
	if (w->ok) {
		sem_post(&w->sem);
		w->ok = run_to_port(w->d, w->v, BENCH_DONE_PORT, w->err);
	}
	w->done = true;
	sem_post(&w->sem);
	return NULL;
}

/*
 * @n IPI round trips: vCPU 0 on this thread, vCPU 1 on a worker that
 * starts first and halts.  The time of vCPU 0's run; 0 with why set.
 */
static uint64_t ipi_run(struct dev *d, struct irq_guest *g, uint64_t n)
{
	volatile struct guest_data *data = guest_data(d);
	struct worker w = { .d = d, .index = 1, .v = &g->v[1] };
	char err[WHY_LEN];
	uint64_t t0 = 0, t1 = 0;
	bool ok;

	memset((void *)data, 0, sizeof(*data));
	if (!worker_start(&w, pong_thread))
		return 0;
	watchdog(true);
	ok = worker_wait(&w, false);
	if (ok && !vcpu_enter(&g->v[0], g_ipi_ping, GUEST_STACK0, n, err))
		ok = set_why(FAILED, "vCPU 0: %s", err) == MEASURED;
	if (ok) {
		t0 = now_ns();
		ok = run_to_port(d, &g->v[0], BENCH_DONE_PORT, err);
		t1 = now_ns();
		if (!ok)
			set_why(FAILED, "vCPU 0: %s", err);
	}
	ok = ok && worker_wait(&w, true);
	watchdog(false);
	worker_stop(&w);
	if (ok && (data->pings != n || data->pongs != n))
		ok = set_why(FAILED, "wrong count") == MEASURED;
	if (!ok) {
		add_why(" (IPIs taken by vCPU 1: %u, by vCPU 0: %u, of %llu each)",
			data->pings, data->pongs, (unsigned long long)n);
		return 0;
	}
	return t1 - t0 ? t1 - t0 : 1;
}

/* @n APIC timer interrupts: the time of the run; 0 with why set. */
static uint64_t timer_run(struct dev *d, struct irq_guest *g, uint64_t n)
{
	volatile struct guest_data *data = guest_data(d);
	char err[WHY_LEN];
	uint64_t t0, t1;
	bool ok;

	memset((void *)data, 0, sizeof(*data));
	if (!vcpu_enter(&g->v[0], g_apic_timer, GUEST_STACK0, n, err)) {
		set_why(FAILED, "%s", err);
		return 0;
	}
	watchdog(true);
	t0 = now_ns();
	ok = run_to_port(d, &g->v[0], BENCH_DONE_PORT, err);
	t1 = now_ns();
	watchdog(false);
	if (ok && data->timer == n)
		return t1 - t0 ? t1 - t0 : 1;
	set_why(FAILED, "%s (timer interrupts taken: %u of %llu)",
		ok ? "wrong count" : err, data->timer, (unsigned long long)n);
	return 0;
}

/*
 * As exit_bench(): runs of IRQ_ROUNDS and of twice as many interrupts
 * (the fastest of REPEAT each), the difference divided by IRQ_ROUNDS.
 */
static enum result irq_bench(struct dev *d, int nr_vcpus,
			     uint64_t (*run)(struct dev *d, struct irq_guest *g,
					     uint64_t n),
			     double *ns)
{
	uint64_t t1 = UINT64_MAX, t2 = UINT64_MAX, t;
	const uint64_t n = IRQ_ROUNDS;
	struct irq_guest g;
	enum result r;
	int i, k;

	r = irqchip_supported(d);
	if (r != MEASURED)
		return r;
	if (!irq_open(d, &g, nr_vcpus))
		return FAILED;
	/* warm up: the code and data pages, the threads, the exit paths */
	if (!run(d, &g, 2)) {
		r = FAILED;
		goto out;
	}
	for (i = 0; i < REPEAT; i++) {
		for (k = 1; k <= 2; k++) {
			t = run(d, &g, k * n);
			if (!t) {
				r = FAILED;
				goto out;
			}
			if (k == 1)
				t1 = min_u64(t1, t);
			else
				t2 = min_u64(t2, t);
		}
	}
	if (t2 <= t1) {
		r = set_why(FAILED, "%llu interrupts took no longer than %llu",
			    (unsigned long long)(2 * n), (unsigned long long)n);
		goto out;
	}
	*ns = (double)(t2 - t1) / n;
out:
	irq_close(d, &g);
	return r;
}

static enum result bench_ipi(struct dev *d, double *ns)
{
	return irq_bench(d, 2, ipi_run, ns);
}

static enum result bench_apic_timer(struct dev *d, double *ns)
{
	return irq_bench(d, 1, timer_run, ns);
}

/*
 * The vCPU of the irqfd benchmark: ready, then one count on ackfd per
 * OUT of its interrupt handler, until stopped.
 */
static void *irqfd_thread(void *arg)
{
	struct worker *w = arg;
	uint64_t one = 1;

	w->ok = vcpu_enter(w->v, g_irqfd, GUEST_STACK0, IRQFD_GSI, w->err) &&
		run_to_port(w->d, w->v, BENCH_IO_PORT, w->err);
	if (w->ok) {
		sem_post(&w->sem);
		while (run_to_port(w->d, w->v, BENCH_IO_PORT, w->err)) {
			if (write(w->ackfd, &one, sizeof(one)) != sizeof(one)) {
				set_err(w->err, "write to the eventfd: %s",
					strerror(errno));
				break;
			}
		}
		w->ok = false;
	}
	__atomic_store_n(&w->done, true, __ATOMIC_SEQ_CST);
	/* wakes the main thread if it waits for an answer */
	if (write(w->ackfd, &one, sizeof(one)) != sizeof(one))
		w->ok = false;
	sem_post(&w->sem);
	return NULL;
}

/* Signal @efd, wait for the guest's answer; false with why set. */
static bool irqfd_round(struct worker *w, int efd)
{
	uint64_t one = 1, v;

	if (write(efd, &one, sizeof(one)) != sizeof(one)) {
		set_why(FAILED, "write to the irqfd: %s", strerror(errno));
		return false;
	}
	while (read(w->ackfd, &v, sizeof(v)) != sizeof(v)) {
		if (errno == EINTR && !timed_out)
			continue;
		set_why(FAILED, "no answer: %s", timed_out ?
			"timed out" : strerror(errno));
		return false;
	}
	if (__atomic_load_n(&w->done, __ATOMIC_SEQ_CST)) {
		set_why(FAILED, "vCPU 0: %s", w->err);
		return false;
	}
	if (v != 1) {
		set_why(FAILED, "%llu answers to one interrupt",
			(unsigned long long)v);
		return false;
	}
	return true;
}

/*
 * An eventfd assigned with KVM_IRQFD to IRQFD_GSI, the IOAPIC pin that
 * the guest routes to VEC_IRQFD on its APIC: this thread signals it and
 * waits for the answer that the vCPU's thread gets from the guest's
 * handler, IRQ_ROUNDS times in a row; the fastest of REPEAT rounds.
 */
static enum result bench_irqfd(struct dev *d, double *ns)
{
	volatile struct guest_data *data = guest_data(d);
	uint64_t t0, t, best = UINT64_MAX, rounds = 0;
	struct kvm_irqfd irqfd = { .gsi = IRQFD_GSI };
	struct worker w = { .d = d, .index = 0, .ackfd = -1 };
	enum result r = MEASURED;
	bool started = false;
	struct irq_guest g;
	int efd = -1, i, k;

	r = irqchip_supported(d);
	if (r != MEASURED)
		return r;
	if (ioctl(d->fd, KVM_CHECK_EXTENSION, KVM_CAP_IRQFD) <= 0)
		return set_why(UNSUPPORTED, "KVM_CAP_IRQFD is not offered");
	if (!irq_open(d, &g, 1))
		return FAILED;
	w.v = &g.v[0];
	efd = eventfd(0, EFD_CLOEXEC);
	w.ackfd = eventfd(0, EFD_CLOEXEC);
	if (efd < 0 || w.ackfd < 0) {
		r = set_why(FAILED, "eventfd: %s", strerror(errno));
		goto out;
	}
	irqfd.fd = efd;
	if (ioctl(g.vm, KVM_IRQFD, &irqfd)) {
		r = set_why(FAILED, "KVM_IRQFD on GSI %d: %s", IRQFD_GSI,
			    strerror(errno));
		goto out;
	}
	memset((void *)data, 0, sizeof(*data));
	if (!worker_start(&w, irqfd_thread)) {
		r = FAILED;
		goto out;
	}
	started = true;
	watchdog(true);
	/* warm up: the first interrupt */
	if (!worker_wait(&w, false) || !irqfd_round(&w, efd)) {
		r = FAILED;
		goto out;
	}
	rounds++;
	for (i = 0; i < REPEAT; i++) {
		t0 = now_ns();
		for (k = 0; k < IRQ_ROUNDS; k++, rounds++) {
			if (!irqfd_round(&w, efd)) {
				r = FAILED;
				goto out;
			}
		}
		t = now_ns() - t0;
		best = min_u64(best, t);
	}
	*ns = (double)best / IRQ_ROUNDS;
out:
	watchdog(false);
	if (started)
		worker_stop(&w);
	if (r == MEASURED && data->irqfd != rounds)
		r = set_why(FAILED, "wrong count");
	if (r == FAILED && started)
		add_why(" (interrupts taken: %u, rounds completed: %llu)",
			data->irqfd, (unsigned long long)rounds);
	if (efd >= 0)
		close(efd);
	if (w.ackfd >= 0)
		close(w.ackfd);
	irq_close(d, &g);
	return r;
}

/* ---- 7 ---- */

/*
 * A Linux guest's boot, from vireo-run's first KVM_RUN to the first line
 * its /init prints (scripts/guest-initrd), as vireo-run's --watch tells.
 * The test host carries vireo-run, the kernel and the initramfs.
 */
#define VIREO_RUN	"/tools/vireo-run"
#define GUEST_KERNEL	"/guest/vmlinuz"
#define GUEST_INITRD	"/guest/initrd.gz"

static enum result bench_linux_boot(struct dev *d, double *ms)
{
	char out[8192], *at;
	size_t len = 0;
	int fds[2], st;
	long long t;
	ssize_t n;
	pid_t pid;

	if (access(VIREO_RUN, X_OK) || access(GUEST_KERNEL, R_OK) ||
	    access(GUEST_INITRD, R_OK))
		return set_why(UNSUPPORTED, "no vireo-run and guest in this host");
	if (pipe(fds) < 0)
		return set_why(FAILED, "pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		return set_why(FAILED, "fork: %s", strerror(errno));
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		dup2(null, 0);
		dup2(null, 1);
		dup2(fds[1], 2);
		execl(VIREO_RUN, VIREO_RUN, "--device", d->path,
		      "--kernel", GUEST_KERNEL, "--initrd", GUEST_INITRD,
		      "--cmdline", "console=ttyS0 panic=-1 quiet",
		      "--watch", "VGUEST INIT", (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	while (len < sizeof(out) - 1 &&
	       (n = read(fds[0], out + len, sizeof(out) - 1 - len)) > 0)
		len += n;
	out[len] = 0;
	close(fds[0]);
	if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
		return set_why(FAILED, "vireo-run did not end with a power-off");
	at = strstr(out, "\" after ");
	if (!at || sscanf(at, "\" after %lld ms", &t) != 1)
		return set_why(FAILED, "the guest's init never spoke");
	*ms = t;
	return MEASURED;
}

/* ---- main ---- */

struct bench {
	const char *name, *unit;
	enum result (*fn)(struct dev *d, double *value);
};

static const struct bench benches[] = {
	{ "cpuid", "ns", bench_cpuid },
	{ "hypercall", "ns", bench_hypercall },
	{ "pio_out", "ns", bench_pio },
	{ "mmio_write", "ns", bench_mmio },
	{ "touch_4k", "ns", bench_touch_4k },
	{ "touch_thp", "ns", bench_touch_thp },
	{ "dirty_log", "ns", bench_dirty_log },
	{ "vm_lifecycle", "ns", bench_lifecycle },
	{ "vm_mem_current", "KiB", bench_mem_current },
	{ "vm_mem_kernel", "KiB", bench_mem_kernel },
	{ "ipi", "ns", bench_ipi },
	{ "apic_timer", "ns", bench_apic_timer },
	{ "irqfd", "ns", bench_irqfd },
	{ "linux_boot", "ms", bench_linux_boot },
};

static bool join_cgroup(const char *cg)
{
	char path[512];
	FILE *f;
	int ok;

	snprintf(path, sizeof(path), "%s/cgroup.procs", cg);
	f = fopen(path, "w");
	if (!f)
		return false;
	ok = fprintf(f, "%d\n", getpid()) > 0;
	return !fclose(f) && ok;
}

static bool dev_open(struct dev *d)
{
	struct kvm_sregs *s = &d->sregs;
	unsigned int a, b = 0, c, dx;
	struct guest g;
	int nent = 256;

	d->fd = open(d->path, O_RDWR | O_CLOEXEC);
	if (d->fd < 0) {
		printf("# %s: %s\n", d->path, strerror(errno));
		return false;
	}
	d->run_size = ioctl(d->fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (d->run_size < (long)sizeof(struct kvm_run)) {
		printf("# KVM_GET_VCPU_MMAP_SIZE: %ld\n", d->run_size);
		return false;
	}
	__get_cpuid(0, &a, &b, &c, &dx);
	d->amd = b == 0x68747541;	/* "Auth"enticAMD */
	d->cpuid = calloc(1, sizeof(*d->cpuid) +
			  nent * sizeof(struct kvm_cpuid_entry2));
	d->cpuid->nent = nent;
	if (ioctl(d->fd, KVM_GET_SUPPORTED_CPUID, d->cpuid)) {
		printf("# KVM_GET_SUPPORTED_CPUID: %s\n", strerror(errno));
		return false;
	}
	d->low = mmap(NULL, LOW_SIZE, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (d->low == MAP_FAILED)
		return false;
	build_low(d->low);

	/* the 64-bit register state every guest starts from */
	g.vm = ioctl(d->fd, KVM_CREATE_VM, 0);
	g.vcpu = g.vm < 0 ? -1 : ioctl(g.vm, KVM_CREATE_VCPU, 0);
	g.run = NULL;
	if (g.vcpu < 0 || ioctl(g.vcpu, KVM_GET_SREGS, s)) {
		printf("# a first VM and vCPU: %s\n", strerror(errno));
		guest_close(d, &g);
		return false;
	}
	guest_close(d, &g);
	flat_seg(&s->cs, 0x8, true);
	flat_seg(&s->ds, 0x10, false);
	s->es = s->ds;
	s->fs = s->ds;
	s->gs = s->ds;
	s->ss = s->ds;
	s->gdt.base = GUEST_GDT;
	s->gdt.limit = 3 * 8 - 1;
	s->idt.base = GUEST_IDT;
	s->idt.limit = 256 * 16 - 1;
	s->cr0 = 0x80000031;	/* PG, NE, ET, PE */
	s->cr3 = GUEST_PML4;
	s->cr4 = 0x20;		/* PAE */
	s->efer = 0x500;	/* LMA, LME */
	return true;
}

static void clock_comment(void)
{
	char cs[64] = "?";
	FILE *f;

	f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource",
		  "r");
	if (f) {
		if (fscanf(f, "%63s", cs) != 1)
			strcpy(cs, "?");
		fclose(f);
	}
	printf("# clocksource %s\n", cs);
}

int main(int argc, char **argv)
{
	struct dev d = { .fd = -1 };
	enum result r;
	bool failed = false;
	double v;
	size_t i;
	int opt;

	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((opt = getopt(argc, argv, "c:")) != -1) {
		switch (opt) {
		case 'c':
			d.cgroup = optarg;
			break;
		default:
			fprintf(stderr, "usage: %s [-c CGROUP_DIR] DEVICE\n",
				argv[0]);
			return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "usage: %s [-c CGROUP_DIR] DEVICE\n", argv[0]);
		return 2;
	}
	d.path = argv[optind];
	install_signals();
	if (d.cgroup && !join_cgroup(d.cgroup)) {
		printf("# cannot join cgroup %s: %s\n", d.cgroup,
		       strerror(errno));
		d.cgroup = NULL;
	}
	printf("# vireo-bench %s\n", d.path);
	clock_comment();
	if (!dev_open(&d))
		return 1;
	for (i = 0; i < ARRAY_SIZE(benches); i++) {
		why[0] = 0;
		v = 0;
		r = benches[i].fn(&d, &v);
		if (r == MEASURED) {
			printf("BENCH %s %.1f %s\n", benches[i].name, v,
			       benches[i].unit);
			continue;
		}
		printf("BENCH %s n/a %s %s%s\n", benches[i].name,
		       benches[i].unit, r == FAILED ? "failed: " : "", why);
		failed |= r == FAILED;
	}
	return failed;
}
