// SPDX-License-Identifier: GPL-2.0-only
/*
 * ABI fuzzing: random but structured sequences of system, VM and vCPU
 * ioctls, one VM "scenario" per iteration, each chosen at random:
 *
 *  storm  a VM with 1-4 vCPUs (boundary ids too) and random memslots
 *         (boundary slot ids and address spaces, random flags, sizes 0
 *         for delete, unaligned and overlapping ranges, memory that is
 *         unmapped, read-only or inaccessible), then 20-60 random VM and
 *         vCPU ioctls: irqchip, PIT, IRQ lines, GSI routing, irqfds and
 *         ioeventfds on real eventfds, MSIs, dirty logs, clocks, caps,
 *         every piece of vCPU state, KVM_RUN of a small guest (random
 *         bytes now and then), bad pointers and unknown ioctl numbers.
 *         Arguments are random bytes with a few fields made plausible,
 *         so that the calls get past the first check.
 *  race   2-3 vCPU threads run small real-mode guests (an OUT loop or
 *         "sti; jmp .") while other threads move, delete and re-add
 *         memslots, toggle dirty logging, fetch and clear dirty logs,
 *         and assign, signal and deassign irqfds and ioeventfds; then
 *         the vCPU and VM fds are closed under them.
 *  fork   a VM whose fds stay open across fork(): the child uses the
 *         VM and vCPU fds (another mm: EIO is expected, the answers are
 *         only recorded) and the inherited kvm_run mapping, and makes a
 *         VM of its own; both sides close in random order.
 *
 * Every ioctl must succeed or fail with an errno from a known set, the
 * forked children must end normally, nothing may hang, and afterwards
 * the device still answers and a new VM still runs.
 *
 * Usage: fuzz_abi [device [iterations [seed [seconds]]]]
 * (defaults: 300 iterations, a time-based seed, at most 15 seconds)
 * FUZZ_FIRST=N in the environment starts at iteration N (a replay),
 * FUZZ_TRACE=1 prints every ioctl before it is made.
 *
 * Iteration i always starts from the same random state for a seed, so
 * a failure replays (the threaded parts only as far as timing allows).
 *
 * AMD hosts and Vireo only, as fuzz_run: random guests can spin with
 * interrupts off, which freezes Bochs (the Intel test host), and under
 * QEMU TCG Debian's KVM wedged the whole test host on random guests.
 */
#include <assert.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/vireo.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/tap.h"
#include "lib/util.h"
#include "lib/vm.h"

#define DEF_ITERATIONS	300
#define DEF_SECONDS	15
#define SLACK_S		10	/* past the budget: the last scenario */
#define WATCHDOG_S	30	/* past the budget: something hangs */
#define FINAL_S		20	/* for the checks at the end */
#define TICK_US		20000	/* SIGALRM: a spinning guest comes out */
#define CHILD_WAIT_MS	3000
#define JOIN_WAIT_MS	5000

/*
 * A scenario's memory: slot 0 with the guests, a pool for more slots
 * and for variable-size arguments, then read-only and inaccessible
 * pages, for slots and pointers that fault.
 */
#define SLOT0_SIZE	0x10000UL
#define POOL_OFF	SLOT0_SIZE
#define POOL_SIZE	0x40000UL
#define RO_OFF		(POOL_OFF + POOL_SIZE)
#define RO_SIZE		0x8000UL
#define NONE_OFF	(RO_OFF + RO_SIZE)
#define NONE_SIZE	0x8000UL
#define BUF_SIZE	(NONE_OFF + NONE_SIZE)

/* The real-mode guests at the bottom of slot 0 */
#define IRET_AT		0x500	/* every vector of the IVT comes here */
#define CODE		0x1000	/* the guests, GUEST_STRIDE apart */
#define GUEST_STRIDE	0x100
#define STACK_TOP	0x7ff0
#define OUT_PORT	0x50

/*
 * Userspace addresses a slot may use besides the scenario's buffer: no
 * mapping of this process is there, so a guest (random bytes too) can
 * never write to anything but its own memory.
 */
#define LOW_TOP		0x10000ULL	/* below mmap_min_addr */
#define USER_TOP	0x800000000000ULL	/* 128 TiB */
#define FAR_BASE	0x100000000000ULL	/* 16 TiB, if found unmapped */
#define FAR_SIZE	0x80000000000ULL	/* 8 TiB */

/* Dirty logging only on slots of at most this many pages */
#define LOG_MAX_PAGES	0x40000ULL	/* 1 GiB */
#define BITMAP_BYTES	(LOG_MAX_PAGES / 8)

#define MAX_VCPUS	4
#define RACE_VCPUS	3
#define NR_EFDS		3
#define NR_CHECKS	6
#define NR_EXITS	64
#define NR_ERRNOS	134

static_assert(BUF_SIZE <= (2UL << 20), "a VM's memory stays small");
static_assert(BITMAP_BYTES + 0x4000 <= POOL_SIZE, "bitmaps fit the pool");

static const struct {
	uint8_t len;
	uint8_t code[8];
} guests[] = {
	/* out %al, $0x50; jmp .-2: an exit each time round */
	{ 4, { 0xe6, OUT_PORT, 0xeb, 0xfc } },
	/* sti; jmp .: spins, with interrupts on, until a signal */
	{ 3, { 0xfb, 0xeb, 0xfe } },
	/* incb 0x2000; out %al, $0x50; jmp .-8: dirties a page too */
	{ 8, { 0xfe, 0x06, 0x00, 0x20, 0xe6, OUT_PORT, 0xeb, 0xf8 } },
};

#define NR_GUESTS	ARRAY_SIZE(guests)

/* ---- random numbers ---- */

struct rng {
	uint64_t s;
};

static uint64_t rnd(struct rng *r)
{
	/* xorshift64*, as fuzz_run: fast and reproducible */
	r->s ^= r->s >> 12;
	r->s ^= r->s << 25;
	r->s ^= r->s >> 27;
	return r->s * 0x2545f4914f6cdd1dULL;
}

/* splitmix64 of @seed: a well-mixed, never zero start */
static void rng_seed(struct rng *r, uint64_t seed)
{
	uint64_t z = seed + 0x9e3779b97f4a7c15ULL;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	r->s = (z ^ (z >> 31)) | 1;
}

static uint32_t below(struct rng *r, uint32_t n)
{
	return n ? rnd(r) % n : 0;
}

static bool one_in(struct rng *r, uint32_t n)
{
	return below(r, n) == 0;
}

static void fill(struct rng *r, void *buf, size_t len)
{
	uint8_t *p = buf;
	uint64_t v;
	size_t i;

	for (i = 0; i < len; i += sizeof(v)) {
		v = rnd(r);
		memcpy(p + i, &v, len - i < sizeof(v) ? len - i : sizeof(v));
	}
}

/* Flip @n random bytes of @buf */
static void mutate(struct rng *r, void *buf, size_t len, int n)
{
	uint8_t *p = buf;

	while (n-- > 0)
		p[below(r, len)] = rnd(r);
}

/* Boundary values, and now and then anything at all */
static uint64_t wild(struct rng *r)
{
	static const uint64_t v[] = {
		0, 1, 2, 3, 0xff, 0x100, 0xfff, 0x1000, 0xffff, 0x10000,
		0x7fffffff, 0x80000000, 0xffffffff, 0x100000000ULL,
		0x7fffffffffffffffULL, 0x8000000000000000ULL,
		0xfffffffffffff000ULL, ~0ULL,
	};

	switch (below(r, 4)) {
	case 0:
		return rnd(r);
	case 1:
		return rnd(r) & 0xffff;
	default:
		return v[below(r, ARRAY_SIZE(v))];
	}
}

static void shuffle(struct rng *r, int *a, int n)
{
	int i, j, t;

	for (i = n - 1; i > 0; i--) {
		j = below(r, i + 1);
		t = a[i];
		a[i] = a[j];
		a[j] = t;
	}
}

/* ---- what the run saw ---- */

enum cat {
	C_SYS, C_VM, C_MEM, C_IRQ, C_LOG, C_VCPU, C_RUN, C_BAD, C_UNKNOWN,
	C_CHILD, NR_CATS
};

static const char *const cat_names[NR_CATS] = {
	"system", "vm", "memslot", "irq", "dirty-log", "vcpu", "run",
	"bad-pointer", "unknown", "fork-child",
};

enum scen { S_STORM, S_RACE, S_FORK, NR_SCENS };

static const char *const scen_names[NR_SCENS] = { "storm", "race", "fork" };

/* Updated with atomics: the race threads count too. */
static struct {
	unsigned long scen[NR_SCENS], cat[NR_CATS];
	unsigned long ioctls, runs, exits[NR_EXITS], err[NR_ERRNOS + 1];
	unsigned long bad, setup_fail;
	unsigned long efd_writes, efd_reads, mmaps, mmaps_ok;
	unsigned long threads, hung_threads;
	unsigned long children, child_ok, child_killed, child_bad;
	unsigned long child_hung, child_eio, child_other;
	unsigned long child_vms, child_vms_ran;
} st;

static void add(unsigned long *p)
{
	__atomic_fetch_add(p, 1, __ATOMIC_RELAXED);
}

static void add_n(unsigned long *p, unsigned long n)
{
	__atomic_fetch_add(p, n, __ATOMIC_RELAXED);
}

static const char *dev;
static int sys_fd = -1;
static long run_size, nr_memslots, max_vcpu_id, nr_as, xsave2_size;
static bool far_ok;
static long long t0_ms, deadline_ms, hard_ms, final_ms;
static long budget_s, iterations, done;
static long cur_iter;

static unsigned long setup_diags;

/* a scenario could not be set up: count it, say where and why (a few) */
#define setup_failed(k, what) do {					\
	int e_ = errno;							\
	add(&st.setup_fail);						\
	if (setup_diags++ < 10)						\
		tap_diag("iteration %ld: %s (%s) could not be set up: %s", \
			 cur_iter, scen_names[k], what, strerror(e_));	\
} while (0)
static int cur_scen;
static int fds_before, fds_after = -2;
static int finishing;

/* KVM_GET_SUPPORTED_CPUID, read once; only ever read after that */
static struct {
	struct kvm_cpuid2 h;
	struct kvm_cpuid_entry2 e[256];
} supported;

static pthread_mutex_t bad_lock = PTHREAD_MUTEX_INITIALIZER;

static struct {
	unsigned long req;
	int err;
	long iter;
	const char *where;
} first_bad;

static struct {
	long iter;
	int status;
	bool hung;
} first_child = { .iter = -1 };

static long long now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000LL + t.tv_nsec / 1000000;
}

static bool past_deadline(void)
{
	return now_ms() >= deadline_ms;
}

/* Sleep @us whatever SIGALRM says */
static void sleep_us(long us)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_sec += us / 1000000;
	t.tv_nsec += (us % 1000000) * 1000;
	if (t.tv_nsec >= 1000000000) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000;
	}
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) == EINTR)
		;
}

static void on_alarm(int sig)
{
	(void)sig;
}

/* ---- the ioctls ---- */

enum fdk { K_SYS, K_VM, K_VCPU };

struct ioc {
	unsigned long req;
	const char *name;
	uint8_t kind;
	bool ptr;		/* the argument is a pointer */
};

static const struct ioc iocs[] = {
	{ KVM_GET_API_VERSION, "KVM_GET_API_VERSION", K_SYS, false },
	{ KVM_CHECK_EXTENSION, "KVM_CHECK_EXTENSION", K_SYS, false },
	{ KVM_GET_VCPU_MMAP_SIZE, "KVM_GET_VCPU_MMAP_SIZE", K_SYS, false },
	{ KVM_CREATE_VM, "KVM_CREATE_VM", K_SYS, false },
	{ KVM_GET_SUPPORTED_CPUID, "KVM_GET_SUPPORTED_CPUID", K_SYS, true },
	{ KVM_GET_MSR_INDEX_LIST, "KVM_GET_MSR_INDEX_LIST", K_SYS, true },
	{ KVM_GET_MSR_FEATURE_INDEX_LIST, "KVM_GET_MSR_FEATURE_INDEX_LIST",
	  K_SYS, true },
	{ KVM_X86_GET_MCE_CAP_SUPPORTED, "KVM_X86_GET_MCE_CAP_SUPPORTED",
	  K_SYS, true },
	{ VIREO_GET_BACKEND, "VIREO_GET_BACKEND", K_SYS, false },
	{ KVM_CREATE_VCPU, "KVM_CREATE_VCPU", K_VM, false },
	{ KVM_SET_USER_MEMORY_REGION, "KVM_SET_USER_MEMORY_REGION", K_VM, true },
	{ KVM_GET_DIRTY_LOG, "KVM_GET_DIRTY_LOG", K_VM, true },
	{ KVM_CLEAR_DIRTY_LOG, "KVM_CLEAR_DIRTY_LOG", K_VM, true },
	{ KVM_ENABLE_CAP, "KVM_ENABLE_CAP", K_VM, true },
	{ KVM_SET_TSS_ADDR, "KVM_SET_TSS_ADDR", K_VM, false },
	{ KVM_SET_IDENTITY_MAP_ADDR, "KVM_SET_IDENTITY_MAP_ADDR", K_VM, true },
	{ KVM_SET_BOOT_CPU_ID, "KVM_SET_BOOT_CPU_ID", K_VM, false },
	{ KVM_CREATE_IRQCHIP, "KVM_CREATE_IRQCHIP", K_VM, false },
	{ KVM_GET_IRQCHIP, "KVM_GET_IRQCHIP", K_VM, true },
	{ KVM_SET_IRQCHIP, "KVM_SET_IRQCHIP", K_VM, true },
	{ KVM_IRQ_LINE, "KVM_IRQ_LINE", K_VM, true },
	{ KVM_IRQ_LINE_STATUS, "KVM_IRQ_LINE_STATUS", K_VM, true },
	{ KVM_SET_GSI_ROUTING, "KVM_SET_GSI_ROUTING", K_VM, true },
	{ KVM_SIGNAL_MSI, "KVM_SIGNAL_MSI", K_VM, true },
	{ KVM_IRQFD, "KVM_IRQFD", K_VM, true },
	{ KVM_IOEVENTFD, "KVM_IOEVENTFD", K_VM, true },
	{ KVM_CREATE_PIT, "KVM_CREATE_PIT", K_VM, false },
	{ KVM_CREATE_PIT2, "KVM_CREATE_PIT2", K_VM, true },
	{ KVM_GET_PIT, "KVM_GET_PIT", K_VM, true },
	{ KVM_SET_PIT, "KVM_SET_PIT", K_VM, true },
	{ KVM_GET_PIT2, "KVM_GET_PIT2", K_VM, true },
	{ KVM_SET_PIT2, "KVM_SET_PIT2", K_VM, true },
	{ KVM_REINJECT_CONTROL, "KVM_REINJECT_CONTROL", K_VM, true },
	{ KVM_GET_CLOCK, "KVM_GET_CLOCK", K_VM, true },
	{ KVM_SET_CLOCK, "KVM_SET_CLOCK", K_VM, true },
	{ KVM_RUN, "KVM_RUN", K_VCPU, false },
	{ KVM_GET_REGS, "KVM_GET_REGS", K_VCPU, true },
	{ KVM_SET_REGS, "KVM_SET_REGS", K_VCPU, true },
	{ KVM_GET_SREGS, "KVM_GET_SREGS", K_VCPU, true },
	{ KVM_SET_SREGS, "KVM_SET_SREGS", K_VCPU, true },
	{ KVM_GET_FPU, "KVM_GET_FPU", K_VCPU, true },
	{ KVM_SET_FPU, "KVM_SET_FPU", K_VCPU, true },
	{ KVM_GET_XSAVE, "KVM_GET_XSAVE", K_VCPU, true },
	{ KVM_SET_XSAVE, "KVM_SET_XSAVE", K_VCPU, true },
	{ KVM_GET_XSAVE2, "KVM_GET_XSAVE2", K_VCPU, true },
	{ KVM_GET_XCRS, "KVM_GET_XCRS", K_VCPU, true },
	{ KVM_SET_XCRS, "KVM_SET_XCRS", K_VCPU, true },
	{ KVM_GET_DEBUGREGS, "KVM_GET_DEBUGREGS", K_VCPU, true },
	{ KVM_SET_DEBUGREGS, "KVM_SET_DEBUGREGS", K_VCPU, true },
	{ KVM_GET_VCPU_EVENTS, "KVM_GET_VCPU_EVENTS", K_VCPU, true },
	{ KVM_SET_VCPU_EVENTS, "KVM_SET_VCPU_EVENTS", K_VCPU, true },
	{ KVM_GET_MP_STATE, "KVM_GET_MP_STATE", K_VCPU, true },
	{ KVM_SET_MP_STATE, "KVM_SET_MP_STATE", K_VCPU, true },
	{ KVM_GET_LAPIC, "KVM_GET_LAPIC", K_VCPU, true },
	{ KVM_SET_LAPIC, "KVM_SET_LAPIC", K_VCPU, true },
	{ KVM_GET_MSRS, "KVM_GET_MSRS", K_VCPU, true },
	{ KVM_SET_MSRS, "KVM_SET_MSRS", K_VCPU, true },
	{ KVM_GET_CPUID2, "KVM_GET_CPUID2", K_VCPU, true },
	{ KVM_SET_CPUID2, "KVM_SET_CPUID2", K_VCPU, true },
	{ KVM_SET_GUEST_DEBUG, "KVM_SET_GUEST_DEBUG", K_VCPU, true },
	{ KVM_INTERRUPT, "KVM_INTERRUPT", K_VCPU, true },
	{ KVM_NMI, "KVM_NMI", K_VCPU, false },
	{ KVM_GET_TSC_KHZ, "KVM_GET_TSC_KHZ", K_VCPU, false },
	{ KVM_SET_TSC_KHZ, "KVM_SET_TSC_KHZ", K_VCPU, false },
	{ KVM_X86_SETUP_MCE, "KVM_X86_SETUP_MCE", K_VCPU, true },
	{ KVM_SET_SIGNAL_MASK, "KVM_SET_SIGNAL_MASK", K_VCPU, true },
	{ KVM_SET_VAPIC_ADDR, "KVM_SET_VAPIC_ADDR", K_VCPU, true },
};

