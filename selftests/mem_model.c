// SPDX-License-Identifier: GPL-2.0-only
/*
 * The guest's memory is the VMM's memory, whatever the host kernel does
 * to it.  Guest and VMM keep one model of what every page should hold
 * (a seed per page; the value of a checked qword is its guest-physical
 * address xor the seed, 0 for a page the kernel zeroed) and check it
 * from both sides while the host unmaps, splits, migrates, protects and
 * merges the pages, and while the slot itself comes and goes.  A
 * hypervisor that keeps a guest mapping of a page the VMM no longer has
 * there (pinned at fault time, or a mapping its MMU notifier missed)
 * shows a value the model does not allow.
 *
 * Slot 1 is 32 MiB of private anonymous memory at GPA 0x40000000, 2 MiB
 * aligned and MADV_HUGEPAGE, so that the hypervisor can map it 2 MiB at
 * a time.  Ten TAP lines in six cases; what each catches:
 *
 * 1. (line 1) The guest's pattern in every page is what the VMM reads:
 *    a 2 MiB mapping at the wrong offset, or guest pages that are not
 *    the VMM's.  The THP share of the slot is reported, not judged.
 * 2. (lines 2-4) MADV_DONTNEED of an aligned 4 MiB range and of one
 *    4 KiB page inside a THP while the vCPU is stopped: the guest must
 *    read zeros there.  A hypervisor that kept the old pages (the
 *    pinning bug) reads the old pattern; its writes then land in the
 *    orphaned pages and never reach the VMM (line 3), and the VMM's
 *    later writes never reach the guest (line 4).
 * 3. (line 5) mprotect(PROT_READ) of guest memory: the guest can still
 *    read it (KVM maps such pages read-only), and its writes once the
 *    VMM's mapping is writable again reach the VMM.
 * 4. (lines 6-7) A vCPU on its own thread verifies and rewrites its
 *    pages pass after pass while the VMM zaps and rewrites other pages
 *    (64 KiB runs inside the guest's THPs, which splits them, and a
 *    whole 2 MiB), cycles mprotect on pages the guest only reads, and
 *    compacts memory (page migration).  The guest reads the VMM's pages
 *    under a sequence count: while no change was in progress they must
 *    hold exactly the VMM's last values (a stale mapping reads the old
 *    ones).  Afterwards both sides check every page against its last
 *    writer: guest writes that went to a migrated-away page are missing.
 * 5. (line 8) KSM (skipped without it): identical pages merged while
 *    the vCPU is stopped, then the guest writes each: a mapping that
 *    survived the merge writes to the old page (lost for the VMM) or
 *    into the shared one (every page changes).  Pinned pages never
 *    merge: skipped.
 * 6. (lines 9-10) Slot 1 deleted and re-added a few hundred times,
 *    alternately on two THP-backed buffers, while the guest reads sample
 *    pages of every 2 MiB: while the slot is known absent a read must be
 *    an MMIO exit (a 2 MiB mapping that outlived the slot reads memory),
 *    while known present it must read the buffer the slot now has.  At
 *    the end the guest reads exactly the VMM's last pattern in the
 *    slot's buffer, nothing of the other.
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lib/guest.h"
#include "lib/tap.h"
#include "lib/x86.h"

#define PAGE		4096UL
#define HUGE		(2UL << 20)
#define DATA_SLOT	1
#define DATA_GPA	0x40000000UL	/* identity-mapped by the guest */
#define DATA_SIZE	(32UL << 20)
#define DATA_PAGES	(DATA_SIZE / PAGE)
#define HUGE_PAGES	(HUGE / PAGE)
#define CHUNKS		(DATA_SIZE / HUGE)
#define NOFF		4		/* checked qwords per page */

#define KSM_SLOT	2
#define KSM_GPA		0x50000000UL
#define KSM_PAGES	512UL
#define KSM_SIZE	(KSM_PAGES * PAGE)
#define KSM_FILL	0x4b534d2d66696c6cULL
#define KSM_MARK(i)	(0x6d61726b00000000ULL | (i))
#define KSM_HMARK(i)	(0x686f737400000000ULL | (i))

/* A seed: a tag per writer and phase in bits 63:48, a count in 47:32. */
#define SEED(tag, n)	((uint64_t)(tag) << 48 | ((uint64_t)(n) & 0xffff) << 32)
#define SEED_TAG(s)	((s) >> 48)

#define T_FIRST		0xa001	/* case 1, by the guest */
#define T_REFILL	0xa002	/* case 2, the guest refills zapped pages */
#define T_HOSTW		0xa003	/* case 2, the VMM's writes */
#define T_UNPROT	0xa004	/* case 3, the guest after mprotect */
#define T_CONC0		0xb000	/* case 4, the start */
#define T_CONCG		0xb001	/* case 4, guest passes */
#define T_CONCH		0xb002	/* case 4, VMM rounds */
#define T_BUF_A		0xc00a	/* case 6, the two buffers */
#define T_BUF_B		0xc00b
#define T_FINAL		0xc0f0	/* case 6, the slot's buffer at the end */
#define T_OTHER		0xc0f1	/* case 6, the other one */
#define MMIO_MARK	0x4d4d494f4d4d494fULL	/* what absent memory reads */
#define PROBE		0x70726f6265000000ULL	/* written while absent */

#define CONC_MIN_MS	1000
#define CONC_MAX_MS	3000
#define CONC_ROUNDS	1500
#define COMPACT_EVERY	25
#define COMPACT_MAX	3
#define COMPACT_SLOW_MS	500

/* Case 6 */
#define CHURN_CYCLES	200
#define CHURN_MS	3000
#define CHURN_WAIT_MS	200
#define ST_ABSENT	0
#define ST_A		1
#define ST_B		2

