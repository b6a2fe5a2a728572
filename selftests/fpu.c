// SPDX-License-Identifier: GPL-2.0-only
/*
 * FPU state: KVM_GET/SET_FPU, KVM_GET/SET_XSAVE, KVM_GET_XSAVE2,
 * KVM_GET/SET_XCRS; a guest that turns on SSE and XSAVE, sets XCR0 and
 * loads XMM (and YMM) values the host then reads with KVM_GET_XSAVE,
 * and stores the values the host wrote with KVM_SET_XSAVE.  Then the
 * guest and host threads (one on the vCPU thread's CPU, one on another)
 * each load, keep and check their own vector register patterns while
 * the guest exits often: neither may ever see the other's values.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "lib/guest.h"
#include "lib/tap.h"
#include "lib/x86.h"

#define VEC_BYTES	512	/* 16 YMM registers */
#define STRESS_NS	1000000000LL
#define GUEST_SPIN	20000

/* shared with the guest: the guest runs in this binary's image */
static uint8_t g_pattern[VEC_BYTES] __attribute__((aligned(64)));
static uint8_t g_out[VEC_BYTES] __attribute__((aligned(64)));
static uint64_t g_xcr0;
static volatile int g_avx, g_stop;

static bool avx;		/* KVM offers it, the host has it */
static uint64_t supported_xcr0;

static GUEST_CODE void vec_load(const void *p)
{
	if (g_avx)
		ymm_load(p);
	else
		xmm_load(p);
}

static GUEST_CODE void vec_store(void *p)
{
	if (g_avx)
		ymm_store(p);
	else
		xmm_store(p);
}

/* Load g_pattern, report, store what the registers hold to g_out. */
static volatile uint64_t g_seen_xcr0;

/*
 * Turn on SSE/XSAVE, report what XGETBV said, load g_pattern, report,
 * store what the registers hold to g_out.
 */
static GUEST_CODE void guest_basic(uint64_t arg)
{
	(void)arg;
	g_seen_xcr0 = x86_guest_enable_fpu(g_xcr0);
	GUEST_SYNC(0);
	vec_load(g_pattern);
	GUEST_SYNC(1);
	vec_store(g_out);
	GUEST_SYNC(2);
	GUEST_DONE();
}

static GUEST_CODE void fill_pattern(uint8_t *p, uint64_t seed)
{
	volatile uint64_t *q = (volatile uint64_t *)p;
	int i;

	for (i = 0; i < VEC_BYTES / 8; i++)
		q[i] = seed * 0x9e3779b97f4a7c15ULL + i * 0x0101010101010101ULL;
}

/* New values each round, kept across an exit and a spin, checked. */
static GUEST_CODE void guest_stress(uint64_t arg)
{
	volatile uint64_t *a = (volatile uint64_t *)g_pattern;
	volatile uint64_t *b = (volatile uint64_t *)g_out;
	uint64_t round;
	int i, bad;

	x86_guest_enable_fpu(g_xcr0);
	sti();
	for (round = 1; !g_stop; round++) {
		fill_pattern(g_pattern, round ^ (arg << 32));
		vec_load(g_pattern);
		for (i = 0; i < GUEST_SPIN; i++)
			asm volatile("pause");
		GUEST_SYNC(round);
		for (i = 0; i < GUEST_SPIN; i++)
			asm volatile("pause");
		vec_store(g_out);
		bad = 0;
		for (i = 0; i < (g_avx ? VEC_BYTES : 256) / 8; i++)
			bad |= a[i] != b[i];
		GUEST_ASSERT(!bad);
	}
	GUEST_DONE();
}

static void pattern(uint8_t *p, uint8_t seed)
{
	int i;

	for (i = 0; i < VEC_BYTES; i++)
		p[i] = seed + i * 7;
}

/*
 * XMM registers at @vec as xmm_store() lays them out (16 bytes each), or
 * YMM registers as ymm_store() does (32 bytes each), against the
 * standard XSAVE layout of KVM_GET_XSAVE.
 */
