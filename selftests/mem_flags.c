// SPDX-License-Identifier: GPL-2.0-only
/*
 * Memslot flags and limits: a read-only slot (reads see the VMM's data,
 * writes are MMIO exits), dirty logging over a guest writing a known
 * pattern (the log matches exactly, round after round, with and without
 * KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, and when logging is switched on for
 * a slot the guest already wrote), and the highest slot id.
 */
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "lib/guest.h"
#include "lib/tap.h"

#define PAGE		4096UL
#define DATA_GPA	0x40000000UL	/* identity-mapped by the guest */
#define DATA_PAGES	128
#define ROUNDS		4
#define RO_VALUE	0x1122334455667788ULL
#define MMIO_VALUE	0xdeadbeefU

/* Whether the writer touches page @i in round @r. */
#define WANT(i, r)	((((i) * 7 + (r) * 5) % 3) == 0)

static GUEST_CODE void guest_writer(uint64_t rounds)
{
	uint64_t i, r;

	for (r = 0; r < rounds; r++) {
		for (i = 0; i < DATA_PAGES; i++)
			if (WANT(i, r))
				*(volatile uint64_t *)(DATA_GPA + i * PAGE +
						       8 * r) = r + 1;
		GUEST_SYNC(r);
	}
	GUEST_DONE();
}

/* Writes every page once, then the pattern (logging switched on between). */
static GUEST_CODE void guest_all_then_pattern(uint64_t unused __attribute__((unused)))
{
	uint64_t i;

	for (i = 0; i < DATA_PAGES; i++)
		*(volatile uint64_t *)(DATA_GPA + i * PAGE) = i;
	GUEST_SYNC(0);
	for (i = 0; i < DATA_PAGES; i++)
		if (WANT(i, 1))
			*(volatile uint64_t *)(DATA_GPA + i * PAGE + 8) = i;
	GUEST_SYNC(1);
	GUEST_DONE();
}

static GUEST_CODE void guest_ro(uint64_t base)
{
	volatile uint64_t *p = (volatile uint64_t *)base;

	GUEST_SYNC(p[0]);
	*(volatile uint32_t *)(base + 8) = MMIO_VALUE;
	GUEST_SYNC(p[1]);
	GUEST_DONE();
}