#define RUN_MS		30000

enum op {
	OP_NONE, OP_WRITE, OP_VERIFY, OP_CONCURRENT, OP_KSM_FILL,
	OP_KSM_MARK, OP_KSM_CHECK, OP_CHURN, OP_EXIT,
};

/* The first wrong value one side found, and how many there were */
struct report {
	uint64_t bad, gpa, val, want;
};

/* Host and guest talk through this (the test image is guest memory) */
static volatile struct {
	uint64_t op, first, count, arg;		/* the command */
	struct report rep;			/* its result */
	uint64_t seq;		/* odd while the VMM changes memory or slot */
	uint64_t state;		/* case 6: ST_* */
	uint64_t stop;		/* end a looping command after its pass */
	uint64_t passes, stable, stable_absent, unstable;
} ctl;

/* The seed of every page of slot 1: what the last writer wrote */
static volatile uint64_t model[DATA_PAGES];

/* Plain MOVs, which every MMIO emulator decodes */
static inline GUEST_REGS uint64_t ld64(uint64_t addr)
{
	uint64_t v;

	asm volatile("movq (%1), %0" : "=r" (v) : "r" (addr) : "memory");
	return v;
}

static inline GUEST_REGS void st64(uint64_t addr, uint64_t v)
{
	asm volatile("movq %1, (%0)" : : "r" (addr), "r" (v) : "memory");
}

/* The value of the qword at @gpa for @seed */
static inline GUEST_REGS uint64_t pat(uint64_t gpa, uint64_t seed)
{
	return seed ? gpa ^ seed : 0;
}

/* Case 4: the pages the VMM changes (the guest only reads them) */
static inline GUEST_REGS bool host_owned(uint64_t i)
{
	return i / HUGE_PAGES == CHUNKS - 1 ||
	       (i % HUGE_PAGES >= 256 && i % HUGE_PAGES < 384);
}

/* The checked qwords of page @i: first, last, middle, one that moves */
static inline GUEST_REGS uint64_t qoff(uint64_t i, unsigned int k)
{
	switch (k) {
	case 0:
		return 0;
	case 1:
		return PAGE - 8;
	case 2:
		return PAGE / 2;
	default:
		return 8 * (1 + (i * 37) % 510);
	}
}

static GUEST_CODE void note(volatile struct report *r, uint64_t gpa,
			    uint64_t val, uint64_t want)
{
	if (!r->bad) {
		r->gpa = gpa;
		r->val = val;
		r->want = want;
	}
	r->bad++;
}

/*
 * Page @i of slot 1 seen at @base (DATA_GPA in the guest, the buffer in
 * the VMM): write the values of @seed, or check them.
 */
static GUEST_CODE void page_write(uint64_t base, uint64_t i, uint64_t seed)
{
	unsigned int k;

	for (k = 0; k < NOFF; k++)
		st64(base + i * PAGE + qoff(i, k),
		     pat(DATA_GPA + i * PAGE + qoff(i, k), seed));
}

static GUEST_CODE void page_check(uint64_t base, uint64_t i, uint64_t seed,
				  volatile struct report *r)
{
	uint64_t gpa, v;
	unsigned int k;

	for (k = 0; k < NOFF; k++) {
		gpa = DATA_GPA + i * PAGE + qoff(i, k);
		v = ld64(base + i * PAGE + qoff(i, k));
		if (v != pat(gpa, seed))
			note(r, gpa, v, pat(gpa, seed));
	}
}

/* A page the VMM may be changing: exact while ctl.seq held still */
static GUEST_CODE void read_host_page(uint64_t i)
{
	uint64_t s1, s2, seed, gpa, v[NOFF], tag;
	unsigned int k;

	s1 = ctl.seq;
	seed = model[i];
	for (k = 0; k < NOFF; k++)
		v[k] = ld64(DATA_GPA + i * PAGE + qoff(i, k));
	s2 = ctl.seq;
	for (k = 0; k < NOFF; k++) {
		gpa = DATA_GPA + i * PAGE + qoff(i, k);
		if (!(s1 & 1) && s1 == s2) {
			if (v[k] != pat(gpa, seed))
				note(&ctl.rep, gpa, v[k], pat(gpa, seed));
			continue;
		}
		/* mid-change: zero, or some value of the VMM for this qword */
		tag = SEED_TAG(v[k] ^ gpa);
		if (v[k] && (((v[k] ^ gpa) & 0xffffffff) ||
			     (tag != T_CONC0 && tag != T_CONCH)))
			note(&ctl.rep, gpa, v[k], pat(gpa, seed));
	}
	if (!(s1 & 1) && s1 == s2)
		ctl.stable++;
	else
		ctl.unstable++;
}

/* Case 4: verify and rewrite the guest's pages until told to stop */
static GUEST_CODE void guest_concurrent(void)
{
	uint64_t gen = ctl.arg, i;

	while (!ctl.stop) {
		gen++;
		for (i = 0; i < DATA_PAGES; i++) {
			if (host_owned(i)) {
				read_host_page(i);
				continue;
			}
			page_check(DATA_GPA, i, model[i], &ctl.rep);
			model[i] = SEED(T_CONCG, gen);
			page_write(DATA_GPA, i, model[i]);
		}
		ctl.passes++;
	}
}

static inline GUEST_REGS uint64_t ksm_want(uint64_t i, uint64_t q,
					   uint64_t phase)
{
	if (phase >= 1 && q == i)
		return KSM_MARK(i);
	if (phase >= 2 && !(i & 1) && q == (i + 1) % (PAGE / 8))
		return KSM_HMARK(i);
	return KSM_FILL;
}

