// SPDX-License-Identifier: GPL-2.0-only
/*
 * Time: the KVM paravirtual CPUID leaves (signature, CLOCKSOURCE2),
 * KVM_GET/SET_TSC_KHZ, KVM_GET/SET_CLOCK and their flags, and a
 * long-mode guest that enables kvmclock (MSR_KVM_SYSTEM_TIME_NEW),
 * reads it the pvclock way and finds it monotonic, inside the host's
 * KVM_GET_CLOCK window and following a KVM_SET_CLOCK; then fetches the
 * wall clock (MSR_KVM_WALL_CLOCK_NEW) and disables kvmclock again.
 */
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <time.h>

#include "lib/guest.h"
#include "lib/tap.h"
#include "lib/x86.h"

#define NSEC			1000000000ULL
#define KVM_SIG_BASE		0x40000000
#define KVM_SIG_FEATURES	0x40000001
#define KVM_FEATURE_CLOCKSOURCE2	0x8
#define UNKNOWN_CLOCK_FLAG	0x80000000U
#define READS			1000
#define GUEST_TESTS		8
/*
 * kvmclock and KVM_GET_CLOCK are one clock, so the guest's readings lie
 * exactly inside the KVM_GET_CLOCK calls around its KVM_RUN.
 */
#define CLOCK_SLACK_NS		0

/* The pvclock ABI, as the hypervisor writes it into guest memory */
struct pvclock_vcpu_time_info {
	uint32_t version;
	uint32_t pad0;
	uint64_t tsc_timestamp;
	uint64_t system_time;
	uint32_t tsc_to_system_mul;
	int8_t tsc_shift;
	uint8_t flags;
	uint8_t pad[2];
} __attribute__((packed));

struct pvclock_wall_clock {
	uint32_t version;
	uint32_t sec;
	uint32_t nsec;
} __attribute__((packed));

static volatile struct pvclock_vcpu_time_info pvti __attribute__((aligned(32)));
static volatile struct pvclock_wall_clock wall __attribute__((aligned(16)));
/* the guest's kvmclock readings */
static volatile uint64_t first_ns, last_ns, jump_ns;

/* ns = ((ticks << shift) * mul) >> 32; for guest and host alike */
static inline __attribute__((target("general-regs-only")))
uint64_t pvclock_scale(uint64_t delta, uint32_t mul, int8_t shift)
{
	if (shift < 0)
		delta >>= -shift;
	else
		delta <<= shift;
	return (uint64_t)(((__uint128_t)delta * mul) >> 32);
}

static GUEST_CODE uint64_t kvmclock_read(void)
{
	uint64_t ns, tsc;
	uint32_t v;
	uint32_t lo, hi;

	do {
		v = pvti.version;
		/* the TSC is read after the version, not speculated earlier */
		asm volatile("lfence; rdtsc" : "=a" (lo), "=d" (hi) : : "memory");
		tsc = (uint64_t)hi << 32 | lo;
		ns = pvti.system_time +
		     pvclock_scale(tsc - pvti.tsc_timestamp,
				   pvti.tsc_to_system_mul, pvti.tsc_shift);
		asm volatile("" : : : "memory");
	} while ((v & 1) || v != pvti.version);
	return ns;
}

static GUEST_CODE void guest_main(uint64_t arg)
{
	uint64_t prev, now;
	int i;

	(void)arg;
	wrmsr(MSR_KVM_SYSTEM_TIME_NEW, (uintptr_t)&pvti | 1);
	prev = kvmclock_read();
	first_ns = prev;
	for (i = 0; i < READS; i++) {
		now = kvmclock_read();
		GUEST_ASSERT(now >= prev);
		prev = now;
	}
	last_ns = prev;
	GUEST_SYNC(1);
	jump_ns = kvmclock_read();
	GUEST_SYNC(2);
	wrmsr(MSR_KVM_WALL_CLOCK_NEW, (uintptr_t)&wall);
	GUEST_SYNC(3);
	wrmsr(MSR_KVM_SYSTEM_TIME_NEW, 0);
	GUEST_DONE();
}

static uint64_t get_clock(int fd)
{
	struct kvm_clock_data d;

	memset(&d, 0, sizeof(d));
	return ioctl(fd, KVM_GET_CLOCK, &d) ? 0 : d.clock;
}

static int set_clock(int fd, uint64_t clock, uint32_t flags,
		     uint64_t realtime)
{
	struct kvm_clock_data d;

	memset(&d, 0, sizeof(d));
	d.clock = clock;
	d.flags = flags;
	d.realtime = realtime;
	return ioctl(fd, KVM_SET_CLOCK, &d);
}

static uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec * NSEC + ts.tv_nsec;
}