static void *data_alloc(void)
{
	void *p = mmap(NULL, DATA_PAGES * PAGE, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		tap_bail("mmap of the data slot");
	return p;
}

static int set_slot(struct guest_vm *g, uint32_t id, uint64_t gpa,
		    uint64_t size, void *mem, uint32_t flags)
{
	struct kvm_userspace_memory_region r = {
		.slot = id, .flags = flags, .guest_phys_addr = gpa,
		.memory_size = size, .userspace_addr = (uintptr_t)mem,
	};

	return ioctl(g->vm.fd, KVM_SET_USER_MEMORY_REGION, &r);
}

/* The log of slot @id equals "page i written in round r" exactly. */
static bool log_matches(struct guest_vm *g, uint32_t id, uint64_t r,
			const char *what)
{
	uint64_t bitmap[DATA_PAGES / 64];
	struct kvm_dirty_log log = { .slot = id, .dirty_bitmap = bitmap };
	int i, bad = 0, first = -1;

	memset(bitmap, 0x5a, sizeof(bitmap));
	if (ioctl(g->vm.fd, KVM_GET_DIRTY_LOG, &log)) {
		tap_diag("%s: KVM_GET_DIRTY_LOG: %s", what, strerror(errno));
		return false;
	}
	for (i = 0; i < DATA_PAGES; i++) {
		bool set = bitmap[i / 64] >> (i % 64) & 1;

		if (set != WANT(i, r)) {
			bad++;
			if (first < 0)
				first = i;
		}
	}
	if (bad)
		tap_diag("%s round %llu: %d pages wrong, first %d", what,
			 (unsigned long long)r, bad, first);
	return !bad;
}

static bool clear_all(struct guest_vm *g, uint32_t id)
{
	uint64_t bitmap[DATA_PAGES / 64];
	struct kvm_clear_dirty_log c = {
		.slot = id, .first_page = 0, .num_pages = DATA_PAGES,
		.dirty_bitmap = bitmap,
	};

	memset(bitmap, 0xff, sizeof(bitmap));
	return !ioctl(g->vm.fd, KVM_CLEAR_DIRTY_LOG, &c);
}

static void test_dirty_log(const char *dev, bool manual)
{
	struct kvm_enable_cap cap = {
		.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
		.args = { KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE },
	};
	const char *what = manual ? "manual protect" : "get resets";
	bool ok = true, data_ok = true;
	struct guest_vm g;
	struct ucall uc;
	uint64_t r;
	uint8_t *mem;
	int i;

	if (!guest_vm_create(&g, dev, guest_writer, ROUNDS))
		tap_bail("cannot build a VM around the guest function");
	mem = data_alloc();
	if (manual && ioctl(g.vm.fd, KVM_ENABLE_CAP, &cap)) {
		tap_ok(false, "dirty log, %s: KVM_ENABLE_CAP: %s", what,
		       strerror(errno));
		goto out;
	}
	if (set_slot(&g, 1, DATA_GPA, DATA_PAGES * PAGE, mem,
		     KVM_MEM_LOG_DIRTY_PAGES)) {
		tap_ok(false, "dirty log, %s: a logging slot: %s", what,
		       strerror(errno));
		goto out;
	}
	for (r = 0; r < ROUNDS && ok; r++) {
		ok = guest_run(&g, &uc) == UCALL_SYNC && uc.arg == r;
		ok = ok && log_matches(&g, 1, r, what);
		/* reading again: nothing new (reset), or the same (manual) */
		if (ok && manual) {
			ok = log_matches(&g, 1, r, what) && clear_all(&g, 1);
		} else if (ok) {
			uint64_t bitmap[DATA_PAGES / 64];
			struct kvm_dirty_log log = {
				.slot = 1, .dirty_bitmap = bitmap,
			};

			ok = !ioctl(g.vm.fd, KVM_GET_DIRTY_LOG, &log);
			for (i = 0; ok && i < DATA_PAGES / 64; i++)
				ok = !bitmap[i];
		}
	}
	ok = ok && guest_run(&g, &uc) == UCALL_DONE;
	for (i = 0; i < DATA_PAGES; i++)
		for (r = 0; r < ROUNDS; r++)
			if (WANT(i, r) &&
			    *(uint64_t *)(mem + i * PAGE + 8 * r) != r + 1)
				data_ok = false;
	tap_ok(ok && data_ok,
	       "dirty log, %s: %d rounds over %d pages match the guest's writes exactly",
	       what, ROUNDS, DATA_PAGES);
out:
	guest_vm_destroy(&g);
	munmap(mem, DATA_PAGES * PAGE);
}

/* Logging switched on for a slot whose pages are all mapped writable. */
static void test_enable_later(const char *dev)
{
	uint64_t bitmap[DATA_PAGES / 64];
	struct kvm_dirty_log log = { .slot = 1, .dirty_bitmap = bitmap };
	struct guest_vm g;
	struct ucall uc;
	uint8_t *mem;
	bool ok;

	if (!guest_vm_create(&g, dev, guest_all_then_pattern, 0))
		tap_bail("cannot build a VM around the guest function");
	mem = data_alloc();
	ok = !set_slot(&g, 1, DATA_GPA, DATA_PAGES * PAGE, mem, 0);
	ok = ok && ioctl(g.vm.fd, KVM_GET_DIRTY_LOG, &log) == -1 &&
	     errno == ENOENT;
	tap_ok(ok, "KVM_GET_DIRTY_LOG on a slot that does not log is ENOENT");
	ok = guest_run(&g, &uc) == UCALL_SYNC && uc.arg == 0;
	ok = ok && !set_slot(&g, 1, DATA_GPA, DATA_PAGES * PAGE, mem,
			     KVM_MEM_LOG_DIRTY_PAGES);
	ok = ok && guest_run(&g, &uc) == UCALL_SYNC && uc.arg == 1;
	ok = ok && log_matches(&g, 1, 1, "logging switched on");
	ok = ok && !set_slot(&g, 1, DATA_GPA, DATA_PAGES * PAGE, mem, 0);
	ok = ok && guest_run(&g, &uc) == UCALL_DONE;
	tap_ok(ok, "logging switched on for a written slot sees only the later writes");
	guest_vm_destroy(&g);
	munmap(mem, DATA_PAGES * PAGE);
}

static void test_readonly(const char *dev)
{
	struct guest_vm g;
	struct kvm_run *run;
	struct ucall uc;
	uint64_t *mem;
	bool ok;

	if (!guest_vm_create(&g, dev, guest_ro, DATA_GPA))
		tap_bail("cannot build a VM around the guest function");
	run = g.vcpu.run;
	ok = ioctl(g.vm.fd, KVM_CHECK_EXTENSION, KVM_CAP_READONLY_MEM) == 1;
	tap_ok(ok, "KVM_CAP_READONLY_MEM is offered");
	mem = data_alloc();
	mem[0] = RO_VALUE;
	mem[1] = ~RO_VALUE;
	/* a host read-only mapping is fine for a read-only slot */
	mprotect(mem, DATA_PAGES * PAGE, PROT_READ);
	ok = !set_slot(&g, 1, DATA_GPA, DATA_PAGES * PAGE, mem,
		       KVM_MEM_READONLY);
	ok = ok && guest_run(&g, &uc) == UCALL_SYNC && uc.arg == RO_VALUE;
	tap_ok(ok, "a read-only slot (on read-only host memory) reads the VMM's data");
	ok = ok && guest_run(&g, &uc) == UCALL_NONE &&
	     run->exit_reason == KVM_EXIT_MMIO && run->mmio.is_write &&
	     run->mmio.phys_addr == DATA_GPA + 8 && run->mmio.len == 4 &&
	     !memcmp(run->mmio.data, "\xef\xbe\xad\xde", 4);
	ok = ok && guest_run(&g, &uc) == UCALL_SYNC && uc.arg == ~RO_VALUE &&
	     mem[1] == ~RO_VALUE;
	ok = ok && guest_run(&g, &uc) == UCALL_DONE;
	tap_ok(ok, "a write to it is an MMIO exit and changes nothing");
	guest_vm_destroy(&g);
	munmap(mem, DATA_PAGES * PAGE);
}

static void test_last_slot(const char *dev)
{
	struct guest_vm g;
	struct ucall uc;
	uint64_t *mem;
	long n;
	bool ok;

	if (!guest_vm_create(&g, dev, guest_ro, DATA_GPA))
		tap_bail("cannot build a VM around the guest function");
	n = ioctl(g.vm.fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_MEMSLOTS);
	tap_ok(n >= 509, "KVM_CAP_NR_MEMSLOTS is at least 509 (%ld)", n);
	if (n > 509)
		n = 509;
	mem = data_alloc();
	mem[0] = RO_VALUE;
	ok = n > 1 && !set_slot(&g, n - 1, DATA_GPA, DATA_PAGES * PAGE, mem,
				0);
	ok = ok && guest_run(&g, &uc) == UCALL_SYNC && uc.arg == RO_VALUE;
	ok = ok && guest_run(&g, &uc) == UCALL_SYNC &&
	     mem[1] == MMIO_VALUE;
	tap_ok(ok, "slot %ld holds guest memory", n - 1);
	guest_vm_destroy(&g);
	munmap(mem, DATA_PAGES * PAGE);
}

int main(int argc, char **argv)
{
	const char *dev = test_device(argc, argv);

	tap_plan(9);
	test_readonly(dev);
	test_dirty_log(dev, false);
	test_dirty_log(dev, true);
	test_enable_later(dev);
	test_last_slot(dev);
	tap_done();
}
