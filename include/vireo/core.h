/* SPDX-License-Identifier: GPL-2.0-only */
/* Internal interfaces of vireo.ko, not for backends. */
#ifndef _VIREO_CORE_H
#define _VIREO_CORE_H

#include <vireo/backend.h>

/* arch/x86/hw.c: virtualization on all CPUs, through hotplug and suspend */
int vireo_hw_enable_all(const struct vireo_backend *b);
void vireo_hw_disable_all(void);

#endif /* _VIREO_CORE_H */