static const char *ioc_name(unsigned long req)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(iocs); i++)
		if (iocs[i].req == req)
			return iocs[i].name;
	return "unknown";
}

/* What an ioctl may fail with; anything else is a finding. */
static const struct {
	int err;
	const char *name;
} allowed[] = {
	{ EINVAL, "EINVAL" }, { EFAULT, "EFAULT" }, { ENOENT, "ENOENT" },
	{ EEXIST, "EEXIST" }, { ENOMEM, "ENOMEM" }, { ENOSPC, "ENOSPC" },
	{ E2BIG, "E2BIG" }, { EBUSY, "EBUSY" }, { EINTR, "EINTR" },
	{ EIO, "EIO" }, { ENXIO, "ENXIO" }, { ENOTTY, "ENOTTY" },
	{ EBADF, "EBADF" }, { EAGAIN, "EAGAIN" }, { EPERM, "EPERM" },
	{ EOPNOTSUPP, "EOPNOTSUPP" }, { ERANGE, "ERANGE" },
	{ ENODEV, "ENODEV" }, { EACCES, "EACCES" },
};

static const char *errno_name(int e)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(allowed); i++)
		if (allowed[i].err == e)
			return allowed[i].name;
	return NULL;
}

static void note_errno(unsigned long req, int e)
{
	add(&st.err[e > 0 && e < NR_ERRNOS ? e : NR_ERRNOS]);
	if (errno_name(e))
		return;
	add(&st.bad);
	pthread_mutex_lock(&bad_lock);
	if (!first_bad.err) {
		first_bad.req = req;
		first_bad.err = e;
		first_bad.iter = __atomic_load_n(&cur_iter, __ATOMIC_RELAXED);
		first_bad.where = scen_names[__atomic_load_n(&cur_scen,
							      __ATOMIC_RELAXED)];
	}
	pthread_mutex_unlock(&bad_lock);
}

/* FUZZ_TRACE=1 in the environment: every ioctl, before it is made */
static bool trace;

static const char *req_name(unsigned long req)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(iocs); i++)
		if (iocs[i].req == req)
			return iocs[i].name;
	return "?";
}

static void trace_seg(const char *n, const struct kvm_segment *g)
{
	printf("#   %s sel %#x base %#llx limit %#x type %u s %u dpl %u",
	       n, g->selector, (unsigned long long)g->base, g->limit, g->type,
	       g->s, g->dpl);
	printf(" p %u db %u l %u g %u unusable %u\n", g->present, g->db, g->l,
	       g->g, g->unusable);
}

/* the vCPU's state as KVM_RUN finds it */
static void trace_state(int fd)
{
	struct kvm_vcpu_events ev;
	struct kvm_sregs s;
	struct kvm_regs r;

	if (!ioctl(fd, KVM_GET_REGS, &r))
		printf("#   rip %#llx rsp %#llx rflags %#llx rax %#llx\n",
		       (unsigned long long)r.rip, (unsigned long long)r.rsp,
		       (unsigned long long)r.rflags, (unsigned long long)r.rax);
	if (!ioctl(fd, KVM_GET_SREGS, &s)) {
		printf("#   cr0 %#llx cr3 %#llx cr4 %#llx efer %#llx apic_base %#llx\n",
		       (unsigned long long)s.cr0, (unsigned long long)s.cr3,
		       (unsigned long long)s.cr4, (unsigned long long)s.efer,
		       (unsigned long long)s.apic_base);
		trace_seg("cs", &s.cs);
		trace_seg("ss", &s.ss);
		trace_seg("ds", &s.ds);
		trace_seg("tr", &s.tr);
		printf("#   idt %#llx/%#x gdt %#llx/%#x\n",
		       (unsigned long long)s.idt.base, s.idt.limit,
		       (unsigned long long)s.gdt.base, s.gdt.limit);
	}
	if (!ioctl(fd, KVM_GET_VCPU_EVENTS, &ev))
		printf("#   exc %u/%u nr %u irq %u/%u nmi %u/%u/%u shadow %u\n",
		       ev.exception.injected, ev.exception.pending,
		       ev.exception.nr, ev.interrupt.injected, ev.interrupt.nr,
		       ev.nmi.injected, ev.nmi.pending, ev.nmi.masked,
		       ev.interrupt.shadow);
}

/* Every ioctl of the test goes through here: counted and checked. */
static int xio(int fd, unsigned long req, unsigned long arg, enum cat c)
{
	int ret, e;

	add(&st.ioctls);
	add(&st.cat[c]);
	if (trace) {
		printf("# trace %ld: fd %d %s (%#lx) arg %#lx\n", cur_iter, fd,
		       req_name(req), req, arg);
		if (req == KVM_RUN)
			trace_state(fd);
		fflush(stdout);
	}
	ret = ioctl(fd, req, arg);
	if (ret < 0) {
		e = errno;
		note_errno(req, e);
		errno = e;
	}
	return ret;
}

#define P(p)	((unsigned long)(p))

/*
 * KVM_CREATE_VM for a scenario: the first VM of a process registers an
 * MMU notifier, which takes all of the process's mm locks and gives up
 * with EINTR when a signal (our SIGALRM tick) is pending, in KVM as in
 * Vireo; VMMs try again, and so do we.
 */
static int new_vm(int devfd, enum cat c)
{
	int i, vm = -1;

	for (i = 0; i < 100; i++) {
		vm = xio(devfd, KVM_CREATE_VM, 0, c);
		if (vm >= 0 || errno != EINTR)
			break;
	}
	return vm;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void efd_signal(int fd)
{
	uint64_t one = 1;

	if (fd >= 0 && write(fd, &one, sizeof(one)) == sizeof(one))
		add(&st.efd_writes);
}

static void efd_drain(int fd)
{
	uint64_t v;

	if (fd >= 0 && read(fd, &v, sizeof(v)) == sizeof(v))
		add(&st.efd_reads);
}

/* ---- memory and guests ---- */

static void guest_image(uint8_t *low)
{
	uint16_t *ivt = (uint16_t *)low;
	unsigned int i;

	for (i = 0; i < 256; i++) {
		ivt[2 * i] = IRET_AT;
		ivt[2 * i + 1] = 0;
	}
	low[IRET_AT] = 0xcf;	/* iret: no interrupt leaves a guest stuck */
	for (i = 0; i < NR_GUESTS; i++)
		memcpy(low + CODE + i * GUEST_STRIDE, guests[i].code,
		       guests[i].len);
}

static uint8_t *mem_alloc(bool private)
{
	uint8_t *b = mmap(NULL, BUF_SIZE, PROT_READ | PROT_WRITE,
			  (private ? MAP_PRIVATE : MAP_SHARED) | MAP_ANONYMOUS,
			  -1, 0);

	if (b == MAP_FAILED)
		return NULL;
	guest_image(b);
	memset(b + RO_OFF, 0xff, RO_SIZE);
	if (mprotect(b + RO_OFF, RO_SIZE, PROT_READ) ||
	    mprotect(b + NONE_OFF, NONE_SIZE, PROT_NONE)) {
		munmap(b, BUF_SIZE);
		return NULL;
	}
	return b;
}

static void mem_free(uint8_t **buf)
{
	if (*buf)
		munmap(*buf, BUF_SIZE);
	*buf = NULL;
}

/*
 * Keep a slot off this process's memory outside @buf (see LOW_TOP),
 * and dirty logging off slots whose bitmap would not fit the pool.
 */
static void confine(struct kvm_userspace_memory_region *m, const uint8_t *buf)
{
	uint64_t ua = m->userspace_addr, lo = (uintptr_t)buf;
	uint64_t hi = lo + BUF_SIZE, lim;

	if (ua >= USER_TOP) {
		lim = 0;		/* never user memory */
	} else if (ua < LOW_TOP) {
		lim = LOW_TOP;
	} else if (far_ok && ua >= FAR_BASE && ua < FAR_BASE + FAR_SIZE) {
		lim = FAR_BASE + FAR_SIZE;
	} else if (ua >= lo && ua < hi) {
		lim = hi;
	} else {
		ua = lo + POOL_OFF;
		m->userspace_addr = ua;
		lim = hi;
	}
	if (lim && m->memory_size > lim - ua)
		m->memory_size = (lim - ua) & ~0xfffULL;
	if ((m->flags & KVM_MEM_LOG_DIRTY_PAGES) &&
	    m->memory_size > LOG_MAX_PAGES << 12)
		m->flags &= ~KVM_MEM_LOG_DIRTY_PAGES;
}

static int set_region(int vm, struct kvm_userspace_memory_region *m,
		      const uint8_t *buf, enum cat c)
{
	confine(m, buf);
	return xio(vm, KVM_SET_USER_MEMORY_REGION, P(m), c);
}

static uint32_t rand_slot(struct rng *r)
{
	switch (below(r, 12)) {
	case 0:
		return 0;
	case 1:
		return nr_memslots - 1;
	case 2:
		return nr_memslots + below(r, 2);
	case 3:
		return 0xffff;
	case 4:
		return (uint32_t)(nr_as + below(r, 2)) << 16 | below(r, 8);
	case 5:
		return rnd(r);
	default:
		return 1 + below(r, 7);
	}
}

static void gen_region(struct rng *r, struct kvm_userspace_memory_region *m,
		       const uint8_t *buf)
{
	uint64_t lo = (uintptr_t)buf;

	memset(m, 0, sizeof(*m));
	m->slot = rand_slot(r);
	switch (below(r, 8)) {
	case 0:
		m->flags = KVM_MEM_LOG_DIRTY_PAGES;
		break;
	case 1:
		m->flags = KVM_MEM_READONLY;
		break;
	case 2:
		m->flags = KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY;
		break;
	case 3:
		m->flags = one_in(r, 2) ? 1u << below(r, 32) : rnd(r);
		break;
	default:
		break;
	}
	switch (below(r, 10)) {
	case 0:
	case 1:
		m->memory_size = 0;			/* delete */
		break;
	case 2:
		m->memory_size = ((uint64_t)below(r, 16) << 12) + 0x800;
		break;
	case 3:
		m->memory_size = 1ULL << (30 + below(r, 14));
		break;
	case 4:
		m->memory_size = wild(r);
		break;
	default:
		m->memory_size = (uint64_t)(1 + below(r, 16)) << 12;
		break;
	}
	switch (below(r, 10)) {
	case 0:
		m->guest_phys_addr = 0;			/* slot 0's */
		break;
	case 1:
		m->guest_phys_addr = SLOT0_SIZE - 0x1000;
		break;
	case 2:
		m->guest_phys_addr = 0x100000000ULL - 0x40000;
		break;
	case 3:
		m->guest_phys_addr = (1ULL << 48) - 0x10000;
		break;
	case 4:
		m->guest_phys_addr = 1ULL << (48 + below(r, 16));
		break;
	case 5:
		m->guest_phys_addr = wild(r);
		break;
	case 6:
		m->guest_phys_addr = ((uint64_t)below(r, 1024) << 12) |
				     (one_in(r, 2) ? 0x800 : 0);
		break;
	default:
		m->guest_phys_addr = 0x100000 + ((uint64_t)below(r, 64) << 12);
		break;
	}
	switch (below(r, 12)) {
	case 0:
		m->userspace_addr = 0;
		break;
	case 1:
		m->userspace_addr = (uint64_t)below(r, 16) << 12;
		break;
	case 2:
		m->userspace_addr = lo + RO_OFF;
		break;
	case 3:
		m->userspace_addr = lo + NONE_OFF;
		break;
	case 4:
		m->userspace_addr = 0xffff880000000000ULL;
		break;
	case 5:
		m->userspace_addr = wild(r);
		break;
	case 6:
		m->userspace_addr = FAR_BASE + ((uint64_t)below(r, 1024) << 30);
		break;
	case 7:
		m->userspace_addr = lo + POOL_OFF + 0x800;
		break;
	case 8:
		m->userspace_addr = lo;			/* slot 0's memory */
		break;
	default:
		m->userspace_addr = lo + POOL_OFF +
				    ((uint64_t)below(r, POOL_SIZE >> 12) << 12);
		break;
	}
}

/* ---- vCPUs ---- */

struct vcpu_st {
	int fd;
	unsigned long id;
	uint64_t rip;			/* its guest */
	struct kvm_run *run;
	struct kvm_sregs sregs0;	/* as created */
	bool have_sregs0;
};

static bool vcpu_open(int vm, unsigned long id, struct vcpu_st *v,
		      struct rng *r, enum cat c)
{
	memset(v, 0, sizeof(*v));
	v->fd = xio(vm, KVM_CREATE_VCPU, id, c);
	if (v->fd < 0)
		return false;
	v->id = id;
	v->rip = CODE + below(r, NR_GUESTS) * GUEST_STRIDE;
	v->run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		      v->fd, 0);
	if (v->run == MAP_FAILED)
		v->run = NULL;
	v->have_sregs0 = !xio(v->fd, KVM_GET_SREGS, P(&v->sregs0), c);
	return true;
}

