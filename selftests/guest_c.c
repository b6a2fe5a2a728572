// SPDX-License-Identifier: GPL-2.0-only
/*
 * Guests written in C (lib/guest.h): a long-mode guest function that
 * computes, reports progress, touches MMIO and finishes; a guest whose
 * assertion fails is reported with its file and line.
 */
#include <linux/kvm.h>
#include <string.h>

#include "lib/guest.h"
#include "lib/tap.h"

#define MMIO_ADDR	0x10000000UL

static GUEST_CODE uint64_t fib(uint64_t n)
{
	uint64_t a = 0, b = 1, t;

	while (n--) {
		t = a + b;
		a = b;
		b = t;
	}
	return a;
}

static GUEST_CODE void guest_main(uint64_t arg)
{
	volatile uint32_t *mmio = (volatile uint32_t *)MMIO_ADDR;
	uint64_t i;

	for (i = 1; i <= 3; i++)
		GUEST_SYNC(arg * i);
	GUEST_SYNC(fib(40));
	*mmio = 0xfeedf00d;
	GUEST_ASSERT(*mmio == 0x600d600d);
	GUEST_DONE();
}

static GUEST_CODE void guest_bad(uint64_t arg)
{
	GUEST_ASSERT(arg == 42);
	GUEST_DONE();
}

int main(int argc, char **argv)
{
	const char *dev = test_device(argc, argv);
	struct kvm_run *run;
	struct guest_vm g;
	struct ucall uc;
	bool ok = true;
	int i;

	tap_plan(5);
	if (!guest_vm_create(&g, dev, guest_main, 7))
		tap_bail("cannot build a VM around the guest function");
	run = g.vcpu.run;
	for (i = 1; i <= 3; i++)
		ok &= guest_run(&g, &uc) == UCALL_SYNC && uc.arg == 7ULL * i;
	tap_ok(ok, "a C guest in long mode reports 7, 14, 21 through ucalls");
	ok = guest_run(&g, &uc) == UCALL_SYNC;
	tap_ok(ok && uc.arg == 102334155,
	       "and computes fib(40) = 102334155 (got %llu)",
	       (unsigned long long)uc.arg);
	ok = guest_run(&g, &uc) == UCALL_NONE &&
	     run->exit_reason == KVM_EXIT_MMIO && run->mmio.is_write &&
	     run->mmio.phys_addr == MMIO_ADDR && run->mmio.len == 4 &&
	     !memcmp(run->mmio.data, "\x0d\xf0\xed\xfe", 4);
	tap_ok(ok, "its store through a pointer is an MMIO write");
	ok = ok && guest_run(&g, &uc) == UCALL_NONE &&
	     run->exit_reason == KVM_EXIT_MMIO && !run->mmio.is_write;
	if (ok)
		memcpy(run->mmio.data, "\x0d\x60\x0d\x60", 4);
	ok = ok && guest_run(&g, &uc) == UCALL_DONE;
	tap_ok(ok, "it reads back the host's value and finishes (ucall %llu, %s:%llu %s)",
	       (unsigned long long)uc.cmd, uc.file ? uc.file : "-",
	       (unsigned long long)uc.line, uc.expr ? uc.expr : "");
	guest_vm_destroy(&g);

	if (!guest_vm_create(&g, dev, guest_bad, 41))
		tap_bail("cannot build the second VM");
	ok = guest_run(&g, &uc) == UCALL_ASSERT;
	tap_ok(ok && uc.file && strstr(uc.file, "guest_c.c") && uc.expr &&
	       !strcmp(uc.expr, "arg == 42"),
	       "a failed GUEST_ASSERT reports \"%s\" at %s:%llu",
	       uc.expr ? uc.expr : "?", uc.file ? uc.file : "?",
	       (unsigned long long)uc.line);
	guest_vm_destroy(&g);
	tap_done();
}