/* Tests 1-2; true if the device offers kvmclock (CLOCKSOURCE2) */
static bool test_cpuid(int kvm)
{
	struct kvm_cpuid_entry2 e;
	bool ok;

	ok = x86_supported_cpuid(kvm, KVM_SIG_BASE, 0, &e);
	tap_ok(ok && e.ebx == 0x4b4d564b && e.ecx == 0x564b4d56 &&
	       e.edx == 0x4d && e.eax >= KVM_SIG_FEATURES,
	       "supported CPUID %#x is \"KVMKVMKVM\" with max leaf %#x",
	       KVM_SIG_BASE, ok ? e.eax : 0);
	if (!x86_supported_cpuid(kvm, KVM_SIG_FEATURES, 0, &e) ||
	    !(e.eax & KVM_FEATURE_CLOCKSOURCE2)) {
		tap_skip("no KVM_FEATURE_CLOCKSOURCE2",
			 "supported CPUID %#x offers kvmclock", KVM_SIG_FEATURES);
		return false;
	}
	tap_ok(true, "supported CPUID %#x offers kvmclock (EAX %#x)",
	       KVM_SIG_FEATURES, e.eax);
	return true;
}

/* Tests 3-4, in a VM of their own: KVM may leave a vCPU "catching up" */
static void test_tsc_khz(const char *dev)
{
	long khz = -1, again = -1;
	struct vcpu vcpu;
	struct vm vm;
	int ret = -1;
	bool ok;

	ok = vm_create(&vm, dev);
	if (ok && !vcpu_create(&vm, &vcpu, 0)) {
		vm_destroy(&vm);
		ok = false;
	}
	if (ok)
		khz = ioctl(vcpu.fd, KVM_GET_TSC_KHZ, 0);
	tap_ok(khz > 0, "KVM_GET_TSC_KHZ is %ld", khz);
	if (khz > 0) {
		ret = ioctl(vcpu.fd, KVM_SET_TSC_KHZ, khz);
		again = ioctl(vcpu.fd, KVM_GET_TSC_KHZ, 0);
	}
	tap_ok(ret == 0 && again == khz,
	       "KVM_SET_TSC_KHZ of the same rate succeeds and reads back (%ld)",
	       again);
	if (khz > 0) {
		ret = ioctl(vcpu.fd, KVM_SET_TSC_KHZ, khz + khz / 10);
		tap_diag("KVM_SET_TSC_KHZ of %ld kHz (+10%%): %d (%s), then GET says %d",
			 khz + khz / 10, ret, ret ? strerror(errno) : "ok",
			 ioctl(vcpu.fd, KVM_GET_TSC_KHZ, 0));
	}
	if (ok) {
		vcpu_destroy(&vm, &vcpu);
		vm_destroy(&vm);
	}
}

/* Tests 5-10 */
static void test_clock_ioctls(int kvm, int fd)
{
	int adjust = ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_ADJUST_CLOCK);
	uint32_t other = adjust > 0 ? adjust & ~KVM_CLOCK_REALTIME : 0;
	struct kvm_clock_data d;
	uint64_t a, b, x;
	int ret;

	memset(&d, 0, sizeof(d));
	ret = ioctl(fd, KVM_GET_CLOCK, &d);
	tap_ok(ret == 0, "KVM_GET_CLOCK: %llu ns, flags %#x (KVM_CAP_ADJUST_CLOCK %#x)",
	       (unsigned long long)d.clock, d.flags, adjust);
	a = get_clock(fd);
	b = get_clock(fd);
	tap_ok(a >= d.clock && b >= a, "KVM_GET_CLOCK never goes backwards");

	x = get_clock(fd) + 1000 * NSEC;
	ret = set_clock(fd, x, 0, 0);
	a = get_clock(fd);
	tap_ok(ret == 0 && a >= x && a < x + 60 * NSEC,
	       "KVM_SET_CLOCK 1000 s ahead, KVM_GET_CLOCK then reads +%lld ns",
	       (long long)(a - x));

	ret = set_clock(fd, get_clock(fd), UNKNOWN_CLOCK_FLAG, 0);
	TAP_ERRNO(ret, EINVAL, "KVM_SET_CLOCK with flag %#x is EINVAL",
		  UNKNOWN_CLOCK_FLAG);

	if (!other) {
		tap_skip("KVM_CAP_ADJUST_CLOCK has no flag but REALTIME",
			 "KVM_SET_CLOCK ignores KVM_GET_CLOCK's other flags");
	} else {
		x = get_clock(fd) + NSEC;
		ret = set_clock(fd, x, other, 0);
		a = get_clock(fd);
		tap_ok(ret == 0 && a >= x && a < x + 60 * NSEC,
		       "KVM_SET_CLOCK accepts and ignores KVM_GET_CLOCK's flags %#x",
		       other);
	}

	if (adjust <= 0 || !(adjust & KVM_CLOCK_REALTIME)) {
		tap_skip("no KVM_CLOCK_REALTIME",
			 "KVM_SET_CLOCK with KVM_CLOCK_REALTIME");
	} else {
		/* a realtime 10 s old: the clock is set 10 s further */
		x = get_clock(fd) + NSEC;
		ret = set_clock(fd, x, KVM_CLOCK_REALTIME,
				realtime_ns() - 10 * NSEC);
		a = get_clock(fd);
		tap_ok(ret == 0 && a >= x + 10 * NSEC && a < x + 70 * NSEC,
		       "KVM_SET_CLOCK with a realtime 10 s old adds %lld ms",
		       (long long)(a - x) / 1000000);
	}
}