static void unmap_run(struct vcpu_st *v)
{
	if (v->run)
		munmap(v->run, run_size);
	v->run = NULL;
}

/* Real mode at the vCPU's guest, interrupts on */
static void set_entry(struct vcpu_st *v, enum cat c)
{
	struct kvm_sregs s;
	struct kvm_regs regs;

	if (v->have_sregs0)
		s = v->sregs0;
	else if (xio(v->fd, KVM_GET_SREGS, P(&s), c))
		return;
	s.cs.selector = 0;
	s.cs.base = 0;
	xio(v->fd, KVM_SET_SREGS, P(&s), c);
	memset(&regs, 0, sizeof(regs));
	regs.rip = v->rip;
	regs.rsp = STACK_TOP;
	regs.rflags = 0x202;
	xio(v->fd, KVM_SET_REGS, P(&regs), c);
}

static void set_supported_cpuid(int fd, enum cat c)
{
	if (supported.h.nent)
		xio(fd, KVM_SET_CPUID2, P(&supported), c);
}

static void set_runnable(int fd, enum cat c)
{
	struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };

	xio(fd, KVM_SET_MP_STATE, P(&mp), c);
}

static int do_run(struct vcpu_st *v, unsigned long arg, enum cat c)
{
	int ret;

	add(&st.runs);
	ret = xio(v->fd, KVM_RUN, arg, c);
	if (!ret && v->run)
		add(&st.exits[v->run->exit_reason < NR_EXITS ?
			      v->run->exit_reason : NR_EXITS - 1]);
	return ret;
}

/* Random data for IN and MMIO reads, within the mapping */
static void answer_exit(struct rng *r, struct vcpu_st *v)
{
	struct kvm_run *run = v->run;
	unsigned long len;

	if (!run)
		return;
	if (run->exit_reason == KVM_EXIT_IO &&
	    run->io.direction == KVM_EXIT_IO_IN) {
		len = (unsigned long)run->io.size * run->io.count;
		if (run->io.data_offset <= (unsigned long)run_size &&
		    len <= run_size - run->io.data_offset)
			fill(r, (uint8_t *)run + run->io.data_offset, len);
	} else if (run->exit_reason == KVM_EXIT_MMIO && !run->mmio.is_write) {
		fill(r, run->mmio.data, sizeof(run->mmio.data));
	}
}

/* ==== scenario 1: an ioctl storm ==== */

struct storm {
	struct rng *r;
	int vm;
	uint8_t *buf;
	int nv;
	struct vcpu_st v[MAX_VCPUS];
	int efd[NR_EFDS];
	bool irqchip;
	/* slots that were accepted, to move, toggle and delete */
	struct kvm_userspace_memory_region slots[8];
	int nslots;
};

/*
 * The pool's last @len bytes, for arguments of variable size: whatever
 * a call reads or writes past them is the read-only part, so an overrun
 * faults instead of scribbling on this process.
 */
static void *tail(struct storm *s, size_t len)
{
	return s->buf + RO_OFF - ((len + 63) & ~(size_t)63);
}

static struct vcpu_st *pick_vcpu(struct storm *s)
{
	return s->nv ? &s->v[below(s->r, s->nv)] : NULL;
}

/* Now and then a call goes to the wrong kind of fd, or to none. */
static int other_fd(struct storm *s)
{
	switch (below(s->r, 3)) {
	case 0:
		return s->vm;
	case 1:
		return sys_fd;
	default:
		return -1;
	}
}

static int vcpu_fd(struct storm *s)
{
	struct vcpu_st *v = pick_vcpu(s);

	if (!v || one_in(s->r, 32))
		return other_fd(s);
	return v->fd;
}

static int vm_fd(struct storm *s)
{
	struct vcpu_st *v;

	if (!one_in(s->r, 32))
		return s->vm;
	v = pick_vcpu(s);
	return v && one_in(s->r, 2) ? v->fd : sys_fd;
}

static int pick_efd(struct storm *s)
{
	switch (below(s->r, 12)) {
	case 0:
		return -1;
	case 1:
		return s->vm;		/* not an eventfd */
	case 2:
		return 0x7fffffff;
	default:
		return s->efd[below(s->r, NR_EFDS)];
	}
}

static uint32_t rand_gsi(struct rng *r)
{
	switch (below(r, 8)) {
	case 0:
		return wild(r);
	case 1:
		return below(r, 1024);
	case 2:
		return 1023 + below(r, 3);
	default:
		return below(r, 24);
	}
}

static unsigned long rand_cap(struct rng *r)
{
	return one_in(r, 4) ? wild(r) : below(r, 250);
}

/* Bad pointers: unmapped, kernel, non-canonical, faulting part way */
static void *bad_ptr(struct storm *s)
{
	static const uint64_t fixed[] = {
		0, 8, 0x1000, 0xffff880000000000ULL, 0x8000000000000000ULL,
		-4096ULL, -8ULL,
	};

	switch (below(s->r, 8)) {
	case 0:
		return s->buf + RO_OFF;
	case 1:
		return s->buf + NONE_OFF;
	case 2:
		return s->buf + RO_OFF - 8;	/* then read-only */
	case 3:
		return s->buf + NONE_OFF - 8;	/* then inaccessible */
	default:
		return (void *)(uintptr_t)fixed[below(s->r, ARRAY_SIZE(fixed))];
	}
}

static void remember_slot(struct storm *s,
			  const struct kvm_userspace_memory_region *m)
{
	int i;

	for (i = 0; i < s->nslots; i++) {
		if (s->slots[i].slot != m->slot)
			continue;
		if (m->memory_size)
			s->slots[i] = *m;
		else
			s->slots[i] = s->slots[--s->nslots];
		return;
	}
	if (m->memory_size && s->nslots < (int)ARRAY_SIZE(s->slots))
		s->slots[s->nslots++] = *m;
}

static void op_region(struct storm *s)
{
	struct kvm_userspace_memory_region m;
	struct rng *r = s->r;
	int fd = vm_fd(s);

	if (s->nslots && !one_in(r, 3)) {
		/* an accepted slot moved, its flags changed, or deleted */
		m = s->slots[below(r, s->nslots)];
		switch (below(r, 6)) {
		case 0:
			m.guest_phys_addr = 0x100000 +
					    ((uint64_t)below(r, 64) << 12);
			break;
		case 1:
			m.flags ^= KVM_MEM_LOG_DIRTY_PAGES;
			break;
		case 2:
			m.flags ^= KVM_MEM_READONLY;
			break;
		case 3:
			m.memory_size = 0;
			break;
		case 4:
			m.memory_size += 0x1000;
			break;
		default:
			m.userspace_addr += 0x1000;
			break;
		}
	} else {
		gen_region(r, &m, s->buf);
	}
	if (!set_region(fd, &m, s->buf, C_MEM) && fd == s->vm)
		remember_slot(s, &m);
}

static void op_irqchip(struct storm *s)
{
	if (!xio(vm_fd(s), KVM_CREATE_IRQCHIP, 0, C_IRQ))
		s->irqchip = true;
}

static void op_pit(struct storm *s)
{
	struct kvm_reinject_control rc;
	struct kvm_pit_config pc;
	struct rng *r = s->r;

	switch (below(r, 6)) {
	case 0:
		xio(vm_fd(s), KVM_CREATE_PIT, 0, C_IRQ);
		break;
	case 1:
		fill(r, &rc, sizeof(rc));
		xio(vm_fd(s), KVM_REINJECT_CONTROL, P(&rc), C_IRQ);
		break;
	default:
		memset(&pc, 0, sizeof(pc));
		pc.flags = one_in(r, 3) ? wild(r) : below(r, 2);
		if (one_in(r, 8))
			fill(r, pc.pad, sizeof(pc.pad));
		xio(vm_fd(s), KVM_CREATE_PIT2, P(&pc), C_IRQ);
		break;
	}
}

static void op_irq_line(struct storm *s)
{
	struct kvm_irq_level l;
	struct rng *r = s->r;

	memset(&l, 0, sizeof(l));
	l.irq = rand_gsi(r);
	l.level = one_in(r, 8) ? wild(r) : below(r, 2);
	xio(vm_fd(s), one_in(r, 2) ? KVM_IRQ_LINE : KVM_IRQ_LINE_STATUS,
	    P(&l), C_IRQ);
}

static void gen_route(struct rng *r, struct kvm_irq_routing_entry *e,
		      uint32_t i)
{
	e->gsi = one_in(r, 4) ? rand_gsi(r) : i % 24;
	e->flags = one_in(r, 16) ? rnd(r) : 0;
	switch (below(r, 8)) {
	case 0:
		e->type = one_in(r, 2) ? rnd(r) : below(r, 8);
		fill(r, &e->u, sizeof(e->u));
		break;
	case 1:
	case 2:
	case 3:
		e->type = KVM_IRQ_ROUTING_MSI;
		e->u.msi.address_lo = one_in(r, 8) ? rnd(r) :
				      0xfee00000 | below(r, 4) << 12;
		e->u.msi.address_hi = one_in(r, 8) ? rnd(r) : 0;
		e->u.msi.data = below(r, 256) |
				(one_in(r, 4) ? below(r, 8) << 8 : 0);
		break;
	default:
		e->type = KVM_IRQ_ROUTING_IRQCHIP;
		e->u.irqchip.irqchip = one_in(r, 8) ? rnd(r) : below(r, 3);
		e->u.irqchip.pin = one_in(r, 8) ? rnd(r) : below(r, 24);
		break;
	}
}

static void op_routing(struct storm *s)
{
	struct kvm_irq_routing *rt;
	struct rng *r = s->r;
	uint32_t nr, n, i;
	size_t len;

	switch (below(r, 8)) {
	case 0:
		nr = 0;
		break;
	case 1:
		nr = 24 + below(r, 8);
		break;
	case 2:
		nr = 1024;
		break;
	case 3:
		nr = 4096 + below(r, 2);	/* KVM's limit */
		break;
	case 4:
		nr = wild(r);
		break;
	default:
		nr = 1 + below(r, 8);
		break;
	}
	/* past 1024 entries the kernel reads the read-only pages */
	n = nr < 1024 ? nr : 1024;
	len = sizeof(*rt) + n * sizeof(rt->entries[0]);
	rt = tail(s, len);
	memset(rt, 0, len);
	rt->nr = nr;
	rt->flags = one_in(r, 16) ? rnd(r) : 0;
	for (i = 0; i < n; i++)
		gen_route(r, &rt->entries[i], i);
	xio(vm_fd(s), KVM_SET_GSI_ROUTING, P(rt), C_IRQ);
}

static void op_irqfd(struct storm *s)
{
	struct rng *r = s->r;
	struct kvm_irqfd f;

	memset(&f, 0, sizeof(f));
	f.fd = pick_efd(s);
	f.gsi = rand_gsi(r);
	switch (below(r, 6)) {
	case 0:
		f.flags = KVM_IRQFD_FLAG_DEASSIGN;
		break;
	case 1:
		f.flags = KVM_IRQFD_FLAG_RESAMPLE;
		f.resamplefd = pick_efd(s);
		break;
	case 2:
		f.flags = wild(r);
		f.resamplefd = pick_efd(s);
		break;
	default:
		break;
	}
	if (one_in(r, 16))
		fill(r, f.pad, sizeof(f.pad));
	xio(vm_fd(s), KVM_IRQFD, P(&f), C_IRQ);
	if (one_in(r, 2))
		efd_signal(s->efd[below(r, NR_EFDS)]);
	if (one_in(r, 4))
		efd_drain(s->efd[below(r, NR_EFDS)]);
}

static void op_ioeventfd(struct storm *s)
{
	static const uint64_t mmio[] = {
		0x2000, SLOT0_SIZE, SLOT0_SIZE + 0x3000, 0xfec00000,
		0xfee00000, 0x100000000ULL - 0x1000,
	};
	static const uint32_t lens[] = { 0, 1, 2, 4, 8, 3, 16 };
	struct rng *r = s->r;
	struct kvm_ioeventfd e;
	bool pio = one_in(r, 2);

	memset(&e, 0, sizeof(e));
	if (one_in(r, 8))
		e.addr = wild(r);
	else if (pio)
		e.addr = one_in(r, 3) ? OUT_PORT : below(r, 0x10000);
	else
		e.addr = mmio[below(r, ARRAY_SIZE(mmio))];
	e.len = one_in(r, 8) ? wild(r) : lens[below(r, ARRAY_SIZE(lens))];
	e.datamatch = one_in(r, 2) ? below(r, 256) : wild(r);
	e.flags = (pio ? KVM_IOEVENTFD_FLAG_PIO : 0) |
		  (one_in(r, 2) ? KVM_IOEVENTFD_FLAG_DATAMATCH : 0) |
		  (one_in(r, 3) ? KVM_IOEVENTFD_FLAG_DEASSIGN : 0);
	if (one_in(r, 8))
		e.flags = rnd(r);
	e.fd = pick_efd(s);
	if (one_in(r, 16))
		fill(r, e.pad, sizeof(e.pad));
	xio(vm_fd(s), KVM_IOEVENTFD, P(&e), C_IRQ);
}

static void op_msi(struct storm *s)
{
	struct rng *r = s->r;
	struct kvm_msi m;

	memset(&m, 0, sizeof(m));
	m.address_lo = one_in(r, 8) ? rnd(r) :
		       0xfee00000 | below(r, 4) << 12 | below(r, 4) << 2;
	m.address_hi = one_in(r, 8) ? rnd(r) : 0;
	m.data = below(r, 256) | (one_in(r, 3) ? below(r, 8) << 8 : 0) |
		 (one_in(r, 4) ? 3 << 14 : 0);
	m.flags = one_in(r, 16) ? rnd(r) : 0;
	m.devid = one_in(r, 16) ? rnd(r) : 0;
	if (one_in(r, 16))
		fill(r, m.pad, sizeof(m.pad));
	xio(vm_fd(s), KVM_SIGNAL_MSI, P(&m), C_IRQ);
}

static void op_chip_state(struct storm *s)
{
	struct rng *r = s->r;
	struct kvm_irqchip c;
	size_t len;
	int fd = vm_fd(s);

	memset(&c, 0, sizeof(c));
	c.chip_id = one_in(r, 8) ? rnd(r) : below(r, 3);
	if (one_in(r, 6)) {
		fill(r, &c.chip, sizeof(c.chip));
	} else {
		if (xio(fd, KVM_GET_IRQCHIP, P(&c), C_IRQ) || one_in(r, 3))
			return;
		if (c.chip_id == KVM_IRQCHIP_IOAPIC)
			len = sizeof(c.chip.ioapic);
		else if (c.chip_id < KVM_IRQCHIP_IOAPIC)
			len = sizeof(c.chip.pic);
		else
			len = sizeof(c.chip);
		mutate(r, &c.chip, len, 1 + below(r, 4));
	}
	xio(fd, KVM_SET_IRQCHIP, P(&c), C_IRQ);
}

