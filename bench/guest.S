/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Guest code of vireo-bench: 64-bit snippets copied to guest-physical
 * GUEST_CODE (see vireo-bench.c) and entered with KVM_SET_REGS.  The
 * whole blob lies between guest_code and guest_code_end and uses only
 * relative jumps, so it runs wherever it is copied.
 *
 * Inputs are in registers: R8 an iteration count (at least 1), R9 and
 * R10 a start and end address, R11 a stride.  Every snippet ends with
 * HLT (KVM_EXIT_HLT: done); a guest that sees a wrong answer writes to
 * port BENCH_FAIL_PORT first.
 */
#define BENCH_IO_PORT		0xe0
#define BENCH_FAIL_PORT		0xe1
#define HYPERCALL_NR		0x100	/* no such hypercall */
#define KVM_ENOSYS		1000

	.section .rodata
	.code64
	.globl	guest_code, guest_code_end
	.globl	g_hlt, g_cpuid, g_vmmcall, g_vmcall, g_out, g_mmio, g_touch

guest_code:
/* Nothing: the first exit of a new VM. */
g_hlt:
	hlt

/* R8 times CPUID leaf 0, which exits to the hypervisor every time. */
g_cpuid:
1:	xor	%eax, %eax
	xor	%ecx, %ecx
	cpuid
	dec	%r8
	jnz	1b
	hlt

/* R8 hypercalls that must fail with -KVM_ENOSYS: AMD's VMMCALL... */
g_vmmcall:
1:	mov	$HYPERCALL_NR, %eax
	vmmcall
	cmp	$-KVM_ENOSYS, %rax
	jne	fail
	dec	%r8
	jnz	1b
	hlt

/* ...and Intel's VMCALL. */
g_vmcall:
1:	mov	$HYPERCALL_NR, %eax
	vmcall
	cmp	$-KVM_ENOSYS, %rax
	jne	fail
	dec	%r8
	jnz	1b
	hlt

/* R8 byte OUTs to BENCH_IO_PORT: one exit to the VMM each. */
g_out:
	mov	$0x5a, %al
1:	out	%al, $BENCH_IO_PORT
	dec	%r8
	jnz	1b
	hlt

/* R8 4-byte writes of 0x5a5a5a5a to the MMIO address R9. */
g_mmio:
	mov	$0x5a5a5a5a, %eax
1:	mov	%eax, (%r9)
	dec	%r8
	jnz	1b
	hlt

/* One 8-byte write every R11 bytes from R9 up to R10. */
g_touch:
1:	mov	%r9, (%r9)
	add	%r11, %r9
	cmp	%r10, %r9
	jb	1b
	hlt

fail:
	out	%al, $BENCH_FAIL_PORT
	hlt
guest_code_end:

	.section .note.GNU-stack, "", @progbits