/* Every qword of the KSM slot seen at @base, as of @phase */
static GUEST_CODE void ksm_check(uint64_t base, uint64_t phase,
				 volatile struct report *r)
{
	uint64_t i, q, v, want;

	for (i = 0; i < KSM_PAGES; i++)
		for (q = 0; q < PAGE / 8; q++) {
			v = ld64(base + i * PAGE + q * 8);
			want = ksm_want(i, q, phase);
			if (v != want)
				note(r, KSM_GPA + i * PAGE + q * 8, v, want);
		}
}

/* Case 6: sample pages of every 2 MiB while the slot comes and goes */
static GUEST_CODE void guest_churn(void)
{
	static const uint64_t sample[] = { 0, 1, 300, HUGE_PAGES - 1 };
	uint64_t c, k, gpa, s1, s2, st, v, want, a, b;

	while (!ctl.stop) {
		for (c = 0; c < CHUNKS; c++)
			for (k = 0; k < ARRAY_SIZE(sample); k++) {
				gpa = DATA_GPA + c * HUGE + sample[k] * PAGE;
				a = pat(gpa, SEED(T_BUF_A, 0));
				b = pat(gpa, SEED(T_BUF_B, 0));
				s1 = ctl.seq;
				st = ctl.state;
				/* a write fault too; ignored where MMIO */
				st64(gpa + 16, st == ST_ABSENT ? PROBE : s1);
				v = ld64(gpa);
				s2 = ctl.seq;
				if ((s1 & 1) || s1 != s2) {
					if (v != MMIO_MARK && v != a && v != b)
						note(&ctl.rep, gpa, v, a);
					ctl.unstable++;
					continue;
				}
				want = st == ST_ABSENT ? MMIO_MARK :
				       st == ST_A ? a : b;
				if (v != want)
					note(&ctl.rep, gpa, v, want);
				if (st == ST_ABSENT)
					ctl.stable_absent++;
				else
					ctl.stable++;
			}
		ctl.passes++;
	}
}

/* Runs the host's commands; each ends with a GUEST_SYNC of the misses */
static GUEST_CODE void guest_main(uint64_t unused __attribute__((unused)))
{
	uint64_t i, q;

	/*
	 * Long loops without an exit run with interrupts on: Bochs froze
	 * on a nested guest spinning with IF=0.  Nothing here raises one.
	 */
	sti();
	for (;;) {
		switch (ctl.op) {
		case OP_WRITE:
			for (i = ctl.first; i < ctl.first + ctl.count; i++)
				page_write(DATA_GPA, i, model[i]);
			break;
		case OP_VERIFY:
			for (i = ctl.first; i < ctl.first + ctl.count; i++)
				page_check(DATA_GPA, i, model[i], &ctl.rep);
			break;
		case OP_CONCURRENT:
			guest_concurrent();
			break;
		case OP_KSM_FILL:
			for (i = 0; i < KSM_PAGES; i++)
				for (q = 0; q < PAGE / 8; q++)
					st64(KSM_GPA + i * PAGE + q * 8,
					     KSM_FILL);
			break;
		case OP_KSM_MARK:
			for (i = 0; i < KSM_PAGES; i++)
				st64(KSM_GPA + i * PAGE + i * 8, KSM_MARK(i));
			break;
		case OP_KSM_CHECK:
			ksm_check(KSM_GPA, ctl.arg, &ctl.rep);
			break;
		case OP_CHURN:
			guest_churn();
			break;
		case OP_EXIT:
			GUEST_DONE();
			break;
		default:
			GUEST_ASSERT(0);
		}
		GUEST_SYNC(ctl.rep.bad);
	}
}

/* ---- the VMM's side ---- */

static int last_err;	/* errno of a KVM_RUN that failed, else 0 */

static void on_sigusr1(int sig)
{
	(void)sig;
}

static void model_set(uint64_t first, uint64_t count, uint64_t seed)
{
	uint64_t i;

	for (i = first; i < first + count; i++)
		model[i] = seed;
}

static void host_write(uint8_t *mem, uint64_t first, uint64_t count)
{
	uint64_t i;

	for (i = first; i < first + count; i++)
		page_write((uintptr_t)mem, i, model[i]);
}

static bool report_ok(const volatile struct report *r, const char *what)
{
	if (!r->bad)
		return true;
	tap_diag("%s: %llu wrong qwords, the first at GPA %#llx: %#llx, want %#llx",
		 what, (unsigned long long)r->bad, (unsigned long long)r->gpa,
		 (unsigned long long)r->val, (unsigned long long)r->want);
	return false;
}

/* The VMM's view of pages [first, first + count) against the model */
static bool host_check(uint8_t *mem, uint64_t first, uint64_t count,
		       const char *what)
{
	volatile struct report r = { 0 };
	uint64_t i;

	for (i = first; i < first + count; i++)
		page_check((uintptr_t)mem, i, model[i], &r);
	return report_ok(&r, what);
}

static void explain(struct guest_vm *g, enum ucall_cmd cmd,
		    const struct ucall *uc, const char *what)
{
	struct kvm_run *run = g->vcpu.run;

	if (cmd == UCALL_ASSERT)
		tap_diag("%s: guest assertion '%s' at %s:%llu (arg %#llx)",
			 what, uc->expr ? uc->expr : "?",
			 uc->file ? uc->file : "?",
			 (unsigned long long)uc->line,
			 (unsigned long long)uc->arg);
	else if (cmd != UCALL_NONE)
		tap_diag("%s: unexpected ucall %llu", what,
			 (unsigned long long)cmd);
	else if (last_err)
		tap_diag("%s: KVM_RUN failed: %s", what, strerror(last_err));
	else if (run->exit_reason == KVM_EXIT_MMIO)
		tap_diag("%s: unexpected MMIO %s at %#llx", what,
			 run->mmio.is_write ? "write" : "read",
			 (unsigned long long)run->mmio.phys_addr);
	else
		tap_diag("%s: unexpected exit %s (%u)", what,
			 exit_name(run->exit_reason), run->exit_reason);
}

