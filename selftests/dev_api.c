// SPDX-License-Identifier: GPL-2.0-only
/*
 * The device fd: open, KVM_GET_API_VERSION, KVM_CHECK_EXTENSION and the
 * errno of an ioctl the device does not know.  Runs against /dev/vireo
 * and /dev/kvm alike.
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/vireo.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "lib/tap.h"
#include "lib/util.h"

#define MAX_CAP_PROBED 300

int main(int argc, char **argv)
{
	const char *dev = test_device(argc, argv);
	int fd, fd2, cap, errors, mismatches;
	long ret;

	tap_plan(9);
	tap_diag("device %s", dev);

	fd = open(dev, O_RDWR | O_CLOEXEC);
	if (!tap_ok(fd >= 0, "open %s", dev))
		tap_bail("cannot open %s", dev);

	ret = ioctl(fd, KVM_GET_API_VERSION, 0);
	tap_ok(ret == KVM_API_VERSION, "KVM_GET_API_VERSION is %d (got %ld)",
	       KVM_API_VERSION, ret);

	ret = ioctl(fd, KVM_GET_API_VERSION, 1);
	TAP_ERRNO(ret, EINVAL, "KVM_GET_API_VERSION with an argument is EINVAL");

	errors = 0;
	mismatches = 0;
	for (cap = 0; cap < MAX_CAP_PROBED; cap++) {
		ret = ioctl(fd, KVM_CHECK_EXTENSION, cap);
		if (ret < 0)
			errors++;
		else if (ioctl(fd, KVM_CHECK_EXTENSION, cap) != ret)
			mismatches++;
	}
	tap_ok(!errors && !mismatches,
	       "KVM_CHECK_EXTENSION answers caps 0..%d without error, consistently (%d errors, %d changed)",
	       MAX_CAP_PROBED - 1, errors, mismatches);

	ret = ioctl(fd, KVM_CHECK_EXTENSION, 0x7fffffffL);
	tap_ok(ret == 0, "an unknown capability answers 0 (got %ld)", ret);

	ret = ioctl(fd, _IOR('x', 0x42, int), 0);
	TAP_ERRNO(ret, EINVAL, "a foreign ioctl is EINVAL");

	fd2 = open(dev, O_RDWR | O_CLOEXEC);
	tap_ok(fd2 >= 0 && ioctl(fd2, KVM_GET_API_VERSION, 0) == KVM_API_VERSION &&
	       ioctl(fd, KVM_GET_API_VERSION, 0) == KVM_API_VERSION,
	       "two opens of the device answer independently");
	tap_ok(close(fd2) == 0 && close(fd) == 0, "both fds close");

	if (test_is_kvm(dev)) {
		tap_skip("KVM has no VIREO_GET_BACKEND",
			 "VIREO_GET_BACKEND names this CPU's vendor");
	} else {
		fd = open(dev, O_RDWR | O_CLOEXEC);
		ret = ioctl(fd, VIREO_GET_BACKEND, 0);
		tap_ok(ret == cpu_backend(),
		       "VIREO_GET_BACKEND names this CPU's vendor (%ld, want %d)",
		       ret, cpu_backend());
		close(fd);
	}
	tap_done();
}
