/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Guests written as ordinary C functions of the test binary.
 *
 * guest_vm_create() maps the binary's own image (text, data, bss) into a
 * VM at guest-physical == host-virtual addresses, builds identity page
 * tables, a GDT and a stack, and starts one vCPU in 64-bit long mode at
 * the function with its argument in RDI.  The guest reports to the host
 * through "ucalls": an OUT of a pointer to a struct ucall on its stack.
 *
 * Guest functions are marked GUEST_CODE (no SSE, no stack protector) and
 * may only call other GUEST_CODE functions; they end with GUEST_DONE().
 */
#ifndef VIREO_SELFTEST_GUEST_H
#define VIREO_SELFTEST_GUEST_H

#include <stdint.h>

#include "vm.h"

#define GUEST_CODE \
	__attribute__((target("general-regs-only"), noinline, \
		       optimize("no-stack-protector")))

#define UCALL_PORT	0xe1

enum ucall_cmd { UCALL_NONE, UCALL_SYNC, UCALL_ASSERT, UCALL_DONE };

struct ucall {
	uint64_t cmd;
	uint64_t arg;
	const char *file;
	const char *expr;
	uint64_t line;
};

void guest_ucall(uint64_t cmd, uint64_t arg, const char *file,
		 uint64_t line, const char *expr);

#define GUEST_SYNC(v)	guest_ucall(UCALL_SYNC, (v), __FILE__, __LINE__, "")
#define GUEST_DONE()	guest_ucall(UCALL_DONE, 0, __FILE__, __LINE__, "")
#define GUEST_ASSERT(c) do {						\
	if (!(c))							\
		guest_ucall(UCALL_ASSERT, 0, __FILE__, __LINE__, #c);	\
} while (0)

struct guest_vm {
	struct vm vm;
	struct vcpu vcpu;
};

/*
 * The binary's image below 4 GiB and writable, as the guest maps it;
 * false with a TAP diagnostic otherwise.
 */
bool guest_image_writable(void);
bool guest_vm_create(struct guest_vm *g, const char *dev,
		     void (*fn)(uint64_t), uint64_t arg);
void guest_vm_destroy(struct guest_vm *g);
/*
 * Run until the guest makes a ucall; other exits are returned as
 * UCALL_NONE with the kvm_run left for the caller to look at.
 */
enum ucall_cmd guest_run(struct guest_vm *g, struct ucall *uc);

#endif