/*
 * Run the guest to the end of its command: 1 without a wrong value,
 * 0 with some, -1 when it did not report (last_err set if KVM_RUN
 * failed: running again retries).
 */
static int guest_result(struct guest_vm *g, const char *what)
{
	enum ucall_cmd cmd;
	struct ucall uc;

	errno = 0;
	cmd = guest_run(g, &uc);
	last_err = cmd == UCALL_NONE ? errno : 0;
	if (cmd == UCALL_SYNC)
		return report_ok(&ctl.rep, what);
	explain(g, cmd, &uc, what);
	return -1;
}

static void set_cmd(uint64_t op, uint64_t first, uint64_t count,
		    uint64_t arg)
{
	ctl.op = op;
	ctl.first = first;
	ctl.count = count;
	ctl.arg = arg;
	ctl.rep.bad = 0;
	ctl.stop = 0;
	ctl.passes = 0;
	ctl.stable = 0;
	ctl.stable_absent = 0;
	ctl.unstable = 0;
}

static int guest_cmd(struct guest_vm *g, uint64_t op, uint64_t first,
		     uint64_t count, uint64_t arg, const char *what)
{
	set_cmd(op, first, count, arg);
	return guest_result(g, what);
}

/* The guest did not come back from a command: nothing more can run. */
static void need(int ret)
{
	if (ret < 0)
		tap_bail("the guest is lost");
}

static int set_slot(struct guest_vm *g, uint32_t slot, uint64_t gpa,
		    void *mem, uint64_t size)
{
	struct kvm_userspace_memory_region mr = {
		.slot = slot, .guest_phys_addr = gpa, .memory_size = size,
		.userspace_addr = (uintptr_t)mem,
	};

	return ioctl(g->vm.fd, KVM_SET_USER_MEMORY_REGION, &mr);
}

/* Private anonymous memory, 2 MiB aligned, THP asked for (or refused) */
static uint8_t *buf_alloc(size_t size, bool thp)
{
	uint8_t *p = mmap(NULL, size + HUGE, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uintptr_t start, end;

	if (p == MAP_FAILED)
		return NULL;
	start = ((uintptr_t)p + HUGE - 1) & ~(HUGE - 1);
	end = (uintptr_t)p + size + HUGE;
	if (start > (uintptr_t)p)
		munmap(p, start - (uintptr_t)p);
	if (end > start + size)
		munmap((void *)(start + size), end - start - size);
	/* THP may be missing: everything runs all the same */
	madvise((void *)start, size, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	return (uint8_t *)start;
}

/* AnonHugePages of the mappings in [start, start + size), in kB */
static long thp_kb(void *start, size_t size)
{
	unsigned long lo, hi, s = (uintptr_t)start, e = s + size;
	bool in = false;
	char line[256];
	long kb, total = 0;
	FILE *f;

	f = fopen("/proc/self/smaps", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		/* a mapping's first line; its fields start with a name */
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
			in = lo < e && hi > s;
			continue;
		}
		if (in && sscanf(line, "AnonHugePages: %ld kB", &kb) == 1)
			total += kb;
	}
	fclose(f);
	return total;
}

static void thp_diag(const char *what, void *mem, size_t size)
{
	long kb = thp_kb(mem, size);

	if (kb < 0)
		tap_diag("%s: no /proc/self/smaps", what);
	else
		tap_diag("%s: %ld of %zu kB THP-backed", what, kb, size >> 10);
}

static bool read_ul(const char *path, unsigned long *v)
{
	char buf[64], *end;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = 0;
	errno = 0;
	*v = strtoul(buf, &end, 10);
	return !errno && end != buf;
}

static bool write_ul(const char *path, unsigned long v)
{
	char buf[32];
	int fd, n;
	bool ok;

	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = snprintf(buf, sizeof(buf), "%lu\n", v);
	ok = write(fd, buf, n) == n;
	close(fd);
	return ok;
}

/* ---- 1-3: the vCPU stopped between changes ---- */

static void case_fill(struct guest_vm *g, uint8_t *mem)
{
	char thp[128] = "?";
	bool ok;
	int fd, n;

	fd = open("/sys/kernel/mm/transparent_hugepage/enabled",
		  O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, thp, sizeof(thp) - 1);
		thp[n > 0 ? n : 0] = 0;
		thp[strcspn(thp, "\n")] = 0;
		close(fd);
	}
	tap_diag("transparent_hugepage/enabled: %s", thp);
	model_set(0, DATA_PAGES, SEED(T_FIRST, 1));
	ok = guest_cmd(g, OP_WRITE, 0, DATA_PAGES, 0, "guest fill") == 1;
	ok = host_check(mem, 0, DATA_PAGES, "VMM after the guest's fill") &&
	     ok;
	thp_diag("slot 1 after the guest's fill", mem, DATA_SIZE);
	tap_ok(ok, "THP-backed slot: the guest's pattern in all %lu pages is what the VMM reads",
	       DATA_PAGES);
}

/* Zapped in case 2: an aligned 4 MiB and one page inside a THP */
#define ZAP_FIRST	(2 * HUGE_PAGES)
#define ZAP_COUNT	(2 * HUGE_PAGES)
#define ZAP_ONE		(5 * HUGE_PAGES + 77)

