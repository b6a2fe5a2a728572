// SPDX-License-Identifier: GPL-2.0-only
#include <cpuid.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/vireo.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
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

/* Ask the kernel (sysrq) to print what every task and CPU is doing. */
static void sysrq_dump(const char *why)
{
	int fd = open("/proc/sysrq-trigger", O_WRONLY | O_CLOEXEC);

	printf("# %s: sysrq w and l follow on the console\n", why);
	fflush(stdout);
	if (fd < 0)
		return;
	if (write(fd, "w", 1) != 1 || write(fd, "l", 1) != 1)
		printf("# sysrq: %s\n", strerror(errno));
	close(fd);
}

/*
 * delete_module(), watched: should it hang, a child has the kernel
 * print the blocked tasks and every CPU's backtrace after 20 s and
 * again every minute, so a hung host leaves its reason on the console.
 */
int module_unload(const char *name)
{
	char why[96];
	int ret, saved;
	pid_t dog;

	fflush(stdout);
	dog = fork();
	if (dog == 0) {
		snprintf(why, sizeof(why), "delete_module(%s) hangs", name);
		sleep(20);
		for (;;) {
			sysrq_dump(why);
			sleep(60);
		}
	}
	ret = syscall(SYS_delete_module, name, O_NONBLOCK);
	saved = errno;
	if (dog > 0) {
		kill(dog, SIGKILL);
		waitpid(dog, NULL, 0);
	}
	errno = saved;
	return ret;
}

bool module_loaded(const char *name)
{
	char path[128];
	struct stat st;

	snprintf(path, sizeof(path), "/sys/module/%s", name);
	return stat(path, &st) == 0;
}
