/* SPDX-License-Identifier: GPL-2.0-only */
#ifndef VIREO_SELFTEST_UTIL_H
#define VIREO_SELFTEST_UTIL_H

#include <stdbool.h>

/* VIREO_BACKEND_SVM on AMD, VIREO_BACKEND_VMX on Intel, else NONE. */
int cpu_backend(void);
/* "svm" or "vmx" for this CPU, the other one for other_vendor(). */
const char *cpu_vendor_name(void);
const char *other_vendor_name(void);

/* finit_module() of a file; -1 with errno on failure. */
int module_load(const char *path);
/* delete_module(name, O_NONBLOCK); -1 with errno on failure. */
int module_unload(const char *name);
/* Whether /sys/module/<name> exists. */
bool module_loaded(const char *name);

#endif