static void case_dontneed(struct guest_vm *g, uint8_t *mem)
{
	uint64_t i, n = 0;
	bool ok;
	int ret;

	ok = !madvise(mem + ZAP_FIRST * PAGE, ZAP_COUNT * PAGE,
		      MADV_DONTNEED) &&
	     !madvise(mem + ZAP_ONE * PAGE, PAGE, MADV_DONTNEED);
	if (!ok)
		tap_diag("madvise(MADV_DONTNEED): %s", strerror(errno));
	model_set(ZAP_FIRST, ZAP_COUNT, 0);
	model_set(ZAP_ONE, 1, 0);
	ret = guest_cmd(g, OP_VERIFY, 0, DATA_PAGES, 0,
			"guest after MADV_DONTNEED");
	tap_ok(ok && ret == 1,
	       "after MADV_DONTNEED of 4 MiB at +%lu MiB and of page %lu, the guest reads zeros there and its pattern elsewhere",
	       ZAP_FIRST * PAGE >> 20, ZAP_ONE);
	need(ret);

	model_set(ZAP_FIRST, ZAP_COUNT, SEED(T_REFILL, 1));
	model_set(ZAP_ONE, 1, SEED(T_REFILL, 2));
	ret = guest_cmd(g, OP_WRITE, ZAP_FIRST, ZAP_COUNT, 0, "guest refill");
	need(ret);
	ret = guest_cmd(g, OP_WRITE, ZAP_ONE, 1, 0, "guest refill");
	need(ret);
	tap_ok(host_check(mem, 0, DATA_PAGES, "VMM after the guest's refill"),
	       "the guest's new values in the zapped pages reach the VMM");

	/* some pages in THPs, some in the refilled ones */
	for (i = 0; i < DATA_PAGES; i++)
		if (i % 97 == 5 || i == ZAP_ONE || i == ZAP_FIRST + 300) {
			model[i] = SEED(T_HOSTW, 1);
			n++;
		}
	for (i = 0; i < DATA_PAGES; i++)
		if (SEED_TAG(model[i]) == T_HOSTW)
			host_write(mem, i, 1);
	ret = guest_cmd(g, OP_VERIFY, 0, DATA_PAGES, 0,
			"guest after the VMM's writes");
	tap_ok(ret == 1, "the VMM's new values in %llu pages reach the guest",
	       (unsigned long long)n);
	need(ret);
}

/* Made read-only in case 3: a whole THP and a run inside another */
#define RO_FIRST	(7 * HUGE_PAGES)
#define RO_COUNT	HUGE_PAGES
#define RO2_FIRST	(9 * HUGE_PAGES + 100)
#define RO2_COUNT	5

static bool protect(uint8_t *mem, int prot)
{
	return !mprotect(mem + RO_FIRST * PAGE, RO_COUNT * PAGE, prot) &&
	       !mprotect(mem + RO2_FIRST * PAGE, RO2_COUNT * PAGE, prot);
}

/* Returns whether guest reads of read-only VMM memory work. */
static bool case_mprotect(struct guest_vm *g, uint8_t *mem)
{
	bool ok, ro_ok;
	int ret;

	ok = protect(mem, PROT_READ);
	if (!ok)
		tap_diag("mprotect(PROT_READ): %s", strerror(errno));
	ret = guest_cmd(g, OP_VERIFY, 0, DATA_PAGES, 0,
			"guest reading read-only VMM memory");
	ro_ok = ret == 1;
	if (ret < 0 && last_err) {
		/* finish the command once the pages are writable again */
		protect(mem, PROT_READ | PROT_WRITE);
		ret = guest_result(g, "the same, after PROT_READ|PROT_WRITE");
		if (ret >= 0)
			tap_diag("KVM_RUN failed on read-only VMM memory, went on once writable");
	}
	need(ret);
	ok = protect(mem, PROT_READ | PROT_WRITE) && ok;

	model_set(RO_FIRST, RO_COUNT, SEED(T_UNPROT, 1));
	model_set(RO2_FIRST, RO2_COUNT, SEED(T_UNPROT, 2));
	ret = guest_cmd(g, OP_WRITE, RO_FIRST, RO_COUNT, 0, "guest unprot");
	need(ret);
	ret = guest_cmd(g, OP_WRITE, RO2_FIRST, RO2_COUNT, 0, "guest unprot");
	need(ret);
	ok = host_check(mem, 0, DATA_PAGES, "VMM after mprotect") && ok;
	tap_ok(ok && ro_ok,
	       "the guest reads memory the VMM made PROT_READ; its writes after PROT_READ|PROT_WRITE reach the VMM");
	return ro_ok;
}

/* ---- 4: the VMM changes memory while the guest runs ---- */

/* Make ctl.seq odd (a change begins) or even again (it is done). */
static void seq_begin(void)
{
	__atomic_store_n(&ctl.seq, ctl.seq + 1, __ATOMIC_SEQ_CST);
}

static void seq_end(void)
{
	__atomic_store_n(&ctl.seq, ctl.seq + 1, __ATOMIC_SEQ_CST);
}

/* Zap and rewrite a run of the VMM's pages; false if madvise failed */
static bool host_round(uint8_t *mem, unsigned int round)
{
	uint64_t first, count, c;
	bool ok;

	if (round % 4 == 3) {
		/* the whole last 2 MiB: a THP goes, a new one comes */
		first = (CHUNKS - 1) * HUGE_PAGES;
		count = HUGE_PAGES;
	} else {
		/* 64 KiB inside a THP the guest writes too: a split */
		c = (round * 7) % (CHUNKS - 1);
		first = c * HUGE_PAGES + 256 + (round * 16) % 128;
		count = 16;
	}
	seq_begin();
	ok = !madvise(mem + first * PAGE, count * PAGE, MADV_DONTNEED);
	model_set(first, count, SEED(T_CONCH, round + 1));
	host_write(mem, first, count);
	seq_end();
	return ok;
}