static void op_pit_state(struct storm *s)
{
	static const uint32_t counts[] = { 0, 1, 2, 3, 0xffff, 0x10000 };
	struct kvm_pit_channel_state *ch;
	struct kvm_pit_state2 p;
	struct kvm_pit_state p1;
	struct rng *r = s->r;
	int fd = vm_fd(s);

	if (one_in(r, 6)) {
		if (one_in(r, 2)) {
			xio(fd, KVM_GET_PIT, P(&p1), C_IRQ);
		} else {
			fill(r, &p1, sizeof(p1));
			xio(fd, KVM_SET_PIT, P(&p1), C_IRQ);
		}
		return;
	}
	memset(&p, 0, sizeof(p));
	if (one_in(r, 6)) {
		fill(r, &p, sizeof(p));
	} else {
		if (xio(fd, KVM_GET_PIT2, P(&p), C_IRQ) || one_in(r, 4))
			return;
		ch = &p.channels[below(r, 3)];
		ch->count = one_in(r, 4) ? wild(r) :
			    counts[below(r, ARRAY_SIZE(counts))];
		ch->mode = one_in(r, 8) ? rnd(r) : below(r, 6);
		ch->rw_mode = below(r, 4);
		ch->read_state = below(r, 4);
		ch->write_state = below(r, 4);
		ch->gate = below(r, 2);
		ch->bcd = one_in(r, 8);
		p.flags = one_in(r, 4) ? rnd(r) : below(r, 4);
	}
	xio(fd, KVM_SET_PIT2, P(&p), C_IRQ);
}

static void op_clock(struct storm *s)
{
	struct kvm_clock_data c;
	struct rng *r = s->r;
	int fd = vm_fd(s);

	memset(&c, 0, sizeof(c));
	if (xio(fd, KVM_GET_CLOCK, P(&c), C_VM) && !one_in(r, 4))
		return;
	switch (below(r, 4)) {
	case 0:
		c.clock += below(r, 1000000000);
		break;
	case 1:
		c.clock = wild(r);
		break;
	case 2:
		fill(r, &c, sizeof(c));
		break;
	default:
		break;
	}
	if (one_in(r, 2))
		c.flags = one_in(r, 4) ? wild(r) :
			  rnd(r) & (KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME |
				    KVM_CLOCK_HOST_TSC);
	xio(fd, KVM_SET_CLOCK, P(&c), C_VM);
}

static void op_dirty_log(struct storm *s)
{
	struct kvm_clear_dirty_log cl;
	struct kvm_dirty_log l;
	struct rng *r = s->r;
	uint32_t slot;
	void *bm;

	if (s->nslots && one_in(r, 2))
		slot = s->slots[below(r, s->nslots)].slot;
	else
		slot = one_in(r, 4) ? rand_slot(r) : below(r, 8);
	bm = one_in(r, 8) ? bad_ptr(s) : tail(s, BITMAP_BYTES);
	if (one_in(r, 2)) {
		memset(&l, 0, sizeof(l));
		l.slot = slot;
		l.dirty_bitmap = bm;
		xio(vm_fd(s), KVM_GET_DIRTY_LOG, P(&l), C_LOG);
		return;
	}
	if (bm == tail(s, BITMAP_BYTES))
		memset(bm, one_in(r, 2) ? 0xff : rnd(r), BITMAP_BYTES);
	memset(&cl, 0, sizeof(cl));
	cl.slot = slot;
	cl.first_page = one_in(r, 4) ? wild(r) :
			below(r, 4) * 64 + (one_in(r, 8) ? 1 : 0);
	switch (below(r, 4)) {
	case 0:
		cl.num_pages = wild(r);
		break;
	case 1:
		cl.num_pages = below(r, 20);
		break;
	default:
		cl.num_pages = 64 * (1 + below(r, 4));
		break;
	}
	cl.dirty_bitmap = bm;
	xio(vm_fd(s), KVM_CLEAR_DIRTY_LOG, P(&cl), C_LOG);
}

static void op_enable_cap(struct storm *s)
{
	struct kvm_enable_cap c;
	struct rng *r = s->r;

	memset(&c, 0, sizeof(c));
	if (one_in(r, 3)) {
		c.cap = rand_cap(r);
		fill(r, c.args, sizeof(c.args));
	} else {
		c.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2;
		c.args[0] = one_in(r, 4) ? wild(r) : below(r, 4);
	}
	if (one_in(r, 8))
		c.flags = rnd(r);
	if (one_in(r, 16))
		fill(r, c.pad, sizeof(c.pad));
	xio(vm_fd(s), KVM_ENABLE_CAP, P(&c), C_VM);
}

static void op_vm_misc(struct storm *s)
{
	static const uint64_t tss[] = {
		0xfffbd000, 0x100000000ULL - 3 * 0x1000,
		0x100000000ULL - 2 * 0x1000, 0,
	};
	struct rng *r = s->r;
	uint64_t addr;

	switch (below(r, 4)) {
	case 0:
		xio(vm_fd(s), KVM_SET_TSS_ADDR,
		    one_in(r, 4) ? wild(r) : tss[below(r, ARRAY_SIZE(tss))],
		    C_VM);
		break;
	case 1:
		addr = one_in(r, 2) ? 0xfffbc000 : wild(r);
		xio(vm_fd(s), KVM_SET_IDENTITY_MAP_ADDR, P(&addr), C_VM);
		break;
	case 2:
		xio(vm_fd(s), KVM_SET_BOOT_CPU_ID, one_in(r, 2) ? 0 : wild(r),
		    C_VM);
		break;
	default:
		xio(vm_fd(s), KVM_CHECK_EXTENSION, rand_cap(r), C_VM);
		break;
	}
}

static void op_sys(struct storm *s)
{
	static const uint32_t feature_msrs[] = {
		0x10a, 0x345, 0xc0011029, 0x48, 0x8b, 0x10, 0x480,
	};
	static const uint32_t nents[] = { 0, 1, 8, 255, 256, 257 };
	struct kvm_msr_list *ml;
	struct kvm_cpuid2 *c;
	struct kvm_msrs *m;
	struct rng *r = s->r;
	uint64_t mce;
	uint32_t i, n;
	int fd;

	switch (below(r, 10)) {
	case 0:
		xio(sys_fd, KVM_GET_API_VERSION, one_in(r, 4) ? wild(r) : 0,
		    C_SYS);
		break;
	case 1:
		xio(sys_fd, KVM_CHECK_EXTENSION, rand_cap(r), C_SYS);
		break;
	case 2:
		xio(sys_fd, KVM_GET_VCPU_MMAP_SIZE, one_in(r, 4) ? wild(r) : 0,
		    C_SYS);
		break;
	case 3:
		c = tail(s, sizeof(*c) + 256 * sizeof(c->entries[0]));
		c->nent = one_in(r, 4) ? wild(r) :
			  nents[below(r, ARRAY_SIZE(nents))];
		xio(sys_fd, KVM_GET_SUPPORTED_CPUID, P(c), C_SYS);
		break;
	case 4:
	case 5:
		ml = tail(s, sizeof(*ml) + 1024 * sizeof(ml->indices[0]));
		ml->nmsrs = one_in(r, 4) ? wild(r) : below(r, 2) * 1024;
		xio(sys_fd, below(r, 2) ? KVM_GET_MSR_INDEX_LIST :
		    KVM_GET_MSR_FEATURE_INDEX_LIST, P(ml), C_SYS);
		break;
	case 6:
		n = 1 + below(r, 8);
		m = tail(s, sizeof(*m) + n * sizeof(m->entries[0]));
		memset(m, 0, sizeof(*m) + n * sizeof(m->entries[0]));
		m->nmsrs = n;
		for (i = 0; i < n; i++)
			m->entries[i].index = one_in(r, 4) ? rnd(r) :
				feature_msrs[below(r, ARRAY_SIZE(feature_msrs))];
		xio(sys_fd, KVM_GET_MSRS, P(m), C_SYS);
		break;
	case 7:
		xio(sys_fd, KVM_X86_GET_MCE_CAP_SUPPORTED, P(&mce), C_SYS);
		break;
	case 8:
		/* a VM made and dropped at once, or a type refused */
		fd = xio(sys_fd, KVM_CREATE_VM, one_in(r, 4) ? 0 : wild(r),
			 C_SYS);
		close_fd(&fd);
		break;
	default:
		xio(sys_fd, VIREO_GET_BACKEND, one_in(r, 4) ? wild(r) : 0,
		    C_SYS);
		break;
	}
}

static void add_vcpu(struct storm *s)
{
	struct rng *r = s->r;
	struct vcpu_st *v;
	unsigned long id;

	if (s->nv >= MAX_VCPUS)
		return;
	switch (below(r, 10)) {
	case 0:
		id = max_vcpu_id - 1;
		break;
	case 1:
		id = max_vcpu_id + below(r, 2);	/* refused */
		break;
	case 2:
		id = wild(r);
		break;
	case 3:
		id = below(r, max_vcpu_id);
		break;
	case 4:
		id = s->nv ? s->v[below(r, s->nv)].id : 0;	/* EEXIST */
		break;
	default:
		id = s->nv;
		break;
	}
	v = &s->v[s->nv];
	if (!vcpu_open(s->vm, id, v, r, C_VM))
		return;
	s->nv++;
	if (!one_in(r, 8))
		set_supported_cpuid(v->fd, C_VCPU);
	if (!one_in(r, 4))
		set_entry(v, C_VCPU);
	if (s->irqchip && id && one_in(r, 2))
		set_runnable(v->fd, C_VCPU);
}

static void op_add_vcpu(struct storm *s)
{
	add_vcpu(s);
}

static void op_regs(struct storm *s)
{
	struct kvm_regs regs;
	struct rng *r = s->r;
	int fd = vcpu_fd(s);

	if (one_in(r, 4))
		fill(r, &regs, sizeof(regs));
	else if (xio(fd, KVM_GET_REGS, P(&regs), C_VCPU))
		return;
	else if (one_in(r, 2))
		((uint64_t *)&regs)[below(r, sizeof(regs) / 8)] = wild(r);
	if (!one_in(r, 3))
		xio(fd, KVM_SET_REGS, P(&regs), C_VCPU);
}

static void op_sregs(struct storm *s)
{
	struct kvm_sregs sr;
	struct kvm_segment *segs[] = {
		&sr.cs, &sr.ds, &sr.es, &sr.fs, &sr.gs, &sr.ss, &sr.tr, &sr.ldt,
	};
	struct rng *r = s->r;
	int fd = vcpu_fd(s);

	if (xio(fd, KVM_GET_SREGS, P(&sr), C_VCPU)) {
		if (!one_in(r, 4))
			return;
		fill(r, &sr, sizeof(sr));
	}
	switch (below(r, 9)) {
	case 0:
		sr.cr0 ^= 1ULL << below(r, 32);
		break;
	case 1:
		sr.cr4 ^= 1ULL << below(r, 32);
		break;
	case 2:
		sr.efer ^= 1ULL << below(r, 16);
		break;
	case 3:
		fill(r, segs[below(r, ARRAY_SIZE(segs))], sizeof(sr.cs));
		break;
	case 4:
		sr.apic_base = wild(r);
		break;
	case 5:
		sr.interrupt_bitmap[below(r, 4)] |= 1ULL << below(r, 64);
		break;
	case 6:
		sr.cr2 = wild(r);
		sr.cr3 = wild(r);
		sr.cr8 = one_in(r, 2) ? below(r, 16) : wild(r);
		break;
	case 7:
		fill(r, one_in(r, 2) ? &sr.gdt : &sr.idt, sizeof(sr.gdt));
		break;
	default:
		fill(r, &sr, sizeof(sr));
		break;
	}
	xio(fd, KVM_SET_SREGS, P(&sr), C_VCPU);
}

static void op_fpu(struct storm *s)
{
	size_t xlen = xsave2_size > 4096 && xsave2_size <= (long)POOL_SIZE / 2 ?
		      xsave2_size : 4096;
	struct rng *r = s->r;
	struct kvm_xcrs xc;
	struct kvm_fpu f;
	uint8_t *x;
	int fd = vcpu_fd(s);

	switch (below(r, 6)) {
	case 0:
		if (xio(fd, KVM_GET_FPU, P(&f), C_VCPU))
			break;
		f.mxcsr = one_in(r, 2) ? rnd(r) : 0x1f80 | below(r, 64);
		f.fcw = rnd(r);
		f.ftwx = rnd(r);
		xio(fd, KVM_SET_FPU, P(&f), C_VCPU);
		break;
	case 1:
	case 2:
		x = tail(s, xlen);
		if (xio(fd, below(r, 2) && xlen > 4096 ? KVM_GET_XSAVE2 :
			KVM_GET_XSAVE, P(x), C_VCPU))
			break;
		/* the header (XSTATE_BV, XCOMP_BV) most of the time */
		if (one_in(r, 2))
			x[512 + below(r, 64)] = rnd(r);
		else
			mutate(r, x, 4096, 1 + below(r, 4));
		xio(fd, KVM_SET_XSAVE, P(x), C_VCPU);
		break;
	case 3:
		if (xio(fd, KVM_GET_XCRS, P(&xc), C_VCPU) && !one_in(r, 4))
			break;
		xc.nr_xcrs = one_in(r, 4) ? wild(r) : below(r, 3);
		xc.flags = one_in(r, 8) ? rnd(r) : 0;
		xc.xcrs[0].xcr = one_in(r, 4) ? rnd(r) : 0;
		xc.xcrs[0].value = one_in(r, 3) ? wild(r) : 1 | (rnd(r) & 0x2e7);
		xio(fd, KVM_SET_XCRS, P(&xc), C_VCPU);
		break;
	case 4:
		fill(r, &f, sizeof(f));
		xio(fd, KVM_SET_FPU, P(&f), C_VCPU);
		break;
	default:
		x = tail(s, xlen);
		fill(r, x, xlen);
		if (one_in(r, 2)) {
			memset(x + 512, 0, 64);
			x[512] = below(r, 8);
		}
		xio(fd, KVM_SET_XSAVE, P(x), C_VCPU);
		break;
	}
}