static bool xsave_has(const uint8_t *xs, const uint8_t *vec, bool ymm)
{
	int i, stride = ymm ? 32 : 16;

	for (i = 0; i < 16; i++) {
		if (memcmp(xs + XSAVE_XMM + 16 * i, vec + stride * i, 16)) {
			tap_diag("xmm%d differs", i);
			return false;
		}
		if (ymm && memcmp(xs + XSAVE_YMM_HI + 16 * i,
				  vec + stride * i + 16, 16)) {
			tap_diag("ymm%d's upper half differs", i);
			return false;
		}
	}
	return true;
}

static void xsave_put(uint8_t *xs, const uint8_t *vec, bool ymm)
{
	int i, stride = ymm ? 32 : 16;
	uint64_t bv;

	for (i = 0; i < 16; i++) {
		memcpy(xs + XSAVE_XMM + 16 * i, vec + stride * i, 16);
		if (ymm)
			memcpy(xs + XSAVE_YMM_HI + 16 * i,
			       vec + stride * i + 16, 16);
	}
	memcpy(&bv, xs + XSAVE_XSTATE_BV, 8);
	bv |= XFEATURE_SSE | (ymm ? XFEATURE_AVX : 0);
	memcpy(xs + XSAVE_XSTATE_BV, &bv, 8);
}

static bool get_xcr0(struct vcpu *vcpu, uint64_t *xcr0)
{
	struct kvm_xcrs x;
	uint32_t i;

	memset(&x, 0, sizeof(x));
	if (ioctl(vcpu->fd, KVM_GET_XCRS, &x))
		return false;
	for (i = 0; i < x.nr_xcrs && i < KVM_MAX_XCRS; i++) {
		if (x.xcrs[i].xcr == 0) {
			*xcr0 = x.xcrs[i].value;
			return true;
		}
	}
	return false;
}

static int set_xcr0(struct vcpu *vcpu, uint64_t xcr0)
{
	struct kvm_xcrs x;

	memset(&x, 0, sizeof(x));
	x.nr_xcrs = 1;
	x.xcrs[0].xcr = 0;
	x.xcrs[0].value = xcr0;
	return ioctl(vcpu->fd, KVM_SET_XCRS, &x);
}