/* A read-only spell for the VMM's 512 KiB of one 2 MiB */
static bool host_mprotect(uint8_t *mem, unsigned int round)
{
	uint8_t *p = mem + (((round * 5 + 3) % (CHUNKS - 1)) * HUGE_PAGES +
			    256) * PAGE;
	bool ok;

	ok = !mprotect(p, 128 * PAGE, PROT_READ);
	usleep(300);
	return !mprotect(p, 128 * PAGE, PROT_READ | PROT_WRITE) && ok;
}

static bool compact(void)
{
	return write_ul("/proc/sys/vm/compact_memory", 1);
}

static void case_concurrent(struct guest_vm *g, uint8_t *mem, bool use_ro)
{
	unsigned int round, compactions = 0, mprotects = 0;
	bool host_ok = true, can_compact = true, ok;
	uint64_t start, now, t;
	struct x86_runner r;
	int ret;

	model_set(0, DATA_PAGES, SEED(T_CONC0, 1));
	host_write(mem, 0, DATA_PAGES);
	if (!use_ro)
		tap_diag("no mprotect spells: the guest cannot read PROT_READ memory");
	set_cmd(OP_CONCURRENT, 0, DATA_PAGES, 0);
	memset(&r, 0, sizeof(r));
	r.stop_on_sync = true;
	x86_runner_start(&r, &g->vcpu);
	start = x86_now_ms();
	for (round = 0; round < CONC_ROUNDS; round++) {
		now = x86_now_ms();
		if (x86_runner_done(&r) || now >= start + CONC_MAX_MS ||
		    (now >= start + CONC_MIN_MS && ctl.passes >= 3))
			break;
		if (!host_round(mem, round)) {
			tap_diag("madvise(MADV_DONTNEED) in round %u: %s",
				 round, strerror(errno));
			host_ok = false;
			break;
		}
		if (use_ro && round % 2) {
			if (!host_mprotect(mem, round)) {
				tap_diag("mprotect in round %u: %s", round,
					 strerror(errno));
				host_ok = false;
				break;
			}
			mprotects++;
		}
		if (can_compact && round % COMPACT_EVERY == 0) {
			t = x86_now_ms();
			/* not writable (not root, no CONFIG_COMPACTION): none */
			can_compact = compact();
			compactions += can_compact;
			if (compactions >= COMPACT_MAX ||
			    x86_now_ms() - t > COMPACT_SLOW_MS)
				can_compact = false;
		}
		usleep(500);
	}
	ctl.stop = 1;
	ok = x86_runner_wait(&r, RUN_MS) && r.cmd == UCALL_SYNC;
	if (!ok)
		x86_runner_diag(&r, "vCPU thread");
	tap_diag("VMM: %u rounds, %u mprotect spells, %u compactions",
		 round, mprotects, compactions);
	tap_diag("guest: %llu passes; VMM pages read %llu times exactly, %llu mid-change",
		 (unsigned long long)ctl.passes,
		 (unsigned long long)ctl.stable,
		 (unsigned long long)ctl.unstable);
	tap_ok(ok && host_ok && report_ok(&ctl.rep, "guest") &&
	       ctl.passes > 0 && ctl.stable > 0,
	       "a vCPU thread rewrites its pages while the VMM zaps, rewrites, protects its own and compacts memory: no wrong value, no exit");
	if (!ok)
		tap_bail("the guest is lost");

	ok = host_check(mem, 0, DATA_PAGES, "VMM after the race");
	ret = guest_cmd(g, OP_VERIFY, 0, DATA_PAGES, 0, "guest after the race");
	tap_ok(ok && ret == 1,
	       "afterwards every page holds what its last writer wrote, for the VMM and the guest");
	need(ret);
}

/* ---- 5: KSM ---- */

#define KSM_DIR		"/sys/kernel/mm/ksm/"

/* Pages merged: this process's if the kernel tells, else all sharing */
static bool ksm_merged(bool own, unsigned long *v)
{
	return read_ul(own ? "/proc/self/ksm_merging_pages" :
			     KSM_DIR "pages_sharing", v);
}

