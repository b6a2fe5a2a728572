// SPDX-License-Identifier: GPL-2.0-only
#include <unistd.h>

#include "tap.h"

struct tap_state tap;

void tap_plan(int n)
{
	tap.planned = n;
	printf("TAP version 13\n1..%d\n", n);
	fflush(stdout);
}

void tap_diag(const char *fmt, ...)
{
	va_list ap;

	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

bool tap_ok(bool cond, const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	tap.run++;
	printf("%s %d ", cond ? "ok" : "not ok", tap.run);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	if (!cond && saved)
		printf(" # errno %d (%s)", saved, strerror(saved));
	printf("\n");
	fflush(stdout);
	if (cond)
		tap.passed++;
	else
		tap.failed++;
	errno = saved;
	return cond;
}

void tap_skip(const char *reason, const char *fmt, ...)
{
	va_list ap;

	tap.run++;
	tap.skipped++;
	printf("ok %d ", tap.run);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf(" # SKIP %s\n", reason);
	fflush(stdout);
}

void tap_done(void)
{
	if (tap.run != tap.planned) {
		printf("# planned %d tests but ran %d\n", tap.planned, tap.run);
		tap.failed++;
	}
	printf("# Totals: pass:%d fail:%d xfail:0 xpass:0 skip:%d error:0\n",
	       tap.passed, tap.failed, tap.skipped);
	fflush(stdout);
	if (tap.failed)
		exit(KSFT_FAIL);
	exit(tap.passed ? KSFT_PASS : KSFT_SKIP);
}

void tap_bail(const char *fmt, ...)
{
	va_list ap;

	printf("# bailing out: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	while (tap.run < tap.planned)
		tap_ok(false, "not reached");
	tap_done();
}

const char *test_device(int argc, char **argv)
{
	return argc > 1 ? argv[1] : "/dev/vireo";
}

bool test_is_kvm(const char *dev)
{
	return strstr(dev, "kvm");
}