static void test_ioctls(struct guest_vm *g)
{
	static struct kvm_xsave xs, xs2;
	struct vcpu *vcpu = &g->vcpu;
	struct kvm_fpu f, back;
	uint8_t vec[VEC_BYTES];
	uint16_t fcw;
	uint32_t mxcsr;
	uint64_t xcr0 = 0;
	uint8_t *big;
	int i, ret, size;

	ret = ioctl(vcpu->fd, KVM_GET_FPU, &f);
	tap_ok(ret == 0 && f.fcw == 0x37f,
	       "KVM_GET_FPU of a new vCPU: FCW %#x", f.fcw);
	/* KVM neither reports nor takes MXCSR in struct kvm_fpu */
	tap_diag("KVM_GET_FPU's MXCSR is %#x", f.mxcsr);

	ret = ioctl(vcpu->fd, KVM_GET_XSAVE, &xs);
	memcpy(&fcw, (uint8_t *)xs.region + XSAVE_FCW, 2);
	memcpy(&mxcsr, (uint8_t *)xs.region + XSAVE_MXCSR, 4);
	memset(vec, 0, sizeof(vec));
	tap_ok(ret == 0 && fcw == 0x37f && mxcsr == 0x1f80 &&
	       !memcmp((uint8_t *)xs.region + XSAVE_XMM, vec, 256),
	       "KVM_GET_XSAVE of a new vCPU: FCW %#x, MXCSR %#x, XMM 0",
	       fcw, mxcsr);

	pattern(vec, 0x10);
	for (i = 0; i < 16; i++)
		memcpy(f.xmm[i], vec + 16 * i, 16);
	f.fcw = 0x27f;
	ret = ioctl(vcpu->fd, KVM_SET_FPU, &f);
	memset(&back, 0, sizeof(back));
	ret = ret ? ret : ioctl(vcpu->fd, KVM_GET_FPU, &back);
	tap_ok(ret == 0 && back.fcw == 0x27f &&
	       !memcmp(back.xmm, f.xmm, sizeof(f.xmm)),
	       "KVM_SET_FPU then KVM_GET_FPU: XMM0-15 and FCW %#x", back.fcw);

	/* new XMM values and MXCSR (round toward zero) through SET_XSAVE */
	pattern(vec, 0x60);
	xsave_put((uint8_t *)xs.region, vec, false);
	mxcsr = 0x7f80;
	memcpy((uint8_t *)xs.region + XSAVE_MXCSR, &mxcsr, 4);
	ret = ioctl(vcpu->fd, KVM_SET_XSAVE, &xs);
	ret = ret ? ret : ioctl(vcpu->fd, KVM_GET_FPU, &back);
	tap_ok(ret == 0 && !memcmp(back.xmm, vec, 256),
	       "KVM_SET_XSAVE then KVM_GET_FPU: XMM0-15");
	ret = ioctl(vcpu->fd, KVM_GET_XSAVE, &xs2);
	memcpy(&mxcsr, (uint8_t *)xs2.region + XSAVE_MXCSR, 4);
	tap_ok(ret == 0 && mxcsr == 0x7f80 &&
	       !memcmp(xs.region, xs2.region, 512 + 64),
	       "KVM_GET_XSAVE returns the legacy area and header KVM_SET_XSAVE wrote (MXCSR %#x)",
	       mxcsr);

	size = ioctl(g->vm.fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	if (size <= 0) {
		tap_skip("no KVM_CAP_XSAVE2", "KVM_GET_XSAVE2");
	} else {
		big = calloc(1, size);
		ret = big ? ioctl(vcpu->fd, KVM_GET_XSAVE2, big) : -1;
		tap_ok(size >= (int)sizeof(xs) && ret == 0 &&
		       !memcmp(big, xs2.region, 512 + 64),
		       "KVM_CAP_XSAVE2 is %d bytes and KVM_GET_XSAVE2 matches KVM_GET_XSAVE",
		       size);
		free(big);
	}

	if (!supported_xcr0 ||
	    ioctl(g->vm.fd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) <= 0) {
		tap_skip("no XSAVE or no KVM_CAP_XCRS", "KVM_GET_XCRS");
		tap_skip("no XSAVE or no KVM_CAP_XCRS", "KVM_SET_XCRS");
		tap_skip("no XSAVE or no KVM_CAP_XCRS", "KVM_SET_XCRS errors");
		return;
	}
	tap_ok(get_xcr0(vcpu, &xcr0) && xcr0 == XFEATURE_X87,
	       "KVM_GET_XCRS of a new vCPU: XCR0 %#llx",
	       (unsigned long long)xcr0);
	ret = set_xcr0(vcpu, supported_xcr0);
	tap_ok(ret == 0 && get_xcr0(vcpu, &xcr0) && xcr0 == supported_xcr0,
	       "KVM_SET_XCRS of XCR0 %#llx reads back",
	       (unsigned long long)supported_xcr0);
	ret = set_xcr0(vcpu, XFEATURE_SSE);
	tap_ok(ret == -1 && errno == EINVAL &&
	       set_xcr0(vcpu, XFEATURE_X87 | XFEATURE_AVX) == -1 &&
	       errno == EINVAL,
	       "KVM_SET_XCRS of XCR0 without x87, or AVX without SSE, is EINVAL");
	set_xcr0(vcpu, XFEATURE_X87);
}

static void test_guest(const char *dev)
{
	static struct kvm_xsave xs;
	uint8_t host_vec[VEC_BYTES];
	struct guest_vm g;
	struct ucall uc;
	uint64_t xcr0 = 0;
	bool ok;

	g_xcr0 = supported_xcr0;
	g_avx = avx;
	g_stop = 0;
	if (!x86_guest_create(&g, dev, guest_basic, 0))
		tap_bail("cannot build a long-mode guest with an IDT");
	test_ioctls(&g);

	pattern(g_pattern, 0xa0);
	ok = guest_run(&g, &uc) == UCALL_SYNC && uc.arg == 0;
	if (!supported_xcr0) {
		tap_skip("no XSAVE", "after the guest's XSETBV KVM_GET_XCRS says its XCR0");
	} else if (ok && !get_xcr0(&g.vcpu, &xcr0)) {
		ok = false;
		tap_ok(false, "KVM_GET_XCRS after the guest's XSETBV");
	} else if (ok && xcr0 != supported_xcr0 && g_seen_xcr0 == supported_xcr0 &&
	    x86_host_is_tcg()) {
		/* the guest's XCR0 changed under KVM's feet: no exit */
		tap_skip("QEMU TCG's nested SVM does not intercept XSETBV",
			 "after the guest's XSETBV KVM_GET_XCRS says XCR0 %#llx",
			 (unsigned long long)xcr0);
		ok = !set_xcr0(&g.vcpu, supported_xcr0);
	} else {
		tap_ok(ok && xcr0 == supported_xcr0 &&
		       g_seen_xcr0 == supported_xcr0,
		       "after the guest's XSETBV KVM_GET_XCRS says XCR0 %#llx, XGETBV %#llx",
		       (unsigned long long)xcr0,
		       (unsigned long long)g_seen_xcr0);
	}
	ok = ok && guest_run(&g, &uc) == UCALL_SYNC && uc.arg == 1;
	if (!ok)
		tap_diag("ucall %llu %s arg %llu line %llu",
			 (unsigned long long)uc.cmd, uc.expr ? uc.expr : "",
			 (unsigned long long)uc.arg,
			 (unsigned long long)uc.line);
	ok = ok && !ioctl(g.vcpu.fd, KVM_GET_XSAVE, &xs);
	tap_ok(ok && xsave_has((uint8_t *)xs.region, g_pattern, avx),
	       "KVM_GET_XSAVE has the %s values the guest loaded",
	       avx ? "YMM" : "XMM");

	pattern(host_vec, 0x35);
	xsave_put((uint8_t *)xs.region, host_vec, avx);
	ok = ok && !ioctl(g.vcpu.fd, KVM_SET_XSAVE, &xs) &&
	     guest_run(&g, &uc) == UCALL_SYNC && uc.arg == 2;
	tap_ok(ok && !memcmp(g_out, host_vec, avx ? VEC_BYTES : 256),
	       "the guest's registers hold the %s values KVM_SET_XSAVE wrote",
	       avx ? "YMM" : "XMM");
	ok = ok && guest_run(&g, &uc) == UCALL_DONE;
	tap_ok(ok && x86_log.n == 0, "the guest finishes without exceptions");
	guest_vm_destroy(&g);
}

/* A host thread cycling its own pattern through the vector registers */
struct hog {
	pthread_t thread;
	int cpu;
	bool ymm;
	uint8_t pat[VEC_BYTES];
	uint8_t out[VEC_BYTES];
	volatile bool stop;
	unsigned long rounds, bad;
	bool pinned;
};

static bool pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return !sched_setaffinity(0, sizeof(set), &set);
}