static void case_ksm(struct guest_vm *g)
{
	unsigned long run, scan, sleep_ms, base = 0, merged = 0;
	const char *what = "pages merged by KSM take the guest's writes, both ways";
	volatile struct report hr = { 0 };
	bool own, ok = false;
	uint64_t end, i;
	uint8_t *mem;
	int fd, ret;

	if (!read_ul(KSM_DIR "run", &run) ||
	    !read_ul(KSM_DIR "pages_to_scan", &scan) ||
	    !read_ul(KSM_DIR "sleep_millisecs", &sleep_ms)) {
		tap_skip("no /sys/kernel/mm/ksm", "%s", what);
		return;
	}
	fd = open(KSM_DIR "run", O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		tap_skip("/sys/kernel/mm/ksm/run is not writable", "%s", what);
		return;
	}
	close(fd);
	mem = buf_alloc(KSM_SIZE, false);
	if (!mem)
		tap_bail("no memory for the KSM slot");
	if (madvise(mem, KSM_SIZE, MADV_MERGEABLE)) {
		tap_skip("MADV_MERGEABLE refused", "%s", what);
		munmap(mem, KSM_SIZE);
		return;
	}
	if (set_slot(g, KSM_SLOT, KSM_GPA, mem, KSM_SIZE)) {
		tap_ok(false, "%s: KVM_SET_USER_MEMORY_REGION: %s", what,
		       strerror(errno));
		munmap(mem, KSM_SIZE);
		return;
	}
	ret = guest_cmd(g, OP_KSM_FILL, 0, 0, 0, "guest KSM fill");
	need(ret);

	own = ksm_merged(true, &base);
	if (!own)
		ksm_merged(false, &base);
	if (!write_ul(KSM_DIR "pages_to_scan", 10000) ||
	    !write_ul(KSM_DIR "sleep_millisecs", 10) ||
	    !write_ul(KSM_DIR "run", 1)) {
		tap_diag("setting up KSM: %s", strerror(errno));
		goto restore;
	}
	end = x86_now_ms() + 5000;
	while (x86_now_ms() < end && ksm_merged(own, &merged) &&
	       merged <= base)
		usleep(20000);
	if (merged <= base) {
		write_ul(KSM_DIR "run", run);
		write_ul(KSM_DIR "pages_to_scan", scan);
		write_ul(KSM_DIR "sleep_millisecs", sleep_ms);
		tap_skip("KSM merged nothing in 5 s", "%s", what);
		goto out;
	}
	tap_diag("KSM: %s %lu (was %lu)",
		 own ? "ksm_merging_pages" : "pages_sharing", merged, base);

	ret = guest_cmd(g, OP_KSM_CHECK, 0, 0, 0, "guest reading merged pages");
	ok = ret == 1;
	if (ret >= 0)
		ret = guest_cmd(g, OP_KSM_MARK, 0, 0, 0, "guest marking");
	if (ret >= 0) {
		ksm_check((uintptr_t)mem, 1, &hr);
		ok = report_ok(&hr, "VMM after the guest's marks") && ok;
		for (i = 0; i < KSM_PAGES; i += 2)
			*(volatile uint64_t *)(mem + i * PAGE +
					       (i + 1) % (PAGE / 8) * 8) =
				KSM_HMARK(i);
		ret = guest_cmd(g, OP_KSM_CHECK, 0, 0, 2,
				"guest after the VMM's marks");
		ok = ret == 1 && ok;
	}
restore:
	/* as it was: ksmd back to its old state, merged pages stay */
	write_ul(KSM_DIR "run", run);
	write_ul(KSM_DIR "pages_to_scan", scan);
	write_ul(KSM_DIR "sleep_millisecs", sleep_ms);
	tap_ok(ok, "%s", what);
	need(ret);
out:
	if (set_slot(g, KSM_SLOT, KSM_GPA, mem, 0))
		tap_diag("deleting the KSM slot: %s", strerror(errno));
	munmap(mem, KSM_SIZE);
}

/* ---- 6: the slot comes and goes under a running vCPU ---- */

struct churn_vcpu {
	struct vcpu *vcpu;
	pthread_t thread;
	int ret, err;
	uint32_t exit_reason;
	enum ucall_cmd cmd;
	struct ucall uc;
	unsigned int mmio_reads, mmio_writes;
	volatile bool stop, done;
};

/* KVM_RUN until a ucall; slot 1's absent memory reads MMIO_MARK. */
/* the device is Debian's KVM (see case_churn) */
static bool on_kvm;

static void *churn_thread(void *arg)
{
	struct churn_vcpu *c = arg;
	struct kvm_run *run = c->vcpu->run;
	uint64_t mark = MMIO_MARK;
	uint32_t ptr;

	while (!c->stop) {
		c->ret = vcpu_run(c->vcpu);
		c->exit_reason = run->exit_reason;
		if (c->ret) {
			c->err = errno;
			if (c->err == EINTR && !c->stop)
				continue;
			break;
		}
		if (run->exit_reason == KVM_EXIT_MMIO &&
		    run->mmio.phys_addr >= DATA_GPA &&
		    run->mmio.phys_addr < DATA_GPA + DATA_SIZE &&
		    run->mmio.len == 8) {
			if (run->mmio.is_write) {
				c->mmio_writes++;
			} else {
				memcpy(run->mmio.data, &mark, 8);
				c->mmio_reads++;
			}
			continue;
		}
		if (run->exit_reason != KVM_EXIT_IO ||
		    run->io.port != UCALL_PORT || run->io.size != 4 ||
		    run->io.direction != KVM_EXIT_IO_OUT)
			break;
		memcpy(&ptr, (uint8_t *)run + run->io.data_offset, 4);
		memcpy(&c->uc, (void *)(uintptr_t)ptr, sizeof(c->uc));
		c->cmd = c->uc.cmd;
		break;
	}
	c->done = true;
	return NULL;
}

/* Wait for the guest to count another check; false after @ms. */
static bool wait_count(volatile uint64_t *count, uint64_t old,
		       struct churn_vcpu *c)
{
	uint64_t end = x86_now_ms() + CHURN_WAIT_MS;

	while (*count == old) {
		if (c->done || x86_now_ms() >= end)
			return false;
		usleep(20);
	}
	return true;
}

/* Slot 1 on @mem (or gone if NULL), and ctl.state saying so */
static bool churn_set(struct guest_vm *g, uint8_t *mem, uint64_t state)
{
	bool ok;

	seq_begin();
	ok = !set_slot(g, DATA_SLOT, DATA_GPA, mem, mem ? DATA_SIZE : 0);
	ctl.state = state;
	seq_end();
	return ok;
}

static void fill(uint8_t *mem, uint64_t seed)
{
	uint64_t i;

	for (i = 0; i < DATA_PAGES; i++)
		page_write((uintptr_t)mem, i, seed);
}

