// SPDX-License-Identifier: GPL-2.0-only
#include <cpuid.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/vireo.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util.h"

int cpu_backend(void)
{
	unsigned int a, b, c, d;

	__cpuid(0, a, b, c, d);
	if (b == 0x68747541)	/* "Auth"enticAMD */
		return VIREO_BACKEND_SVM;
	if (b == 0x756e6547)	/* "Genu"ineIntel */
		return VIREO_BACKEND_VMX;
	return VIREO_BACKEND_NONE;
}

const char *cpu_vendor_name(void)
{
	return cpu_backend() == VIREO_BACKEND_SVM ? "svm" : "vmx";
}

const char *other_vendor_name(void)
{
	return cpu_backend() == VIREO_BACKEND_SVM ? "vmx" : "svm";
}

int module_load(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int ret, saved;

	if (fd < 0)
		return -1;
	ret = syscall(SYS_finit_module, fd, "", 0);
	saved = errno;
	close(fd);
	errno = saved;
	return ret;
}

int module_unload(const char *name)
{
	return syscall(SYS_delete_module, name, O_NONBLOCK);
}

bool module_loaded(const char *name)
{
	char path[128];
	struct stat st;

	snprintf(path, sizeof(path), "/sys/module/%s", name);
	return stat(path, &st) == 0;
}
