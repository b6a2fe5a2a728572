# SPDX-License-Identifier: GPL-2.0-only
# Vireo: out-of-tree build of vireo.ko, vireo-vmx.ko and vireo-svm.ko,
# plus the selftests, the checks and the test hosts.
#
#   make                  build the modules (KDIR= picks the kernel)
#   make selftests        build the static selftest binaries
#   make check            sparse, W=1 and checkpatch, for 6.1 and 6.12
#   make test-svm         run the selftests in the QEMU/AMD-V test host
#   make test-vmx         run the selftests in the Bochs/VT-x test host
#   make test-debug       the SVM host on a KASAN/lockdep/kmemleak kernel:
#                         the selftests, fuzzers, kill-anywhere
#   make test             all of the above
#   make run              boot the SVM test host and run a guest in it
#   make bench            vireo-bench on Vireo and on KVM, both test hosts
#   make install          modules_install into extra/ and depmod

ifneq ($(KERNELRELEASE),)
include $(src)/Kbuild
else

KDIR ?= $(shell $(CURDIR)/scripts/kdir)
PWD := $(CURDIR)

.PHONY: all modules selftests check test test-svm test-vmx test-debug run \
	bench \
	install clean help

all: modules

modules:
	$(MAKE) -C $(KDIR) M=$(PWD) modules

selftests:
	$(MAKE) -C selftests
	$(MAKE) -C tools
	$(MAKE) -C bench

check:
	scripts/check

test-svm: selftests
	scripts/testhost --vendor svm --phases modules --tcg-threads single \
		--work build/testhost-svm-modules
	scripts/testhost --vendor svm --phases vireo,kvm
	scripts/testhost --vendor svm --phases qemu,linux --timeout 1200 \
		--work build/testhost-svm-qemu

test-vmx: selftests
	scripts/testhost --vendor vmx --phases modules,vireo,kvm,linux,qemu \
		--timeout 2400

test-debug: selftests
	scripts/test-all debug

test:
	scripts/test-all

run: selftests
	scripts/testhost --vendor svm --phases run

bench: selftests
	scripts/bench

# The release the modules are built for (Debian's kernel.release file
# can differ from uname -r; utsrelease.h is what vermagic uses).
KRELEASE = $(shell sed -n 's/.*UTS_RELEASE "\(.*\)"/\1/p' \
	$(KDIR)/include/generated/utsrelease.h)

install: modules
	$(MAKE) -C $(KDIR) M=$(PWD) INSTALL_MOD_DIR=extra \
		KERNELRELEASE=$(KRELEASE) modules_install
	depmod -a $(KRELEASE)

clean:
	$(MAKE) -C $(KDIR) M=$(PWD) clean
	$(MAKE) -C selftests clean
	$(MAKE) -C tools clean
	$(MAKE) -C bench clean
	rm -rf build

help:
	@sed -n '2,17p' Makefile

endif