static void op_debug(struct storm *s)
{
	struct kvm_guest_debug g;
	struct kvm_debugregs d;
	struct rng *r = s->r;
	int fd = vcpu_fd(s), i;

	switch (below(r, 3)) {
	case 0:
		if (xio(fd, KVM_GET_DEBUGREGS, P(&d), C_VCPU))
			break;
		d.db[below(r, 4)] = one_in(r, 2) ? wild(r) : CODE;
		d.dr6 = one_in(r, 2) ? wild(r) : 0xffff0ff0 | below(r, 16);
		d.dr7 = one_in(r, 2) ? wild(r) : 0x400 | (rnd(r) & 0xffff00ff);
		if (one_in(r, 8))
			d.flags = rnd(r);
		if (one_in(r, 8))
			fill(r, d.reserved, sizeof(d.reserved));
		xio(fd, KVM_SET_DEBUGREGS, P(&d), C_VCPU);
		break;
	case 1:
		memset(&g, 0, sizeof(g));
		g.control = one_in(r, 4) ? (uint32_t)rnd(r) :
			    rnd(r) & (KVM_GUESTDBG_ENABLE |
				      KVM_GUESTDBG_SINGLESTEP |
				      KVM_GUESTDBG_USE_SW_BP |
				      KVM_GUESTDBG_USE_HW_BP |
				      KVM_GUESTDBG_INJECT_DB |
				      KVM_GUESTDBG_INJECT_BP);
		for (i = 0; i < 4; i++)
			g.arch.debugreg[i] = one_in(r, 2) ? wild(r) :
					     CODE + below(r, NR_GUESTS) *
					     GUEST_STRIDE;
		g.arch.debugreg[6] = wild(r);
		g.arch.debugreg[7] = one_in(r, 4) ? wild(r) :
				     0x400 | (rnd(r) & 0xffff00ff);
		xio(fd, KVM_SET_GUEST_DEBUG, P(&g), C_VCPU);
		break;
	default:
		memset(&g, 0, sizeof(g));
		xio(fd, KVM_SET_GUEST_DEBUG, P(&g), C_VCPU);
		break;
	}
}

static void op_events(struct storm *s)
{
	struct kvm_vcpu_events e;
	struct kvm_interrupt irq;
	struct kvm_mp_state mp;
	struct rng *r = s->r;
	int fd = vcpu_fd(s);

	switch (below(r, 6)) {
	case 0:
	case 1:
		if (xio(fd, KVM_GET_VCPU_EVENTS, P(&e), C_VCPU)) {
			if (!one_in(r, 4))
				break;
			fill(r, &e, sizeof(e));
		}
		switch (below(r, 6)) {
		case 0:
			e.exception.injected = below(r, 2);
			e.exception.pending = below(r, 2);
			e.exception.nr = below(r, 32);
			e.exception.has_error_code = below(r, 2);
			e.exception.error_code = rnd(r);
			break;
		case 1:
			e.interrupt.injected = below(r, 2);
			e.interrupt.nr = rnd(r);
			e.interrupt.soft = below(r, 2);
			e.interrupt.shadow = below(r, 4);
			break;
		case 2:
			e.nmi.injected = below(r, 2);
			e.nmi.pending = below(r, 2);
			e.nmi.masked = below(r, 2);
			break;
		case 3:
			e.flags = one_in(r, 4) ? rnd(r) : below(r, 64);
			e.sipi_vector = below(r, 256);
			e.smi.smm = below(r, 2);
			e.smi.pending = below(r, 2);
			e.triple_fault.pending = below(r, 2);
			e.exception_has_payload = below(r, 2);
			e.exception_payload = wild(r);
			break;
		case 4:
			fill(r, e.reserved, sizeof(e.reserved));
			break;
		default:
			fill(r, &e, sizeof(e));
			break;
		}
		xio(fd, KVM_SET_VCPU_EVENTS, P(&e), C_VCPU);
		break;
	case 2:
		irq.irq = one_in(r, 4) ? wild(r) : below(r, 256);
		xio(fd, KVM_INTERRUPT, P(&irq), C_VCPU);
		break;
	case 3:
		xio(fd, KVM_NMI, 0, C_VCPU);
		break;
	case 4:
		mp.mp_state = one_in(r, 4) ? wild(r) : below(r, 6);
		xio(fd, KVM_SET_MP_STATE, P(&mp), C_VCPU);
		break;
	default:
		xio(fd, KVM_GET_MP_STATE, P(&mp), C_VCPU);
		break;
	}
}

static uint32_t lapic_value(struct rng *r, uint16_t reg)
{
	if (one_in(r, 3))
		return rnd(r);
	switch (reg) {
	case 0x320 ... 0x370:	/* LVT: vector, mode, mask, timer mode */
		return (0x20 + below(r, 0xe0)) | below(r, 8) << 8 |
		       below(r, 2) << 16 | below(r, 3) << 17;
	case 0x380:		/* initial count */
		return one_in(r, 2) ? below(r, 100) : rnd(r);
	case 0x3e0:		/* divide */
		return below(r, 16);
	case 0xf0:		/* spurious: enabled */
		return 0x100 | below(r, 256);
	case 0x300:		/* ICR */
		return below(r, 256) | below(r, 8) << 8 | below(r, 4) << 18;
	default:
		return below(r, 256) << (one_in(r, 2) ? 24 : 0);
	}
}

static void op_lapic(struct storm *s)
{
	static const uint16_t regs[] = {
		0x20, 0x30, 0x80, 0xb0, 0xd0, 0xe0, 0xf0, 0x100, 0x180, 0x200,
		0x280, 0x300, 0x310, 0x320, 0x330, 0x340, 0x350, 0x360, 0x370,
		0x380, 0x390, 0x3e0,
	};
	struct kvm_lapic_state l;
	struct rng *r = s->r;
	int fd = vcpu_fd(s), n;
	uint32_t val;
	uint16_t reg;

	if (one_in(r, 6)) {
		fill(r, &l, sizeof(l));
	} else {
		if (xio(fd, KVM_GET_LAPIC, P(&l), C_VCPU) || one_in(r, 4))
			return;
		for (n = 1 + below(r, 3); n > 0; n--) {
			reg = regs[below(r, ARRAY_SIZE(regs))];
			val = lapic_value(r, reg);
			memcpy(&l.regs[reg], &val, sizeof(val));
		}
	}
	xio(fd, KVM_SET_LAPIC, P(&l), C_VCPU);
}

static void op_msrs(struct storm *s)
{
	static const uint32_t idx[] = {
		0x10, 0x1b, 0x3a, 0x48, 0x8b, 0xfe, 0x174, 0x175, 0x176,
		0x179, 0x17a, 0x17b, 0x1d9, 0x200, 0x201, 0x250, 0x277, 0x2ff,
		0x400, 0x401, 0x402, 0x403, 0x47c, 0x480, 0x6e0, 0x800, 0x808,
		0x80b, 0x830, 0x838, 0xc0000080, 0xc0000081, 0xc0000082,
		0xc0000083, 0xc0000084, 0xc0000100, 0xc0000101, 0xc0000102,
		0xc0000103, 0xc0010000, 0xc0010004, 0xc0010015, 0xc0010114,
		0xc0010117, 0x4b564d00, 0x4b564d01, 0x4b564d02, 0x4b564d03,
		0x4b564d04, 0x11, 0x12, 0x40000000, 0xffffffff,
	};
	struct kvm_msr_entry *e;
	struct kvm_msrs *m;
	struct rng *r = s->r;
	uint32_t n, fill_n, i;
	int fd = vcpu_fd(s);
	size_t len;

	switch (below(r, 8)) {
	case 0:
		n = 0;
		break;
	case 1:
		n = 255 + below(r, 3);		/* KVM's limit is 256 */
		break;
	case 2:
		n = wild(r);
		break;
	default:
		n = 1 + below(r, 16);
		break;
	}
	fill_n = n < 256 ? n : 256;
	len = sizeof(*m) + fill_n * sizeof(m->entries[0]);
	m = tail(s, len);
	memset(m, 0, len);
	m->nmsrs = n;
	m->pad = one_in(r, 16) ? rnd(r) : 0;
	for (i = 0; i < fill_n; i++) {
		e = &m->entries[i];
		e->index = one_in(r, 4) ? rnd(r) : idx[below(r, ARRAY_SIZE(idx))];
		e->reserved = one_in(r, 16) ? rnd(r) : 0;
		e->data = wild(r);
	}
	if (one_in(r, 2)) {
		xio(fd, KVM_GET_MSRS, P(m), C_VCPU);
		return;
	}
	if (one_in(r, 2) && xio(fd, KVM_GET_MSRS, P(m), C_VCPU) > 0) {
		/* what was read, with a bit flipped here and there */
		for (i = 0; i < fill_n; i++)
			if (one_in(r, 2))
				m->entries[i].data ^= 1ULL << below(r, 64);
	}
	xio(fd, KVM_SET_MSRS, P(m), C_VCPU);
}

static void op_cpuid(struct storm *s)
{
	static const uint32_t nents[] = { 0, 1, 2, 8, 256, 257 };
	struct kvm_cpuid_entry2 *e;
	struct kvm_cpuid2 *c;
	struct rng *r = s->r;
	uint32_t n, fill_n, i;
	int fd = vcpu_fd(s);

	c = tail(s, sizeof(*c) + 257 * sizeof(c->entries[0]));
	switch (below(r, 4)) {
	case 0:
		/* the supported table with a bit or two changed */
		memcpy(c, &supported, sizeof(supported));
		for (i = 1 + below(r, 3); i && supported.h.nent; i--) {
			e = &c->entries[below(r, supported.h.nent)];
			switch (below(r, 5)) {
			case 0:
				e->eax ^= 1u << below(r, 32);
				break;
			case 1:
				e->ebx ^= 1u << below(r, 32);
				break;
			case 2:
				e->ecx ^= 1u << below(r, 32);
				break;
			case 3:
				e->edx ^= 1u << below(r, 32);
				break;
			default:
				e->function = rnd(r);
				break;
			}
		}
		xio(fd, KVM_SET_CPUID2, P(c), C_VCPU);
		break;
	case 1:
		n = one_in(r, 4) ? wild(r) : nents[below(r, ARRAY_SIZE(nents))];
		fill_n = n < 257 ? n : 257;
		c->nent = n;
		c->padding = one_in(r, 8) ? rnd(r) : 0;
		fill(r, c->entries, fill_n * sizeof(c->entries[0]));
		for (i = 0; i < fill_n && one_in(r, 2); i++)
			c->entries[i].function = one_in(r, 2) ? below(r, 0x20) :
						 0x80000000 + below(r, 0x20);
		xio(fd, KVM_SET_CPUID2, P(c), C_VCPU);
		break;
	default:
		c->nent = one_in(r, 4) ? wild(r) :
			  one_in(r, 2) ? supported.h.nent :
			  nents[below(r, ARRAY_SIZE(nents))];
		if (c->nent > 257 && one_in(r, 2))
			c->nent = 256;
		xio(fd, KVM_GET_CPUID2, P(c), C_VCPU);
		break;
	}
}

static void op_tsc_mce(struct storm *s)
{
	uint32_t buf[8];
	struct kvm_signal_mask *sm = (struct kvm_signal_mask *)buf;
	struct kvm_vapic_addr va;
	struct rng *r = s->r;
	int fd = vcpu_fd(s), khz;
	unsigned long arg;
	uint64_t mcg;

	switch (below(r, 6)) {
	case 0:
		xio(fd, KVM_GET_TSC_KHZ, 0, C_VCPU);
		break;
	case 1:
		khz = xio(fd, KVM_GET_TSC_KHZ, 0, C_VCPU);
		switch (below(r, 6)) {
		case 0:
			arg = khz;
			break;
		case 1:
			arg = khz * 2UL;
			break;
		case 2:
			arg = khz / 2 + 1;
			break;
		case 3:
			arg = below(r, 2);
			break;
		default:
			arg = wild(r);
			break;
		}
		xio(fd, KVM_SET_TSC_KHZ, arg, C_VCPU);
		break;
	case 2:
		mcg = one_in(r, 3) ? wild(r) :
		      below(r, 40) | (rnd(r) & (1 << 8 | 1 << 9 | 1 << 10 |
						1 << 24 | 1 << 27));
		xio(fd, KVM_X86_SETUP_MCE, P(&mcg), C_VCPU);
		break;
	case 3:
		/* never one that blocks SIGALRM: KVM_RUN must come out */
		memset(buf, 0, sizeof(buf));
		sm->len = one_in(r, 4) ? wild(r) : 8;
		fill(r, sm->sigset, 16);
		sm->sigset[(SIGALRM - 1) / 8] &= ~(1 << ((SIGALRM - 1) % 8));
		xio(fd, KVM_SET_SIGNAL_MASK, one_in(r, 8) ? 0 : P(sm), C_VCPU);
		break;
	case 4:
		va.vapic_addr = one_in(r, 2) ? (uint64_t)below(r, 16) << 12 :
			       wild(r);
		xio(fd, KVM_SET_VAPIC_ADDR, P(&va), C_VCPU);
		break;
	default:
		xio(fd, KVM_X86_SETUP_MCE, P(bad_ptr(s)), C_BAD);
		break;
	}
}

static void op_run(struct storm *s)
{
	struct vcpu_st *v = pick_vcpu(s);
	struct rng *r = s->r;
	int i, n;

	if (!v)
		return;
	if (!one_in(r, 4) && v->fd >= 0)
		set_entry(v, C_VCPU);
	if (one_in(r, 12))
		fill(r, s->buf + v->rip, 64);	/* a random guest */
	else if (one_in(r, 6))
		guest_image(s->buf);
	for (n = 1 + below(r, 4), i = 0; i < n; i++) {
		if (v->run)
			v->run->immediate_exit = one_in(r, 6);
		if (do_run(v, one_in(r, 16) ? wild(r) : 0, C_RUN) &&
		    errno != EINTR)
			break;
		if (v->run)
			v->run->immediate_exit = 0;
		answer_exit(r, v);
	}
	if (v->run)
		v->run->immediate_exit = 0;
}

static void op_bad_ptr(struct storm *s)
{
	const struct ioc *io;
	int fd;

	/* KVM_SET_SIGNAL_MASK could read a mask that blocks SIGALRM */
	do {
		io = &iocs[below(s->r, ARRAY_SIZE(iocs))];
	} while (!io->ptr || io->req == KVM_SET_SIGNAL_MASK);
	if (io->kind == K_SYS)
		fd = sys_fd;
	else if (io->kind == K_VM)
		fd = vm_fd(s);
	else
		fd = vcpu_fd(s);
	xio(fd, io->req, P(bad_ptr(s)), C_BAD);
}

/*
 * Numbers an unknown ioctl stays off even with random direction and
 * size: they create fds, point guests at memory, or mask signals.
 */
static bool reserved_nr(uint32_t nr)
{
	static const uint8_t nrs[] = {
		0x01, 0x41, 0x46, 0x49, 0x80, 0x8b, 0xce, 0xd4, 0xe0,
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(nrs); i++)
		if (nrs[i] == nr)
			return true;
	return false;
}

static void op_unknown(struct storm *s)
{
	struct rng *r = s->r;
	uint32_t nr, dir, size;
	unsigned long req;
	uint8_t *scratch;
	int fd;

	do {
		nr = below(r, 256);
	} while (reserved_nr(nr));
	dir = below(r, 4);
	size = one_in(r, 2) ? below(r, 64) * 8 : below(r, 1 << 14);
	req = _IOC(dir, one_in(r, 8) ? VIREOIO : KVMIO, nr, size);
	scratch = tail(s, 1 << 14);
	fill(r, scratch, size);
	switch (below(r, 3)) {
	case 0:
		fd = sys_fd;
		break;
	case 1:
		fd = vm_fd(s);
		break;
	default:
		fd = vcpu_fd(s);
		break;
	}
	xio(fd, req, one_in(r, 4) ? wild(r) : P(scratch), C_UNKNOWN);
}

