/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The contract between vireo.ko and a vendor backend (vireo-vmx.ko,
 * vireo-svm.ko).  The core never touches VMX or SVM itself: everything
 * vendor specific goes through this table.
 */
#ifndef _VIREO_BACKEND_H
#define _VIREO_BACKEND_H

#include <linux/module.h>
#include <linux/types.h>
#include <linux/vireo.h>

struct vireo_backend {
	/* "vmx" or "svm": shown in dmesg and in /sys/module/vireo/parameters */
	const char *name;
	/* VIREO_BACKEND_VMX or VIREO_BACKEND_SVM (uapi/linux/vireo.h) */
	int id;
	/* the backend module, pinned while any VM uses it */
	struct module *owner;

	/*
	 * Turn virtualization on or off on the calling CPU.  Called with
	 * interrupts off, on every online CPU at registration, on each CPU
	 * that comes online or goes offline, and around suspend.
	 */
	int (*hardware_enable)(void);
	void (*hardware_disable)(void);
	/*
	 * Crash, kexec or emergency reboot: leave virtualization on this
	 * CPU at once.  NMI context, must not take locks.
	 */
	void (*emergency_disable)(void);
};

int vireo_register_backend(const struct vireo_backend *backend);
void vireo_unregister_backend(const struct vireo_backend *backend);

/*
 * vireo_register_backend() refuses with -EBUSY when another hypervisor
 * (Debian's kvm-intel or kvm-amd) is loaded or a backend is registered
 * already, and with the error of hardware_enable() when a CPU fails.
 */

#endif /* _VIREO_BACKEND_H */
