/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Entering a VT-x guest.
 *
 * int vireo_vmx_enter(u64 *regs, bool launched)
 *
 * Called with interrupts off and the vCPU's VMCS current.  Writes
 * HOST_RSP, loads the guest's general purpose registers from regs[] (RSP
 * travels in the VMCS), and executes VMLAUNCH or VMRESUME.  A VM exit
 * lands on vireo_vmx_exit_point (HOST_RIP) with the stack as it was
 * before entry; the guest's registers are stored back into regs[] and 0
 * is returned.  When the instruction itself fails (VMfailValid or
 * VMfailInvalid) nothing ran and 1 is returned.
 */
#include <linux/linkage.h>
#include <linux/objtool.h>
#include <asm/asm.h>
#include <asm/nospec-branch.h>

#define REG(n)		((n) * 8)
#define RAX		0
#define RCX		1
#define RDX		2
#define RBX		3
#define RBP		5
#define RSI		6
#define RDI		7
#define HOST_RSP	0x6c14

	.text
SYM_FUNC_START(vireo_vmx_enter)
	push	%rbp
	mov	%rsp, %rbp
	push	%r15
	push	%r14
	push	%r13
	push	%r12
	push	%rbx
	push	%rdi		/* 0(%rsp): regs, also at the exit point */

	mov	$HOST_RSP, %rax
	vmwrite	%rsp, %rax

	/* the flags of this test survive the loads below (MOV) */
	test	%sil, %sil

	mov	%rdi, %rax
	mov	REG(RCX)(%rax), %rcx
	mov	REG(RDX)(%rax), %rdx
	mov	REG(RBX)(%rax), %rbx
	mov	REG(RBP)(%rax), %rbp
	mov	REG(RSI)(%rax), %rsi
	mov	REG(RDI)(%rax), %rdi
	mov	REG(8)(%rax), %r8
	mov	REG(9)(%rax), %r9
	mov	REG(10)(%rax), %r10
	mov	REG(11)(%rax), %r11
	mov	REG(12)(%rax), %r12
	mov	REG(13)(%rax), %r13
	mov	REG(14)(%rax), %r14
	mov	REG(15)(%rax), %r15
	mov	REG(RAX)(%rax), %rax

	jnz	.Lresume
	vmlaunch
	jmp	.Lfailed
.Lresume:
	vmresume
.Lfailed:
	/* only a failed VMLAUNCH/VMRESUME gets here, with CF or ZF set */
	jbe	.Lfail

SYM_INNER_LABEL(vireo_vmx_exit_point, SYM_L_GLOBAL)
	/* reached by VM exit (HOST_RIP), never by an indirect branch */
	ANNOTATE_NOENDBR
	push	%rax
	mov	8(%rsp), %rax
	mov	%rcx, REG(RCX)(%rax)
	mov	%rdx, REG(RDX)(%rax)
	mov	%rbx, REG(RBX)(%rax)
	mov	%rbp, REG(RBP)(%rax)
	mov	%rsi, REG(RSI)(%rax)
	mov	%rdi, REG(RDI)(%rax)
	mov	%r8, REG(8)(%rax)
	mov	%r9, REG(9)(%rax)
	mov	%r10, REG(10)(%rax)
	mov	%r11, REG(11)(%rax)
	mov	%r12, REG(12)(%rax)
	mov	%r13, REG(13)(%rax)
	mov	%r14, REG(14)(%rax)
	mov	%r15, REG(15)(%rax)
	popq	REG(RAX)(%rax)

	/* no guest value may steer host speculation */
	xor	%ecx, %ecx
	xor	%edx, %edx
	xor	%esi, %esi
	xor	%edi, %edi
	xor	%r8d, %r8d
	xor	%r9d, %r9d
	xor	%r10d, %r10d
	xor	%r11d, %r11d
	xor	%eax, %eax
	jmp	.Lout

.Lfail:
	mov	$1, %eax
.Lout:
	add	$8, %rsp
	pop	%rbx
	pop	%r12
	pop	%r13
	pop	%r14
	pop	%r15
	pop	%rbp
	RET
SYM_FUNC_END(vireo_vmx_enter)