static void case_churn(struct guest_vm *g, uint8_t *a)
{
	unsigned int cycles = 0, misses = 0;
	uint8_t *b, *cur = a, *other;
	struct churn_vcpu c;
	bool slots_ok = true, ok;
	uint64_t end, old;
	int ret;

	b = buf_alloc(DATA_SIZE, true);
	if (!b)
		tap_bail("no memory for the second buffer");
	/* fresh THPs for both (the races above split those of a) */
	madvise(a, DATA_SIZE, MADV_DONTNEED);
	fill(a, SEED(T_BUF_A, 0));
	fill(b, SEED(T_BUF_B, 0));
	thp_diag("buffer A", a, DATA_SIZE);
	thp_diag("buffer B", b, DATA_SIZE);

	set_cmd(OP_CHURN, 0, 0, 0);
	ctl.state = ST_A;
	memset(&c, 0, sizeof(c));
	c.vcpu = &g->vcpu;
	if (pthread_create(&c.thread, NULL, churn_thread, &c))
		tap_bail("no thread for the vCPU");
	end = x86_now_ms() + CHURN_MS;
	while (cycles < CHURN_CYCLES && x86_now_ms() < end && !c.done) {
		/* gone: the guest must see MMIO */
		old = ctl.stable_absent;
		if (!churn_set(g, NULL, ST_ABSENT)) {
			slots_ok = false;
			break;
		}
		misses += !wait_count(&ctl.stable_absent, old, &c);
		/* back, on the other buffer */
		other = cur == a ? b : a;
		old = ctl.stable;
		if (!churn_set(g, other, other == a ? ST_A : ST_B)) {
			slots_ok = false;
			break;
		}
		cur = other;
		misses += !wait_count(&ctl.stable, old, &c);
		cycles++;
	}
	if (!slots_ok)
		tap_diag("KVM_SET_USER_MEMORY_REGION in cycle %u: %s", cycles,
			 strerror(errno));
	ctl.stop = 1;
	end = x86_now_ms() + RUN_MS;
	while (!c.done && x86_now_ms() < end)
		usleep(1000);
	if (!c.done) {
		c.stop = true;
		g->vcpu.run->immediate_exit = 1;
		end = x86_now_ms() + 5000;
		while (!c.done) {
			if (x86_now_ms() >= end)
				tap_bail("the vCPU thread stays in KVM_RUN");
			pthread_kill(c.thread, SIGUSR1);
			usleep(10000);
		}
		g->vcpu.run->immediate_exit = 0;
	}
	pthread_join(c.thread, NULL);
	tap_diag("%u cycles, %u MMIO reads, %u MMIO writes, %u checks not in time",
		 cycles, c.mmio_reads, c.mmio_writes, misses);
	tap_diag("guest: %llu passes; reads %llu while absent, %llu present, %llu mid-change",
		 (unsigned long long)ctl.passes,
		 (unsigned long long)ctl.stable_absent,
		 (unsigned long long)ctl.stable,
		 (unsigned long long)ctl.unstable);
	ok = c.cmd == UCALL_SYNC;
	if (!ok && c.ret)
		tap_diag("vCPU thread: KVM_RUN failed: %s (exit %s)",
			 strerror(c.err), exit_name(c.exit_reason));
	else if (!ok)
		tap_diag("vCPU thread: exit %s (%u)", exit_name(c.exit_reason),
			 c.exit_reason);
	if (ok && slots_ok && on_kvm && !ctl.passes && !ctl.rep.bad)
		/*
		 * Seen in the Bochs host only, with Debian's KVM: its vCPU
		 * made no pass at all between the slot changes.  Vireo's
		 * must (the same run is a failure on /dev/vireo).
		 */
		tap_skip("Debian's KVM ran no guest pass in time under Bochs",
			 "slot 1 deleted and re-added %u times on two THP buffers under a running guest",
			 cycles);
	else
		tap_ok(ok && slots_ok && report_ok(&ctl.rep, "guest") &&
		       ctl.stable_absent > 0 && ctl.stable > 0,
		       "slot 1 deleted and re-added %u times on two THP buffers under a running guest: absent reads MMIO, present reads the buffer",
		       cycles);
	if (!ok)
		tap_bail("the guest is lost");

	/* the slot must be there, on the buffer last added */
	if (!slots_ok && set_slot(g, DATA_SLOT, DATA_GPA, cur, DATA_SIZE))
		tap_diag("re-adding slot 1: %s", strerror(errno));
	other = cur == a ? b : a;
	model_set(0, DATA_PAGES, SEED(T_FINAL, 1));
	host_write(cur, 0, DATA_PAGES);
	fill(other, SEED(T_OTHER, 1));
	ret = guest_cmd(g, OP_VERIFY, 0, DATA_PAGES, 0, "guest at the end");
	need(ret);
	ok = ret == 1;
	set_cmd(OP_EXIT, 0, 0, 0);
	ret = guest_run(g, &c.uc);
	if (ret != UCALL_DONE) {
		explain(g, ret, &c.uc, "guest exit");
		ok = false;
	}
	tap_ok(ok, "the guest then reads exactly the VMM's last values in buffer %s",
	       cur == a ? "A" : "B");
	munmap(b, DATA_SIZE);
}

int main(int argc, char **argv)
{
	const char *dev = test_device(argc, argv);
	struct sigaction sa;

	on_kvm = !strcmp(dev, "/dev/kvm");
	struct guest_vm g;
	uint8_t *mem;
	bool ro;

	tap_plan(10);
	tap_diag("device %s", dev);
	/* no SA_RESTART: a signal ends KVM_RUN */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigusr1;
	sigaction(SIGUSR1, &sa, NULL);

	if (!x86_guest_create(&g, dev, guest_main, 0))
		tap_bail("cannot build a VM around the guest function");
	mem = buf_alloc(DATA_SIZE, true);
	if (!mem)
		tap_bail("no memory for slot 1");
	if (set_slot(&g, DATA_SLOT, DATA_GPA, mem, DATA_SIZE))
		tap_bail("slot 1: %s", strerror(errno));

	case_fill(&g, mem);
	case_dontneed(&g, mem);
	ro = case_mprotect(&g, mem);
	case_concurrent(&g, mem, ro);
	case_ksm(&g);
	case_churn(&g, mem);

	guest_vm_destroy(&g);
	munmap(mem, DATA_SIZE);
	tap_done();
}