/* The vCPU fd mapped at other offsets and sizes; only real pages touched */
static void op_mmap(struct storm *s)
{
	struct vcpu_st *v = pick_vcpu(s);
	struct rng *r = s->r;
	uint32_t pages, off, j;
	uint8_t *p;
	int prot;

	if (!v || v->fd < 0)
		return;
	pages = 1 + below(r, 3);
	off = below(r, 3);
	prot = one_in(r, 3) ? PROT_READ : PROT_READ | PROT_WRITE;
	add(&st.mmaps);
	p = mmap(NULL, pages * 4096UL, prot,
		 one_in(r, 4) ? MAP_PRIVATE : MAP_SHARED, v->fd, off * 4096UL);
	if (p == MAP_FAILED)
		return;
	add(&st.mmaps_ok);
	for (j = 0; j < pages && (off + j) * 4096L < run_size; j++) {
		if (prot & PROT_WRITE)
			__atomic_store_n(&p[j * 4096 + 4095], rnd(r),
					 __ATOMIC_RELAXED);
		else
			(void)__atomic_load_n(&p[j * 4096], __ATOMIC_RELAXED);
	}
	munmap(p, pages * 4096UL);
}

static void op_close_vcpu(struct storm *s)
{
	struct vcpu_st *v = pick_vcpu(s);

	/* its kvm_run stays mapped until the end */
	if (v)
		close_fd(&v->fd);
}

/* Random bytes in what the kernel might read from kvm_run */
static void op_scribble(struct storm *s)
{
	struct vcpu_st *v = pick_vcpu(s);
	struct rng *r = s->r;
	struct kvm_run *run;

	if (!v || !v->run)
		return;
	run = v->run;
	switch (below(r, 5)) {
	case 0:
		run->request_interrupt_window = below(r, 2);
		break;
	case 1:
		fill(r, &run->io, sizeof(run->io));
		break;
	case 2:
		fill(r, &run->mmio, sizeof(run->mmio));
		break;
	case 3:
		run->kvm_valid_regs = rnd(r);
		run->kvm_dirty_regs = rnd(r);
		break;
	default:
		if (run_size >= 8192)
			fill(r, (uint8_t *)run + 4096, 4096);
		break;
	}
}

static const struct {
	void (*fn)(struct storm *s);
	int weight;
} ops[] = {
	{ op_region, 6 }, { op_irqchip, 1 }, { op_pit, 2 },
	{ op_irq_line, 3 }, { op_routing, 3 }, { op_irqfd, 4 },
	{ op_ioeventfd, 3 }, { op_msi, 2 }, { op_chip_state, 3 },
	{ op_pit_state, 2 }, { op_clock, 2 }, { op_dirty_log, 4 },
	{ op_enable_cap, 2 }, { op_vm_misc, 3 }, { op_sys, 2 },
	{ op_add_vcpu, 1 }, { op_regs, 3 }, { op_sregs, 3 }, { op_fpu, 3 },
	{ op_debug, 2 }, { op_events, 3 }, { op_lapic, 2 }, { op_msrs, 3 },
	{ op_cpuid, 2 }, { op_tsc_mce, 2 }, { op_run, 7 }, { op_bad_ptr, 3 },
	{ op_unknown, 2 }, { op_mmap, 1 }, { op_close_vcpu, 1 },
	{ op_scribble, 1 },
};

static void random_op(struct storm *s)
{
	int total = 0, w;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(ops); i++)
		total += ops[i].weight;
	w = below(s->r, total);
	for (i = 0; w >= ops[i].weight; i++)
		w -= ops[i].weight;
	ops[i].fn(s);
}

/* Everything closed and unmapped, in a random order */
static void storm_teardown(struct storm *s)
{
	enum { A_VCPU = 0, A_RUN = 8, A_VM = 16, A_MEM = 17, A_EFD = 20 };
	int order[2 * MAX_VCPUS + 2 + NR_EFDS], n = 0, i, k;

	for (i = 0; i < s->nv; i++) {
		order[n++] = A_VCPU + i;
		order[n++] = A_RUN + i;
	}
	order[n++] = A_VM;
	order[n++] = A_MEM;
	for (i = 0; i < NR_EFDS; i++)
		order[n++] = A_EFD + i;
	shuffle(s->r, order, n);
	for (i = 0; i < n; i++) {
		k = order[i];
		if (k < A_RUN)
			close_fd(&s->v[k - A_VCPU].fd);
		else if (k < A_VM)
			unmap_run(&s->v[k - A_RUN]);
		else if (k == A_VM)
			close_fd(&s->vm);
		else if (k == A_MEM)
			mem_free(&s->buf);
		else
			close_fd(&s->efd[k - A_EFD]);
	}
}

