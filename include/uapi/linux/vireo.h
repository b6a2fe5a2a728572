/* SPDX-License-Identifier: GPL-2.0-only WITH Linux-syscall-note */
/*
 * Vireo's extensions to the KVM ioctl ABI.
 *
 * /dev/vireo speaks the ioctl numbers and structures of <linux/kvm.h>.
 * What KVM does not have lives here, in its own ioctl range so that it
 * can never collide with a KVM ioctl.
 */
#ifndef _UAPI_LINUX_VIREO_H
#define _UAPI_LINUX_VIREO_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define VIREO_DEVICE_PATH	"/dev/vireo"

/* Vireo's private ioctls use this type byte (KVM uses 0xAE). */
#define VIREOIO			0xAF

/* Which vendor backend is loaded: one of VIREO_BACKEND_*. */
#define VIREO_GET_BACKEND	_IO(VIREOIO, 0x00)
#define VIREO_BACKEND_NONE	0
#define VIREO_BACKEND_VMX	1
#define VIREO_BACKEND_SVM	2

#endif /* _UAPI_LINUX_VIREO_H */
