// SPDX-License-Identifier: GPL-2.0-only
/*
 * Loading and unloading the Vireo modules inside a test host:
 * load/unload cycles, the wrong vendor's backend refused, a backend
 * without the core refused, the core pinned by an open /dev/vireo, and
 * our backend refused while Debian's KVM owns the hardware.
 *
 * Usage: modules [MODDIR [KVMDIR]]  (defaults /lib/modules/vireo and
 * /lib/modules/kvm).  Starts and ends with no Vireo module loaded.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/vireo.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/tap.h"
#include "lib/util.h"

#define CYCLES 3

static const char *moddir = "/lib/modules/vireo";
static const char *kvmdir = "/lib/modules/kvm";

static int load(const char *dir, const char *file)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s.ko", dir, file);
	return module_load(path);
}

static void unload_all(void)
{
	module_unload("vireo_vmx");
	module_unload("vireo_svm");
	module_unload("vireo");
}

static bool device_answers(void)
{
	int fd = open("/dev/vireo", O_RDWR | O_CLOEXEC);
	bool ok;

	if (fd < 0)
		return false;
	ok = ioctl(fd, KVM_GET_API_VERSION, 0) == KVM_API_VERSION &&
	     ioctl(fd, VIREO_GET_BACKEND, 0) == cpu_backend();
	close(fd);
	return ok;
}

static bool file_exists(const char *dir, const char *file)
{
	char path[256];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s.ko", dir, file);
	return stat(path, &st) == 0;
}

/* Debian's KVM stack for this vendor, in load order. */
static const char *const kvm_amd_stack[] = { "irqbypass", "ccp", "kvm", "kvm-amd" };
static const char *const kvm_intel_stack[] = { "irqbypass", "kvm", "kvm-intel" };
static const char *const kvm_amd_names[] = { "irqbypass", "ccp", "kvm", "kvm_amd" };
static const char *const kvm_intel_names[] = { "irqbypass", "kvm", "kvm_intel" };

static void kvm_conflict(void)
{
	bool amd = cpu_backend() == VIREO_BACKEND_SVM;
	const char *const *stack = amd ? kvm_amd_stack : kvm_intel_stack;
	const char *const *names = amd ? kvm_amd_names : kvm_intel_names;
	int n = amd ? 4 : 3;
	bool loaded = true;
	int i, ret;

	if (!file_exists(kvmdir, stack[n - 1])) {
		tap_skip("Debian's KVM modules not in this host", "KVM loads");
		tap_skip("Debian's KVM modules not in this host",
			 "vireo-%s refused with EBUSY while KVM is loaded",
			 cpu_vendor_name());
		tap_skip("Debian's KVM modules not in this host", "KVM unloads");
		return;
	}
	for (i = 0; i < n; i++) {
		if (module_loaded(names[i]))
			continue;
		if (load(kvmdir, stack[i]) && errno != EEXIST)
			loaded = false;
	}
	tap_ok(loaded && module_loaded(names[n - 1]), "KVM loads (%s)",
	       stack[n - 1]);

	load(moddir, "vireo");
	ret = load(moddir, amd ? "vireo-svm" : "vireo-vmx");
	TAP_ERRNO(ret, EBUSY, "vireo-%s refused with EBUSY while KVM is loaded",
		  cpu_vendor_name());
	unload_all();

	for (i = n - 1; i >= 0; i--)
		module_unload(names[i]);
	tap_ok(!module_loaded(names[n - 1]) && !module_loaded("kvm"),
	       "KVM unloads");
}

int main(int argc, char **argv)
{
	const char *mine, *mine_name, *other;
	int fd, i, ret;

	if (argc > 1)
		moddir = argv[1];
	if (argc > 2)
		kvmdir = argv[2];
	mine = cpu_backend() == VIREO_BACKEND_SVM ? "vireo-svm" : "vireo-vmx";
	mine_name = cpu_backend() == VIREO_BACKEND_SVM ? "vireo_svm" : "vireo_vmx";
	other = cpu_backend() == VIREO_BACKEND_SVM ? "vireo-vmx" : "vireo-svm";

	tap_plan(CYCLES * 5 + 9);
	tap_diag("modules from %s, this CPU wants %s", moddir, mine);
	unload_all();

	for (i = 0; i < CYCLES; i++) {
		tap_ok(load(moddir, "vireo") == 0, "cycle %d: load vireo.ko", i);
		tap_ok(load(moddir, mine) == 0, "cycle %d: load %s.ko", i, mine);
		tap_ok(device_answers(),
		       "cycle %d: /dev/vireo answers with the %s backend", i,
		       cpu_vendor_name());
		tap_ok(module_unload(mine_name) == 0,
		       "cycle %d: unload %s", i, mine);
		tap_ok(module_unload("vireo") == 0, "cycle %d: unload vireo", i);
	}

	ret = load(moddir, mine);
	TAP_ERRNO(ret, ENOENT, "%s without vireo.ko is refused (unknown symbols)",
		  mine);

	tap_ok(load(moddir, "vireo") == 0, "load vireo.ko alone");
	ret = load(moddir, other);
	TAP_ERRNO(ret, EOPNOTSUPP, "%s is refused with EOPNOTSUPP on this CPU",
		  other);

	fd = open("/dev/vireo", O_RDWR | O_CLOEXEC);
	ret = module_unload("vireo");
	tap_ok(fd >= 0 && ret == -1 && errno == EWOULDBLOCK,
	       "an open /dev/vireo pins vireo.ko");
	close(fd);
	tap_ok(module_unload("vireo") == 0, "vireo.ko unloads once closed");

	unload_all();
	tap_ok(!module_loaded("vireo") && !module_loaded("vireo_svm") &&
	       !module_loaded("vireo_vmx"), "no Vireo module left loaded");

	kvm_conflict();
	tap_done();
}
