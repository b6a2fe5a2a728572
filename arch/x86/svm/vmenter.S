/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Entering an AMD-V guest.
 *
 * void vireo_svm_vmrun(u64 vmcb_pa, u64 *regs, u64 host_save_pa)
 *
 * Called with interrupts off and GIF clear.  Loads the guest's general
 * purpose registers from regs[] (RAX and RSP travel in the VMCB), loads
 * the guest's VMLOAD state, runs it, and on #VMEXIT stores the registers
 * back and reloads the host's VMLOAD state (FS, GS, TR, LDTR, the
 * SYSCALL and SYSENTER MSRs, KERNEL_GS_BASE) before anything can use a
 * per-CPU variable.  Interrupts are enabled only around VMRUN itself:
 * with GIF clear the host takes none, while the guest exits on them.
 */
#include <linux/linkage.h>
#include <asm/asm.h>
#include <asm/nospec-branch.h>

#define REG(n)	((n) * 8)
#define RCX	1
#define RDX	2
#define RBX	3
#define RBP	5
#define RSI	6
#define RDI	7

	.text
SYM_FUNC_START(vireo_svm_vmrun)
	push	%rbp
	mov	%rsp, %rbp
	push	%r15
	push	%r14
	push	%r13
	push	%r12
	push	%rbx
	push	%rdx		/* 16(%rsp): host save area */
	push	%rsi		/*  8(%rsp): regs */
	push	%rdi		/*  0(%rsp): guest VMCB */

	mov	%rsi, %rax
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

	mov	0(%rsp), %rax
	vmload	%rax
	sti
	vmrun	%rax
	cli
	mov	0(%rsp), %rax
	vmsave	%rax

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

	mov	16(%rsp), %rax
	vmload	%rax

	/* no guest value may steer host speculation */
	xor	%ecx, %ecx
	xor	%edx, %edx
	xor	%esi, %esi
	xor	%edi, %edi
	xor	%r8d, %r8d
	xor	%r9d, %r9d
	xor	%r10d, %r10d
	xor	%r11d, %r11d

	add	$24, %rsp
	pop	%rbx
	pop	%r12
	pop	%r13
	pop	%r14
	pop	%r15
	pop	%rbp
	RET
SYM_FUNC_END(vireo_svm_vmrun)