static void storm(struct rng *r)
{
	struct kvm_userspace_memory_region m;
	struct storm s;
	int i, n, devfd = sys_fd;

	memset(&s, 0, sizeof(s));
	s.r = r;
	s.vm = -1;
	for (i = 0; i < NR_EFDS; i++)
		s.efd[i] = -1;
	s.buf = mem_alloc(one_in(r, 4));
	if (!s.buf) {
		setup_failed(S_STORM, "memory");
		return;
	}
	/* now and then from a /dev fd of its own, closed at once */
	if (one_in(r, 8)) {
		devfd = open(dev, O_RDWR | O_CLOEXEC);
		if (devfd < 0)
			devfd = sys_fd;
	}
	s.vm = new_vm(devfd, C_SYS);
	if (devfd != sys_fd)
		close(devfd);
	if (s.vm < 0) {
		setup_failed(S_STORM, "KVM_CREATE_VM");
		goto out;
	}
	for (i = 0; i < NR_EFDS; i++)
		s.efd[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (!one_in(r, 8)) {
		memset(&m, 0, sizeof(m));
		m.flags = one_in(r, 6) ? KVM_MEM_LOG_DIRTY_PAGES : 0;
		m.memory_size = SLOT0_SIZE;
		m.userspace_addr = (uintptr_t)s.buf;
		if (!set_region(s.vm, &m, s.buf, C_MEM))
			remember_slot(&s, &m);
	}
	if (one_in(r, 2) && !xio(s.vm, KVM_CREATE_IRQCHIP, 0, C_IRQ))
		s.irqchip = true;
	for (n = 1 + below(r, MAX_VCPUS), i = 0; i < n; i++)
		add_vcpu(&s);
	/* or an irqchip only after the vCPUs */
	if (!s.irqchip && one_in(r, 4) &&
	    !xio(s.vm, KVM_CREATE_IRQCHIP, 0, C_IRQ))
		s.irqchip = true;
	for (n = below(r, 6), i = 0; i < n; i++)
		op_region(&s);
	for (n = 20 + below(r, 41), i = 0; i < n && !past_deadline(); i++)
		random_op(&s);
out:
	storm_teardown(&s);
}

/* ==== scenario 2: races under running vCPUs ==== */

struct race;

struct racer {
	struct race *rc;
	pthread_t t;
	struct rng r;
	int i;			/* the runners' vCPU */
	int done;		/* set as the thread returns */
	bool started;
};

struct race {
	int vm;
	uint8_t *buf;
	int nv;
	struct vcpu_st v[RACE_VCPUS];
	/* closed under the threads: the vCPUs', the VM's, the eventfds */
	bool closed[RACE_VCPUS + 1 + NR_EFDS];
	int efd[NR_EFDS];
	uint32_t slot0_flags;
	int stop;
	int nth;
	struct racer th[RACE_VCPUS + 2];
};

static bool race_stopped(struct race *rc)
{
	return __atomic_load_n(&rc->stop, __ATOMIC_ACQUIRE);
}

static void racer_done(struct racer *me)
{
	__atomic_store_n(&me->done, 1, __ATOMIC_RELEASE);
}

static void racer_vcpu_ioctl(struct rng *r, struct vcpu_st *v)
{
	struct kvm_vcpu_events ev;
	struct kvm_interrupt irq;
	struct kvm_sregs sr;
	struct kvm_mp_state mp;
	struct kvm_regs regs;

	switch (below(r, 6)) {
	case 0:
		xio(v->fd, KVM_GET_REGS, P(&regs), C_VCPU);
		break;
	case 1:
		xio(v->fd, KVM_GET_SREGS, P(&sr), C_VCPU);
		break;
	case 2:
		xio(v->fd, KVM_GET_VCPU_EVENTS, P(&ev), C_VCPU);
		break;
	case 3:
		xio(v->fd, KVM_NMI, 0, C_VCPU);
		break;
	case 4:
		irq.irq = 0x20 + below(r, 0x20);
		xio(v->fd, KVM_INTERRUPT, P(&irq), C_VCPU);
		break;
	default:
		xio(v->fd, KVM_GET_MP_STATE, P(&mp), C_VCPU);
		break;
	}
}

static void *race_runner(void *arg)
{
	struct racer *me = arg;
	struct vcpu_st *v = &me->rc->v[me->i];
	struct rng *r = &me->r;
	int ebadf = 0;

	while (!race_stopped(me->rc) && ebadf < 3) {
		if (one_in(r, 8))
			racer_vcpu_ioctl(r, v);
		if (do_run(v, 0, C_RUN)) {
			if (errno == EBADF)
				ebadf++;
			continue;
		}
		if (v->run->exit_reason != KVM_EXIT_IO || one_in(r, 64))
			set_entry(v, C_VCPU);
		answer_exit(r, v);
	}
	racer_done(me);
	return NULL;
}

static void *race_mem(void *arg)
{
	struct racer *me = arg;
	struct race *rc = me->rc;
	struct kvm_userspace_memory_region sl[3], m;
	struct kvm_clear_dirty_log cl;
	struct kvm_dirty_log dl;
	struct rng *r = &me->r;
	uint64_t bitmap[64];
	bool on[3] = { true, false, false };
	int k;

	/* slot 0 holds the guests; 1 and 2 are pool memory above 1 MiB */
	memset(sl, 0, sizeof(sl));
	sl[0].flags = rc->slot0_flags;
	sl[0].memory_size = SLOT0_SIZE;
	sl[0].userspace_addr = (uintptr_t)rc->buf;
	sl[1].slot = 1;
	sl[1].guest_phys_addr = 0x100000;
	sl[1].memory_size = 0x10000;
	sl[1].userspace_addr = (uintptr_t)rc->buf + POOL_OFF;
	sl[2].slot = 2;
	sl[2].guest_phys_addr = 0x300000;
	sl[2].memory_size = 0x8000;
	sl[2].userspace_addr = (uintptr_t)rc->buf + POOL_OFF + 0x10000;
	while (!race_stopped(rc)) {
		k = one_in(r, 4) ? 0 : 1 + below(r, 2);
		switch (below(r, 8)) {
		case 0:
			/* add, or move between two addresses */
			if (on[k] && k)
				sl[k].guest_phys_addr ^= 0x400000;
			if (!on[k] || k)
				on[k] = !set_region(rc->vm, &sl[k], rc->buf,
						    C_MEM);
			break;
		case 1:
			/* delete; slot 0 comes back at once */
			m = sl[k];
			m.memory_size = 0;
			if (!set_region(rc->vm, &m, rc->buf, C_MEM))
				on[k] = false;
			if (!k)
				on[k] = !set_region(rc->vm, &sl[k], rc->buf,
						    C_MEM);
			break;
		case 2:
			/* dirty logging on or off */
			sl[k].flags ^= KVM_MEM_LOG_DIRTY_PAGES;
			if (on[k] && set_region(rc->vm, &sl[k], rc->buf, C_MEM))
				sl[k].flags ^= KVM_MEM_LOG_DIRTY_PAGES;
			break;
		case 3:
		case 4:
			memset(&dl, 0, sizeof(dl));
			dl.slot = k;
			dl.dirty_bitmap = bitmap;
			xio(rc->vm, KVM_GET_DIRTY_LOG, P(&dl), C_LOG);
			break;
		case 5:
			memset(bitmap, 0xff, sizeof(bitmap));
			memset(&cl, 0, sizeof(cl));
			cl.slot = k;
			cl.num_pages = sl[k].memory_size >> 12;
			cl.dirty_bitmap = bitmap;
			xio(rc->vm, KVM_CLEAR_DIRTY_LOG, P(&cl), C_LOG);
			break;
		case 6:
			/* a random slot, away from the guests' page */
			gen_region(r, &m, rc->buf);
			if ((m.slot & 0xffff) < 3)
				m.slot += 3;
			if (m.guest_phys_addr < 0x100000)
				m.guest_phys_addr += 0x100000;
			set_region(rc->vm, &m, rc->buf, C_MEM);
			break;
		default:
			sleep_us(below(r, 300));
			break;
		}
	}
	racer_done(me);
	return NULL;
}

static void *race_irq(void *arg)
{
	struct racer *me = arg;
	struct race *rc = me->rc;
	struct rng *r = &me->r;
	struct {
		struct kvm_irq_routing h;
		struct kvm_irq_routing_entry e[25];
	} rt;
	struct kvm_ioeventfd io;
	struct kvm_irq_level l;
	struct kvm_irqfd f;
	struct kvm_msi msi;
	int e, i;

	while (!race_stopped(rc)) {
		e = rc->efd[below(r, NR_EFDS)];
		switch (below(r, 9)) {
		case 0:
		case 1:
			memset(&f, 0, sizeof(f));
			f.fd = e;
			f.gsi = below(r, 24);
			if (below(r, 2)) {
				f.flags = KVM_IRQFD_FLAG_DEASSIGN;
			} else if (one_in(r, 3)) {
				f.flags = KVM_IRQFD_FLAG_RESAMPLE;
				f.resamplefd = rc->efd[below(r, NR_EFDS)];
			}
			xio(rc->vm, KVM_IRQFD, P(&f), C_IRQ);
			break;
		case 2:
			efd_signal(e);
			break;
		case 3:
			memset(&l, 0, sizeof(l));
			l.irq = below(r, 24);
			l.level = below(r, 2);
			xio(rc->vm, KVM_IRQ_LINE_STATUS, P(&l), C_IRQ);
			break;
		case 4:
			memset(&msi, 0, sizeof(msi));
			msi.address_lo = 0xfee00000 | below(r, rc->nv) << 12;
			msi.data = 0x20 + below(r, 0xd0);
			xio(rc->vm, KVM_SIGNAL_MSI, P(&msi), C_IRQ);
			break;
		case 5:
			memset(&io, 0, sizeof(io));
			io.addr = one_in(r, 2) ? OUT_PORT : 0x60 + below(r, 4);
			io.len = 1;
			io.fd = e;
			io.flags = KVM_IOEVENTFD_FLAG_PIO |
				   (below(r, 2) ? KVM_IOEVENTFD_FLAG_DEASSIGN : 0);
			xio(rc->vm, KVM_IOEVENTFD, P(&io), C_IRQ);
			break;
		case 6:
			for (i = 0; i < NR_EFDS; i++)
				efd_drain(rc->efd[i]);
			break;
		case 7:
			/* the default-like pins, and one MSI */
			memset(&rt, 0, sizeof(rt));
			rt.h.nr = 25;
			for (i = 0; i < 24; i++) {
				rt.e[i].gsi = i;
				rt.e[i].type = KVM_IRQ_ROUTING_IRQCHIP;
				rt.e[i].u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
				rt.e[i].u.irqchip.pin = i;
			}
			rt.e[24].gsi = 24 + below(r, 8);
			rt.e[24].type = KVM_IRQ_ROUTING_MSI;
			rt.e[24].u.msi.address_lo = 0xfee00000;
			rt.e[24].u.msi.data = 0x20 + below(r, 0xd0);
			xio(rc->vm, KVM_SET_GSI_ROUTING, P(&rt), C_IRQ);
			break;
		default:
			sleep_us(below(r, 300));
			break;
		}
	}
	racer_done(me);
	return NULL;
}

static char hung_why[160];

static __noreturn void finish(const char *hung);

/* Stop and join every thread; one that will not stop ends the test. */
static void race_join(struct race *rc)
{
	long long give_up = now_ms() + JOIN_WAIT_MS;
	struct racer *t;
	int k;

	__atomic_store_n(&rc->stop, 1, __ATOMIC_RELEASE);
	for (k = 0; k < rc->nth; k++) {
		t = &rc->th[k];
		if (!t->started)
			continue;
		while (!__atomic_load_n(&t->done, __ATOMIC_ACQUIRE)) {
			if (now_ms() > give_up) {
				add(&st.hung_threads);
				snprintf(hung_why, sizeof(hung_why),
					 "iteration %ld (race): thread %d did not stop in %d ms",
					 cur_iter, k, JOIN_WAIT_MS);
				finish(hung_why);
			}
			pthread_kill(t->t, SIGALRM);
			sleep_us(1000);
		}
		pthread_join(t->t, NULL);
	}
}

static void kick_runners(struct race *rc, struct rng *r)
{
	int i;

	for (i = 0; i < rc->nv; i++)
		if (rc->th[i].started && one_in(r, 2))
			pthread_kill(rc->th[i].t, SIGALRM);
}

static bool race_setup(struct race *rc, struct rng *r)
{
	struct kvm_userspace_memory_region m;
	struct kvm_enable_cap cap;
	struct kvm_pit_config pc;
	bool irqchip;
	int i;

	rc->buf = mem_alloc(false);
	if (!rc->buf)
		return false;
	rc->vm = new_vm(sys_fd, C_SYS);
	if (rc->vm < 0)
		return false;
	memset(&m, 0, sizeof(m));
	rc->slot0_flags = one_in(r, 3) ? KVM_MEM_LOG_DIRTY_PAGES : 0;
	m.flags = rc->slot0_flags;
	m.memory_size = SLOT0_SIZE;
	m.userspace_addr = (uintptr_t)rc->buf;
	if (set_region(rc->vm, &m, rc->buf, C_MEM))
		return false;
	if (one_in(r, 3)) {
		memset(&cap, 0, sizeof(cap));
		cap.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2;
		cap.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;
		xio(rc->vm, KVM_ENABLE_CAP, P(&cap), C_VM);
	}
	irqchip = one_in(r, 2) && !xio(rc->vm, KVM_CREATE_IRQCHIP, 0, C_IRQ);
	if (irqchip && one_in(r, 2)) {
		memset(&pc, 0, sizeof(pc));
		xio(rc->vm, KVM_CREATE_PIT2, P(&pc), C_IRQ);
	}
	for (rc->nv = 2 + below(r, RACE_VCPUS - 1), i = 0; i < rc->nv; i++) {
		if (!vcpu_open(rc->vm, i, &rc->v[i], r, C_VM))
			return false;
		if (!rc->v[i].run)
			return false;
		set_supported_cpuid(rc->v[i].fd, C_VCPU);
		set_entry(&rc->v[i], C_VCPU);
		if (irqchip && i)
			set_runnable(rc->v[i].fd, C_VCPU);
	}
	for (i = 0; i < NR_EFDS; i++) {
		rc->efd[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (rc->efd[i] < 0)
			return false;
	}
	return true;
}

static void race(struct rng *r)
{
	int order[RACE_VCPUS + 1 + NR_EFDS], i, n, k;
	struct racer *t;
	struct race rc;
	long long end;

	memset(&rc, 0, sizeof(rc));
	rc.vm = -1;
	for (i = 0; i < RACE_VCPUS; i++)
		rc.v[i].fd = -1;
	for (i = 0; i < NR_EFDS; i++)
		rc.efd[i] = -1;
	if (!race_setup(&rc, r)) {
		setup_failed(S_RACE, "its VM");
		goto out;
	}

	/* the runners first: th[i] runs v[i] */
	rc.nth = rc.nv + 2;
	for (i = 0; i < rc.nth; i++) {
		t = &rc.th[i];
		t->rc = &rc;
		t->i = i;
		rng_seed(&t->r, rnd(r));
		t->started = !pthread_create(&t->t, NULL,
					     i < rc.nv ? race_runner :
					     i == rc.nv ? race_mem : race_irq,
					     t);
		if (t->started)
			add(&st.threads);
		else
			setup_failed(S_RACE, "a thread");
	}

	for (end = now_ms() + 5 + below(r, 45); now_ms() < end;) {
		sleep_us(1000 + below(r, 3000));
		kick_runners(&rc, r);
	}
	/*
	 * Close the vCPUs, the VM and maybe the eventfds under the threads,
	 * or stop them first.  The threads go on with the old numbers and
	 * get EBADF: nothing opens an fd that could take a number meanwhile.
	 */
	if (!one_in(r, 4)) {
		for (n = 0; n < rc.nv; n++)
			order[n] = n;
		order[n++] = RACE_VCPUS;
		for (i = 0; i < NR_EFDS; i++)
			if (one_in(r, 2))
				order[n++] = RACE_VCPUS + 1 + i;
		shuffle(r, order, n);
		for (i = 0; i < n; i++) {
			k = order[i];
			if (k < RACE_VCPUS)
				close(rc.v[k].fd);
			else if (k == RACE_VCPUS)
				close(rc.vm);
			else
				close(rc.efd[k - RACE_VCPUS - 1]);
			rc.closed[k] = true;
			sleep_us(below(r, 2000));
			kick_runners(&rc, r);
		}
		sleep_us(below(r, 3000));
	}
	race_join(&rc);
out:
	for (i = 0; i < RACE_VCPUS; i++) {
		if (rc.closed[i])
			rc.v[i].fd = -1;
		close_fd(&rc.v[i].fd);
		unmap_run(&rc.v[i]);
	}
	if (rc.closed[RACE_VCPUS])
		rc.vm = -1;
	close_fd(&rc.vm);
	for (i = 0; i < NR_EFDS; i++) {
		if (rc.closed[RACE_VCPUS + 1 + i])
			rc.efd[i] = -1;
		close_fd(&rc.efd[i]);
	}
	mem_free(&rc.buf);
}

/* ==== scenario 3: fds open across fork() ==== */

struct forked {
	int vm;
	uint8_t *buf;
	int nv;
	struct vcpu_st v[2];
	int efd;
};

struct child_report {
	unsigned long ioctls, bad, eio, other, vms, vms_ran;
	unsigned long bad_req;
	int bad_err;
};

static void fork_close(struct rng *r, struct forked *f)
{
	enum { A_VCPU = 0, A_RUN = 2, A_VM = 4, A_MEM, A_EFD, NR_A };
	int order[NR_A], i;

	for (i = 0; i < NR_A; i++)
		order[i] = i;
	shuffle(r, order, NR_A);
	for (i = 0; i < NR_A; i++) {
		switch (order[i]) {
		case A_VCPU:
		case A_VCPU + 1:
			close_fd(&f->v[order[i] - A_VCPU].fd);
			break;
		case A_RUN:
		case A_RUN + 1:
			unmap_run(&f->v[order[i] - A_RUN]);
			break;
		case A_VM:
			close_fd(&f->vm);
			break;
		case A_MEM:
			mem_free(&f->buf);
			break;
		default:
			close_fd(&f->efd);
			break;
		}
	}
}

/* The child's own VM, made through the inherited /dev fd, must run. */
static bool child_own_vm(struct rng *r)
{
	struct kvm_userspace_memory_region m;
	struct vcpu_st v;
	bool ran = false;
	uint8_t *low;
	int vm;

	vm = new_vm(sys_fd, C_CHILD);
	if (vm < 0)
		return false;
	low = mmap(NULL, SLOT0_SIZE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (low == MAP_FAILED) {
		close(vm);
		return false;
	}
	guest_image(low);
	memset(&m, 0, sizeof(m));
	m.memory_size = SLOT0_SIZE;
	m.userspace_addr = (uintptr_t)low;
	if (!xio(vm, KVM_SET_USER_MEMORY_REGION, P(&m), C_CHILD) &&
	    vcpu_open(vm, 0, &v, r, C_CHILD)) {
		v.rip = CODE;		/* the OUT loop */
		set_entry(&v, C_CHILD);
		ran = v.run && !do_run(&v, 0, C_CHILD) &&
		      v.run->exit_reason == KVM_EXIT_IO &&
		      v.run->io.port == OUT_PORT;
		unmap_run(&v);
		close(v.fd);
	}
	close(vm);
	munmap(low, SLOT0_SIZE);
	return ran;
}

static void child_touch_run(struct rng *r, struct vcpu_st *v)
{
	if (!v->run)
		return;
	(void)__atomic_load_n(&v->run->exit_reason, __ATOMIC_RELAXED);
	__atomic_store_n(&v->run->immediate_exit, below(r, 2),
			 __ATOMIC_RELAXED);
	if (run_size >= 8192)
		__atomic_store_n((uint8_t *)v->run + 4096 + below(r, 4096),
				 rnd(r), __ATOMIC_RELAXED);
}

static __noreturn void child_main(struct forked *f, uint64_t seed, int wfd)
{
	struct itimerval tick = { { 0, TICK_US }, { 0, TICK_US } };
	unsigned long ioctls0 = st.ioctls, bad0 = st.bad;
	struct kvm_userspace_memory_region m;
	struct child_report rep;
	struct kvm_irq_level l;
	struct kvm_regs regs;
	struct vcpu_st *v;
	struct rng r;
	int i, n, ret, fd;

	/* its own VM's KVM_RUN is bounded too; timers do not survive fork */
	setitimer(ITIMER_REAL, &tick, NULL);
	memset(&rep, 0, sizeof(rep));
	memset(&first_bad, 0, sizeof(first_bad));
	rng_seed(&r, seed);
	for (n = 3 + below(&r, 10), i = 0; i < n; i++) {
		v = &f->v[below(&r, f->nv)];
		switch (below(&r, 10)) {
		case 0:
			fd = f->vm;
			ret = xio(fd, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY,
				  C_CHILD);
			break;
		case 1:
			fd = v->fd;
			ret = do_run(v, 0, C_CHILD);
			break;
		case 2:
			fd = v->fd;
			ret = xio(fd, KVM_GET_REGS, P(&regs), C_CHILD);
			break;
		case 3:
			memset(&m, 0, sizeof(m));
			m.slot = 1;
			m.guest_phys_addr = 0x100000;
			m.memory_size = 0x1000;
			m.userspace_addr = (uintptr_t)f->buf + POOL_OFF;
			fd = f->vm;
			ret = xio(fd, KVM_SET_USER_MEMORY_REGION, P(&m),
				  C_CHILD);
			break;
		case 4:
			memset(&l, 0, sizeof(l));
			l.irq = below(&r, 24);
			l.level = below(&r, 2);
			fd = f->vm;
			ret = xio(fd, KVM_IRQ_LINE, P(&l), C_CHILD);
			break;
		case 5:
		case 6:
			child_touch_run(&r, v);
			continue;
		case 7:
			close_fd(one_in(&r, 3) ? &f->vm : &v->fd);
			continue;
		case 8:
			unmap_run(v);
			continue;
		default:
			rep.vms++;
			rep.vms_ran += child_own_vm(&r);
			continue;
		}
		/* answers on the inherited fds; a closed one says nothing */
		if (fd < 0)
			continue;
		if (ret < 0 && errno == EIO)
			rep.eio++;
		else
			rep.other++;
	}
	rep.ioctls = st.ioctls - ioctls0;
	rep.bad = st.bad - bad0;
	rep.bad_req = first_bad.req;
	rep.bad_err = first_bad.err;
	if (write(wfd, &rep, sizeof(rep)) != sizeof(rep))
		_exit(3);
	if (one_in(&r, 2))
		fork_close(&r, f);
	_exit(0);
}

/* Wait for @pid; false if it had to be killed after CHILD_WAIT_MS */
static bool reap(pid_t pid, int *status)
{
	long long give_up = now_ms() + CHILD_WAIT_MS;
	pid_t w;

	while (now_ms() < give_up) {
		w = waitpid(pid, status, WNOHANG);
		if (w == pid)
			return true;
		if (w < 0 && errno != EINTR) {
			*status = -1;
			return true;
		}
		sleep_us(500);
	}
	kill(pid, SIGKILL);
	while (waitpid(pid, status, 0) < 0 && errno == EINTR)
		;
	return false;
}

static void child_problem(int status, bool hung)
{
	if (first_child.iter >= 0)
		return;
	first_child.iter = cur_iter;
	first_child.status = status;
	first_child.hung = hung;
}

static bool fork_setup(struct forked *f, struct rng *r)
{
	struct kvm_userspace_memory_region m;
	struct kvm_irqfd irqfd;
	bool irqchip;
	int i;

	/* private memory is copy-on-write after fork, under the guest */
	f->buf = mem_alloc(one_in(r, 2));
	if (!f->buf)
		return false;
	f->vm = new_vm(sys_fd, C_SYS);
	if (f->vm < 0)
		return false;
	memset(&m, 0, sizeof(m));
	m.memory_size = SLOT0_SIZE;
	m.userspace_addr = (uintptr_t)f->buf;
	if (set_region(f->vm, &m, f->buf, C_MEM))
		return false;
	irqchip = one_in(r, 2) && !xio(f->vm, KVM_CREATE_IRQCHIP, 0, C_IRQ);
	for (f->nv = 1 + below(r, 2), i = 0; i < f->nv; i++) {
		if (!vcpu_open(f->vm, i, &f->v[i], r, C_VM))
			return false;
		set_supported_cpuid(f->v[i].fd, C_VCPU);
		set_entry(&f->v[i], C_VCPU);
	}
	f->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (irqchip && f->efd >= 0 && one_in(r, 2)) {
		memset(&irqfd, 0, sizeof(irqfd));
		irqfd.fd = f->efd;
		irqfd.gsi = 5;
		xio(f->vm, KVM_IRQFD, P(&irqfd), C_IRQ);
	}
	if (one_in(r, 2)) {
		/* the vCPU has run before the fork */
		do_run(&f->v[0], 0, C_RUN);
		answer_exit(r, &f->v[0]);
	}
	return true;
}

static void fork_scenario(struct rng *r)
{
	struct child_report rep;
	bool killed = false, reaped;
	int p[2] = { -1, -1 }, i, when, status = 0;
	struct forked f;
	uint64_t seed;
	pid_t pid;

	memset(&f, 0, sizeof(f));
	f.vm = -1;
	f.efd = -1;
	for (i = 0; i < 2; i++)
		f.v[i].fd = -1;
	if (!fork_setup(&f, r) || pipe(p)) {
		setup_failed(S_FORK, "its VM");
		goto out;
	}
	seed = rnd(r);
	when = below(r, 3);
	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		setup_failed(S_FORK, "fork()");
		goto out;
	}
	if (!pid) {
		close(p[0]);
		child_main(&f, seed, p[1]);
	}
	close_fd(&p[1]);
	add(&st.children);

	/* the parent closes at once, a little later, or after the child */
	if (when == 1) {
		sleep_us(below(r, 3000));
		if (one_in(r, 2) && f.v[0].fd >= 0) {
			set_entry(&f.v[0], C_VCPU);
			do_run(&f.v[0], 0, C_RUN);
		}
	}
	if (when < 2)
		fork_close(r, &f);
	if (one_in(r, 10)) {
		sleep_us(below(r, 2000));
		killed = !kill(pid, SIGKILL);
	}
	reaped = reap(pid, &status);
	if (read(p[0], &rep, sizeof(rep)) == sizeof(rep)) {
		add_n(&st.ioctls, rep.ioctls);
		add_n(&st.cat[C_CHILD], rep.ioctls);
		add_n(&st.child_eio, rep.eio);
		add_n(&st.child_other, rep.other);
		add_n(&st.child_vms, rep.vms);
		add_n(&st.child_vms_ran, rep.vms_ran);
		if (rep.bad) {
			add_n(&st.bad, rep.bad);
			pthread_mutex_lock(&bad_lock);
			if (!first_bad.err) {
				first_bad.req = rep.bad_req;
				first_bad.err = rep.bad_err;
				first_bad.iter = cur_iter;
				first_bad.where = "fork (child)";
			}
			pthread_mutex_unlock(&bad_lock);
		}
	}
	if (!reaped) {
		add(&st.child_hung);
		child_problem(status, true);
	} else if (WIFEXITED(status) && !WEXITSTATUS(status)) {
		add(&st.child_ok);
	} else if (killed && WIFSIGNALED(status) &&
		   WTERMSIG(status) == SIGKILL) {
		add(&st.child_killed);
	} else {
		add(&st.child_bad);
		child_problem(status, false);
	}
out:
	fork_close(r, &f);
	close_fd(&p[0]);
	close_fd(&p[1]);
}

/* ==== the run ==== */

static const char *const check_names[NR_CHECKS] = {
	"random scenarios ran",
	"ioctls answered only success or allowed errnos",
	"forked children ended normally",
	"nothing hung",
	"the device still answers",
	"a fresh VM runs to its KVM_EXIT_IO",
};

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	if (!d)
		return -1;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static bool range_unmapped(uint64_t base, uint64_t size)
{
	unsigned long long lo, hi;
	char line[4096];
	bool free = true;
	FILE *f;

	f = fopen("/proc/self/maps", "re");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%llx-%llx", &lo, &hi) == 2 &&
		    lo < base + size && base < hi)
			free = false;
	fclose(f);
	return free;
}

static bool fresh_vm_runs(void)
{
	struct itimerval once = { { 0, 0 }, { 2, 0 } };
	struct vcpu vcpu;
	struct vm vm;
	uint8_t *low;
	bool ok = false;

	if (!vm_create(&vm, dev))
		return false;
	low = vm_add_memory(&vm, 0, 0, SLOT0_SIZE);
	if (low && vcpu_create(&vm, &vcpu, 0)) {
		guest_image(low);
		vcpu_real_mode(&vcpu, CODE);
		setitimer(ITIMER_REAL, &once, NULL);	/* it must not spin */
		ok = !vcpu_run(&vcpu) && vcpu.run->exit_reason == KVM_EXIT_IO &&
		     vcpu.run->io.port == OUT_PORT &&
		     vcpu.run->io.direction == KVM_EXIT_IO_OUT;
		if (!ok)
			tap_diag("the fresh VM: exit %s (%s)",
				 exit_name(vcpu.run->exit_reason),
				 strerror(errno));
		vcpu_destroy(&vm, &vcpu);
	}
	vm_destroy(&vm);
	if (low)
		munmap(low, SLOT0_SIZE);
	return ok;
}

static void diag_counts(void)
{
	unsigned long other;
	char line[512];
	size_t len;
	int i;

	len = snprintf(line, sizeof(line), "%lu ioctls:", st.ioctls);
	for (i = 0; i < NR_CATS && len < sizeof(line); i++)
		len += snprintf(line + len, sizeof(line) - len, " %s %lu",
				cat_names[i], st.cat[i]);
	tap_diag("%s", line);
	for (other = 0, i = 0; i < NR_EXITS; i++)
		other += st.exits[i];
	other -= st.exits[KVM_EXIT_IO] + st.exits[KVM_EXIT_MMIO] +
		 st.exits[KVM_EXIT_HLT] + st.exits[KVM_EXIT_DEBUG] +
		 st.exits[KVM_EXIT_SHUTDOWN] + st.exits[KVM_EXIT_INTERNAL_ERROR] +
		 st.exits[KVM_EXIT_FAIL_ENTRY];
	tap_diag("%lu KVM_RUNs; exits: io %lu, mmio %lu, hlt %lu, debug %lu",
		 st.runs, st.exits[KVM_EXIT_IO], st.exits[KVM_EXIT_MMIO],
		 st.exits[KVM_EXIT_HLT], st.exits[KVM_EXIT_DEBUG]);
	tap_diag("exits: shutdown %lu, internal error %lu, fail entry %lu, other %lu",
		 st.exits[KVM_EXIT_SHUTDOWN], st.exits[KVM_EXIT_INTERNAL_ERROR],
		 st.exits[KVM_EXIT_FAIL_ENTRY], other);
	len = snprintf(line, sizeof(line), "errnos:");
	for (i = 1; i <= NR_ERRNOS && len < sizeof(line); i++) {
		if (!st.err[i])
			continue;
		if (errno_name(i))
			len += snprintf(line + len, sizeof(line) - len,
					" %s %lu", errno_name(i), st.err[i]);
		else
			len += snprintf(line + len, sizeof(line) - len,
					" errno-%d %lu", i, st.err[i]);
	}
	tap_diag("%s", line);
	tap_diag("eventfds: %lu signals, %lu reads; vCPU mmaps: %lu (%lu mapped)",
		 st.efd_writes, st.efd_reads, st.mmaps, st.mmaps_ok);
	tap_diag("race threads: %lu started, %lu hung", st.threads,
		 st.hung_threads);
	tap_diag("children: %lu (%lu exited, %lu killed by the test, %lu bad, %lu hung)",
		 st.children, st.child_ok, st.child_killed, st.child_bad,
		 st.child_hung);
	tap_diag("children's ioctls on inherited fds: %lu EIO, %lu other",
		 st.child_eio, st.child_other);
	tap_diag("children's own VMs: %lu of %lu ran", st.child_vms_ran,
		 st.child_vms);
}

static void report(const char *hung)
{
	long long ms = now_ms() - t0_ms;
	bool fds_ok = fds_after == -2 || fds_after == fds_before;

	tap_diag("%ld of %ld iterations in %lld ms: storm %lu, race %lu, fork %lu",
		 done, iterations, ms, st.scen[S_STORM], st.scen[S_RACE],
		 st.scen[S_FORK]);
	diag_counts();
	if (st.setup_fail)
		tap_diag("%lu scenarios (or threads) could not be set up",
			 st.setup_fail);
	if (!fds_ok)
		tap_diag("open fds: %d before, %d after", fds_before,
			 fds_after);
	if (first_bad.err)
		tap_diag("first unexpected errno: %s (%#lx): %d (%s), iteration %ld (%s)",
			 ioc_name(first_bad.req), first_bad.req, first_bad.err,
			 strerror(first_bad.err), first_bad.iter,
			 first_bad.where);
	if (first_child.iter >= 0)
		tap_diag("first bad child: iteration %ld, %s (wait status %#x)",
			 first_child.iter, first_child.hung ?
			 "did not end and was killed" : "ended abnormally",
			 first_child.status);

	tap_ok(done > 0 && !st.setup_fail && fds_ok,
	       "%ld random scenarios ran (storm %lu, race %lu, fork %lu)",
	       done, st.scen[S_STORM], st.scen[S_RACE], st.scen[S_FORK]);
	tap_ok(!st.bad, "ioctls answered only success or allowed errnos (%lu, %lu others)",
	       st.ioctls, st.bad);
	tap_ok(!st.child_bad && !st.child_hung,
	       "forked children ended normally (%lu, %lu killed by the test)",
	       st.children, st.child_killed);
	if (hung) {
		tap_diag("hung: %s", hung);
		tap_ok(false, "nothing hung");
		tap_ok(false, "the device still answers (not tried: a thread hangs)");
		tap_ok(false, "a fresh VM runs to its KVM_EXIT_IO (not tried)");
		return;
	}
	tap_ok(ms <= (budget_s + SLACK_S) * 1000LL && !st.hung_threads,
	       "nothing hung: %lld ms for %ld s (+%d s slack)", ms, budget_s,
	       SLACK_S);
	__atomic_store_n(&final_ms, now_ms() + FINAL_S * 1000LL,
			 __ATOMIC_RELEASE);
	tap_ok(ioctl(sys_fd, KVM_GET_API_VERSION, 0) == KVM_API_VERSION,
	       "the device still answers KVM_GET_API_VERSION");
	tap_ok(fresh_vm_runs(), "a fresh VM runs a small guest to its KVM_EXIT_IO");
}

/* The first caller reports and exits; a later one waits for that. */
static __noreturn void finish(const char *hung)
{
	if (__atomic_exchange_n(&finishing, 1, __ATOMIC_ACQ_REL))
		for (;;)
			pause();
	report(hung);
	tap_done();
}

static void *watchdog(void *arg)
{
	static char why[160];
	long long fin;

	(void)arg;
	for (;;) {
		sleep_us(200000);
		if (__atomic_load_n(&finishing, __ATOMIC_ACQUIRE)) {
			fin = __atomic_load_n(&final_ms, __ATOMIC_ACQUIRE);
			if (fin && now_ms() > fin)
				tap_bail("the final checks hang");
			continue;
		}
		if (now_ms() > hard_ms) {
			snprintf(why, sizeof(why),
				 "iteration %ld (%s) still running %lld s after the start",
				 __atomic_load_n(&cur_iter, __ATOMIC_RELAXED),
				 scen_names[cur_scen], (now_ms() - t0_ms) / 1000);
			finish(why);
		}
	}
	return NULL;
}

static __noreturn void skip_all(const char *why)
{
	int i;

	for (i = 0; i < NR_CHECKS; i++)
		tap_skip(why, "%s", check_names[i]);
	tap_done();
}

static void read_caps(void)
{
	run_size = xio(sys_fd, KVM_GET_VCPU_MMAP_SIZE, 0, C_SYS);
	if (run_size < (long)sizeof(struct kvm_run))
		tap_bail("KVM_GET_VCPU_MMAP_SIZE: %ld", run_size);
	nr_memslots = xio(sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_MEMSLOTS,
			  C_SYS);
	if (nr_memslots <= 0)
		nr_memslots = 32;
	max_vcpu_id = xio(sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPU_ID,
			  C_SYS);
	if (max_vcpu_id <= 0)
		max_vcpu_id = xio(sys_fd, KVM_CHECK_EXTENSION,
				  KVM_CAP_MAX_VCPUS, C_SYS);
	if (max_vcpu_id <= 0)
		max_vcpu_id = 1;
	nr_as = xio(sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_MULTI_ADDRESS_SPACE,
		    C_SYS);
	if (nr_as <= 0)
		nr_as = 1;
	xsave2_size = xio(sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2, C_SYS);
	supported.h.nent = ARRAY_SIZE(supported.e);
	if (xio(sys_fd, KVM_GET_SUPPORTED_CPUID, P(&supported), C_SYS))
		supported.h.nent = 0;
	tap_diag("caps: %ld memslots, %ld address spaces, vCPU ids below %ld",
		 nr_memslots, nr_as, max_vcpu_id);
	tap_diag("caps: xsave2 %ld bytes, %u CPUID entries, far slots %s",
		 xsave2_size, supported.h.nent, far_ok ? "on" : "off");
}

int main(int argc, char **argv)
{
	struct itimerval tick = { { 0, TICK_US }, { 0, TICK_US } };
	struct sigaction sa;
	uint64_t seed;
	sigset_t alrm;
	pthread_t dog;
	struct rng r;
	int k;

	dev = test_device(argc, argv);
	trace = getenv("FUZZ_TRACE") && atoi(getenv("FUZZ_TRACE"));
	iterations = argc > 2 ? atol(argv[2]) : DEF_ITERATIONS;
	seed = argc > 3 ? strtoull(argv[3], NULL, 0) : (uint64_t)time(NULL);
	budget_s = argc > 4 ? atol(argv[4]) : DEF_SECONDS;

	tap_plan(NR_CHECKS);
	tap_diag("device %s, %ld iterations, seed %#llx, at most %ld s", dev,
		 iterations, (unsigned long long)seed, budget_s);
	if (test_is_kvm(dev))
		/* as fuzz_run: the host never came back */
		skip_all("Debian's KVM wedges the TCG test host on random guests");
	if (cpu_backend() != VIREO_BACKEND_SVM)
		skip_all("random guests can spin with IF=0, which freezes Bochs");

	sys_fd = open(dev, O_RDWR | O_CLOEXEC);
	if (sys_fd < 0)
		tap_bail("cannot open %s: %s", dev, strerror(errno));
	far_ok = range_unmapped(FAR_BASE, FAR_SIZE);
	read_caps();
	fds_before = count_fds();

	/* no SA_RESTART: a signal ends KVM_RUN */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sigaction(SIGALRM, &sa, NULL);

	t0_ms = now_ms();
	deadline_ms = t0_ms + budget_s * 1000;
	hard_ms = deadline_ms + WATCHDOG_S * 1000LL;
	/* the watchdog never takes SIGALRM: KVM_RUN callers must */
	sigemptyset(&alrm);
	sigaddset(&alrm, SIGALRM);
	pthread_sigmask(SIG_BLOCK, &alrm, NULL);
	if (pthread_create(&dog, NULL, watchdog, NULL))
		tap_bail("no watchdog thread");
	pthread_sigmask(SIG_UNBLOCK, &alrm, NULL);
	setitimer(ITIMER_REAL, &tick, NULL);

	/* FUZZ_FIRST=N: start at iteration N (to replay one) */
	done = getenv("FUZZ_FIRST") ? atol(getenv("FUZZ_FIRST")) : 0;
	iterations += done;
	for (; done < iterations && !past_deadline(); done++) {
		rng_seed(&r, seed + done * 0x9e3779b97f4a7c15ULL);
		k = below(&r, 10);
		k = k < 6 ? S_STORM : k < 8 ? S_RACE : S_FORK;
		__atomic_store_n(&cur_iter, done, __ATOMIC_RELAXED);
		__atomic_store_n(&cur_scen, k, __ATOMIC_RELAXED);
		add(&st.scen[k]);
		if (k == S_STORM)
			storm(&r);
		else if (k == S_RACE)
			race(&r);
		else
			fork_scenario(&r);
	}

	memset(&tick, 0, sizeof(tick));
	setitimer(ITIMER_REAL, &tick, NULL);
	fds_after = count_fds();
	finish(NULL);
}
