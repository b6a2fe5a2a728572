/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A small kselftest-style TAP 13 harness.  Every selftest binary takes the
 * device path as its first argument (/dev/vireo by default, /dev/kvm to
 * run the same test against KVM) and prints one TAP stream.
 */
#ifndef VIREO_SELFTEST_TAP_H
#define VIREO_SELFTEST_TAP_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define __printf(a, b)	__attribute__((format(printf, a, b)))
#define __noreturn	__attribute__((noreturn))

#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))

/* kselftest exit codes */
#define KSFT_PASS	0
#define KSFT_FAIL	1
#define KSFT_SKIP	4

struct tap_state {
	int planned, run, passed, failed, skipped;
};

extern struct tap_state tap;

void tap_plan(int n);
__printf(1, 2) void tap_diag(const char *fmt, ...);
/* One test result; returns cond so a caller can stop on failure. */
__printf(2, 3) bool tap_ok(bool cond, const char *fmt, ...);
__printf(2, 3) void tap_skip(const char *reason, const char *fmt, ...);
/* Print the totals and exit with the kselftest code. */
__noreturn void tap_done(void);
/* Abandon the rest of the plan: marks what remains as failed. */
__noreturn __printf(1, 2) void tap_bail(const char *fmt, ...);

/* Device path from argv, default /dev/vireo. */
const char *test_device(int argc, char **argv);
/* True when the device is KVM's, for the few places Vireo differs. */
bool test_is_kvm(const char *dev);

/* Check an ioctl-style result: ret == -1 and errno == want. */
#define TAP_ERRNO(ret, want, ...) \
	tap_ok((ret) == -1 && errno == (want), __VA_ARGS__)

#endif
