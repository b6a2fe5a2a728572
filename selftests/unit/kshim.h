/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The kernel's fixed-size types for code shared between the modules and
 * the userspace unit tests (arch/x86/decode.c, arch/x86/emulate.c).
 */
#ifndef VIREO_UNIT_KSHIM_H
#define VIREO_UNIT_KSHIM_H

#include <stdbool.h>
#include <linux/types.h>

typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef __s8 s8;
typedef __s16 s16;
typedef __s32 s32;
typedef __s64 s64;

#define BIT(n)	(1UL << (n))

#endif