/* Tests 11-18 */
static void test_guest(struct guest_vm *g)
{
	int fd = g->vm.fd;
	uint64_t before, after, y, msr = 1, wall_ns, sum;
	long khz = ioctl(g->vcpu.fd, KVM_GET_TSC_KHZ, 0);
	uint64_t one_s;
	struct ucall uc;
	bool ok;

	before = get_clock(fd);
	ok = guest_run(g, &uc) == UCALL_SYNC && uc.arg == 1;
	after = get_clock(fd);
	tap_ok(ok, "the guest reads kvmclock %d times, never backwards (ucall %llu %s line %llu)",
	       READS, (unsigned long long)uc.cmd, uc.expr ? uc.expr : "",
	       (unsigned long long)uc.line);

	/* the pvclock's rate against the vCPU's TSC rate: 1 s within 1% */
	one_s = khz > 0 ? pvclock_scale(khz * 1000ULL, pvti.tsc_to_system_mul,
					pvti.tsc_shift) : 0;
	tap_ok(pvti.version && !(pvti.version & 1) && pvti.tsc_to_system_mul &&
	       one_s > NSEC / 100 * 99 && one_s < NSEC / 100 * 101,
	       "the host sees pvclock version %u, mul %u, shift %d (%ld kHz is %llu ns/s)",
	       pvti.version, pvti.tsc_to_system_mul, pvti.tsc_shift, khz,
	       (unsigned long long)one_s);

	ok = ok && first_ns + CLOCK_SLACK_NS >= before && first_ns <= last_ns &&
	     last_ns <= after + CLOCK_SLACK_NS;
	tap_ok(ok, "the guest's kvmclock is inside the KVM_GET_CLOCK window (%+lld, -%lld ns)",
	       (long long)(first_ns - before), (long long)(after - last_ns));

	ok = x86_get_msr(&g->vcpu, MSR_KVM_SYSTEM_TIME_NEW, &msr);
	tap_ok(ok && msr == ((uintptr_t)&pvti | 1),
	       "KVM_GET_MSRS of MSR_KVM_SYSTEM_TIME_NEW is what the guest wrote (%#llx)",
	       (unsigned long long)msr);

	y = get_clock(fd) + 100 * NSEC;
	ok = set_clock(fd, y, 0, 0) == 0 && guest_run(g, &uc) == UCALL_SYNC &&
	     uc.arg == 2;
	tap_ok(ok && jump_ns >= y && jump_ns < y + 60 * NSEC,
	       "after KVM_SET_CLOCK 100 s ahead the guest reads +%lld ns",
	       (long long)(jump_ns - y));

	ok = guest_run(g, &uc) == UCALL_SYNC && uc.arg == 3;
	tap_ok(ok && wall.version && !(wall.version & 1) &&
	       wall.sec > 1500000000 && wall.nsec < NSEC,
	       "MSR_KVM_WALL_CLOCK_NEW: version %u, %u s %u ns",
	       wall.version, wall.sec, wall.nsec);

	/* the wall clock is when kvmclock was 0 */
	wall_ns = wall.sec * NSEC + wall.nsec;
	sum = wall_ns + get_clock(fd);
	y = realtime_ns();
	tap_ok(ok && sum > y - 10 * NSEC && sum < y + 10 * NSEC,
	       "the wall clock plus KVM_GET_CLOCK is the host's time (%+lld ms)",
	       (long long)(sum - y) / 1000000);

	ok = guest_run(g, &uc) == UCALL_DONE &&
	     x86_get_msr(&g->vcpu, MSR_KVM_SYSTEM_TIME_NEW, &msr);
	tap_ok(ok && msr == 0 && x86_log.n == 0,
	       "the guest disables kvmclock, no exception (MSR %#llx, %u vectors, ucall %llu %s %llu)",
	       (unsigned long long)msr, x86_log.n, (unsigned long long)uc.cmd,
	       uc.expr ? uc.expr : "", (unsigned long long)uc.line);
}

int main(int argc, char **argv)
{
	const char *dev = test_device(argc, argv);
	struct guest_vm g;
	bool pv;
	int i;

	tap_plan(10 + GUEST_TESTS);
	if (!x86_guest_create(&g, dev, guest_main, 0))
		tap_bail("cannot build a long-mode guest with an IDT");
	pv = test_cpuid(g.vm.kvm);
	test_tsc_khz(dev);
	test_clock_ioctls(g.vm.kvm, g.vm.fd);
	if (pv)
		test_guest(&g);
	else
		for (i = 0; i < GUEST_TESTS; i++)
			tap_skip("no KVM_FEATURE_CLOCKSOURCE2", "kvmclock guest");
	guest_vm_destroy(&g);
	tap_done();
}