static void *hog_fn(void *arg)
{
	struct hog *h = arg;

	h->pinned = pin(h->cpu);
	while (!h->stop) {
		if (h->ymm)
			ymm_cycle(h->pat, h->out);
		else
			xmm_cycle(h->pat, h->out);
		if (memcmp(h->pat, h->out, h->ymm ? VEC_BYTES : 256))
			h->bad++;
		h->rounds++;
	}
	return NULL;
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void stress(const char *dev, bool ymm, int ncpus)
{
	const char *name = ymm ? "YMM" : "XMM";
	struct hog *hogs;
	struct guest_vm g;
	struct ucall uc;
	unsigned long rounds = 0;
	int64_t end;
	int i, nhogs = ncpus > 1 ? 2 : 1;
	bool ok = true;

	hogs = calloc(2, sizeof(*hogs));
	if (!hogs || !pin(0))
		tap_bail("cannot pin the vCPU thread to CPU 0");
	g_xcr0 = supported_xcr0;
	g_avx = ymm;
	g_stop = 0;
	/* XCR0 from the host too: see test_guest() */
	if (!x86_guest_create(&g, dev, guest_stress, ymm) ||
	    (supported_xcr0 && set_xcr0(&g.vcpu, supported_xcr0)))
		tap_bail("cannot build the guest of the %s test", name);
	for (i = 0; i < nhogs; i++) {
		hogs[i].cpu = i;
		hogs[i].ymm = ymm;
		pattern(hogs[i].pat, 0xc0 + 0x11 * i);
		pthread_create(&hogs[i].thread, NULL, hog_fn, &hogs[i]);
	}
	end = now_ns() + STRESS_NS;
	while (ok && now_ns() < end) {
		ok = guest_run(&g, &uc) == UCALL_SYNC && uc.arg == rounds + 1;
		rounds++;
	}
	/* the guest checks the last round, sees g_stop and finishes */
	g_stop = 1;
	ok = ok && guest_run(&g, &uc) == UCALL_DONE;
	if (!ok)
		tap_diag("round %lu: exit %s, ucall %llu %s (%s:%llu)", rounds,
			 exit_name(g.vcpu.run->exit_reason),
			 (unsigned long long)uc.cmd, uc.expr ? uc.expr : "",
			 uc.file ? uc.file : "-",
			 (unsigned long long)uc.line);
	for (i = 0; i < nhogs; i++) {
		hogs[i].stop = true;
		pthread_join(hogs[i].thread, NULL);
	}
	tap_ok(ok && rounds > 1,
	       "%s: the guest kept its own values through %lu exits and spins",
	       name, rounds);
	tap_ok(hogs[0].pinned && hogs[0].rounds > 0 && !hogs[0].bad,
	       "%s: a host thread on the vCPU's CPU kept its own in %lu of %lu rounds",
	       name, hogs[0].rounds - hogs[0].bad, hogs[0].rounds);
	if (nhogs > 1)
		tap_ok(hogs[1].pinned && hogs[1].rounds > 0 && !hogs[1].bad,
		       "%s: a host thread on CPU 1 kept its own in %lu of %lu rounds",
		       name, hogs[1].rounds - hogs[1].bad, hogs[1].rounds);
	else
		tap_skip("one CPU", "%s: a host thread on another CPU", name);
	guest_vm_destroy(&g);
	free(hogs);
}

int main(int argc, char **argv)
{
	const char *dev = test_device(argc, argv);
	struct kvm_cpuid_entry2 e1, ed;
	int kvm, ncpus;
	bool xsave;

	tap_plan(19);
	kvm = open(dev, O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		tap_bail("cannot open %s", dev);
	if (!x86_supported_cpuid(kvm, 1, 0, &e1))
		tap_bail("no CPUID leaf 1 from KVM_GET_SUPPORTED_CPUID");
	xsave = (e1.ecx & (1U << 26)) &&
		x86_supported_cpuid(kvm, 0xd, 0, &ed);
	supported_xcr0 = xsave ? XFEATURE_X87 | XFEATURE_SSE : 0;
	avx = xsave && (e1.ecx & (1U << 28)) && (ed.eax & XFEATURE_AVX) &&
	      x86_host_has_avx();
	if (avx)
		supported_xcr0 |= XFEATURE_AVX;
	tap_diag("guest XCR0 %#llx, AVX %s", (unsigned long long)supported_xcr0,
		 avx ? "yes" : "no");
	close(kvm);

	test_guest(dev);
	ncpus = sysconf(_SC_NPROCESSORS_ONLN);
	stress(dev, false, ncpus);
	if (avx) {
		stress(dev, true, ncpus);
	} else {
		tap_skip("no AVX", "YMM: the guest kept its own values");
		tap_skip("no AVX", "YMM: a host thread on the vCPU's CPU");
		tap_skip("no AVX", "YMM: a host thread on CPU 1");
	}
	tap_done();
}
