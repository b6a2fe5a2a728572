/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Guest code of the vCPU-state selftests (lib/x86.h).  It runs where the
 * test binary is linked: the guests map the binary's image at
 * guest-physical == host-virtual addresses, so the labels below are
 * guest addresses too.
 */
#define ERRCODE(v)	((v) == 8 || (v) == 10 || (v) == 11 || (v) == 12 || \
			 (v) == 13 || (v) == 14 || (v) == 17 || (v) == 21 || \
			 (v) == 29 || (v) == 30)
#define DBG_PORT	0xe5
#define IRQWIN_PORT0	0xe6
#define IRQWIN_PORT1	0xe7

	.text
	.code64

/*
 * Interrupt and exception entry: one stub per vector pushes a zero in
 * place of the error code the CPU did not push, then the vector, and
 * joins isr_common.  The IST stack is 16-byte aligned at entry; the
 * frame (5 + 2 + 15 quadwords) keeps it so for the call.
 */
	.altmacro
	.macro	isr_stub v
isr_\v:
	.if	ERRCODE(\v)
	.else
	pushq	$0
	.endif
	pushq	$\v
	jmp	isr_common
	.endm

	.macro	isr_addr v
	.quad	isr_\v
	.endm

	.set	vec, 0
	.rept	256
	isr_stub %vec
	.set	vec, vec + 1
	.endr

isr_common:
	push	%r15
	push	%r14
	push	%r13
	push	%r12
	push	%r11
	push	%r10
	push	%r9
	push	%r8
	push	%rdi
	push	%rsi
	push	%rbp
	push	%rbx
	push	%rdx
	push	%rcx
	push	%rax
	mov	%rsp, %rdi
	cld
	call	x86_guest_isr
	pop	%rax
	pop	%rcx
	pop	%rdx
	pop	%rbx
	pop	%rbp
	pop	%rsi
	pop	%rdi
	pop	%r8
	pop	%r9
	pop	%r10
	pop	%r11
	pop	%r12
	pop	%r13
	pop	%r14
	pop	%r15
	add	$16, %rsp
	iretq

	.section .data.rel.ro, "aw"
	.balign	8
	.globl	x86_isr_stubs
x86_isr_stubs:
	.set	vec, 0
	.rept	256
	isr_addr %vec
	.set	vec, vec + 1
	.endr
	.noaltmacro

	.text
/* Vector registers from/to memory, for guests and the host alike. */
	.globl	xmm_load, xmm_store, ymm_load, ymm_store
	.globl	xmm_cycle, ymm_cycle
xmm_load:
	.irp	r, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
	movdqu	\r * 16(%rdi), %xmm\r
	.endr
	ret

xmm_store:
	.irp	r, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
	movdqu	%xmm\r, \r * 16(%rdi)
	.endr
	ret

ymm_load:
	.irp	r, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
	vmovdqu	\r * 32(%rdi), %ymm\r
	.endr
	ret

ymm_store:
	.irp	r, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
	vmovdqu	%ymm\r, \r * 32(%rdi)
	.endr
	ret

/*
 * Host threads: load the registers from @rdi, give the CPU away with
 * sched_yield(), store them to @rsi.  No C code runs in between.
 */
xmm_cycle:
	call	xmm_load
	mov	$24, %eax		/* __NR_sched_yield */
	syscall
	mov	%rsi, %rdi
	jmp	xmm_store

ymm_cycle:
	call	ymm_load
	mov	$24, %eax
	syscall
	mov	%rsi, %rdi
	jmp	ymm_store

/*
 * debugregs: a known sequence to single-step (each dbg_ssN is where the
 * next step stops), then an OUT of EAX = 9.
 */
	.globl	guest_dbg_step, dbg_ss1, dbg_ss2, dbg_ss3, dbg_ss4, dbg_ss5
	.globl	dbg_ss6, dbg_ss_end
guest_dbg_step:
	xor	%ecx, %ecx
dbg_ss1:
	mov	$1, %eax
dbg_ss2:
	add	%eax, %eax
dbg_ss3:
	inc	%ecx
dbg_ss4:
	jmp	dbg_ss5
	ud2
dbg_ss5:
	lea	5(%rax, %rcx, 2), %eax
dbg_ss6:
	nop
dbg_ss_end:
	out	%eax, $DBG_PORT
	hlt

/*
 * debugregs: an INT3 and an OUT of 0x11; then (or from guest_dbg_hw) an
 * instruction for an execute breakpoint and an OUT of 0x77.
 */
	.globl	guest_dbg_bp, dbg_int3, dbg_after_int3, guest_dbg_hw, dbg_hw
guest_dbg_bp:
	mov	$0x11, %eax
dbg_int3:
	int3
dbg_after_int3:
	out	%eax, $DBG_PORT
guest_dbg_hw:
	xor	%ecx, %ecx
dbg_hw:
	mov	$0x77, %ecx
	mov	%ecx, %eax
	out	%eax, $DBG_PORT
	hlt

/*
 * events: an OUT with interrupts off, then STI and NOPs (the interrupt
 * window opens after the instruction following STI), then OUTs with
 * interrupts on, forever.
 */
	.globl	guest_irqwin, irqwin_sti, irqwin_loop
guest_irqwin:
	cli
	out	%al, $IRQWIN_PORT0
	sti
irqwin_sti:
	nop
	nop
	nop
irqwin_loop:
	out	%al, $IRQWIN_PORT1
	jmp	irqwin_loop

/*
 * vcpu_state: a computation whose state lives in XMM0/XMM1, ST(0) and
 * (with AVX) the upper halves of YMM3/YMM4 across exits.
 *   mig_vec_init(seed[4], avx): xmm0 = seed[0..1], xmm1 = seed[2..3],
 *	st(0) = 1.0, ymm3 = ymm4 = 0
 *   mig_vec_step(avx): xmm0 += xmm1 (qwords); xmm1 = swap(xmm1) ^ xmm0;
 *	st(0) += st(0); ymm4.hi = xmm0; ymm3 ^= ymm4
 *   mig_vec_result(out[6]): xmm0, xmm1, (int)st(0), ymm3.hi
 */
	.globl	mig_vec_init, mig_vec_step, mig_vec_result
mig_vec_init:
	test	%esi, %esi
	jz	1f
	vzeroall
1:
	movdqu	(%rdi), %xmm0
	movdqu	16(%rdi), %xmm1
	fninit
	fld1
	ret

mig_vec_step:
	paddq	%xmm1, %xmm0
	pshufd	$0x4e, %xmm1, %xmm1
	pxor	%xmm0, %xmm1
	fadd	%st(0), %st(0)
	test	%edi, %edi
	jz	1f
	vinsertf128 $1, %xmm0, %ymm4, %ymm4
	vxorps	%ymm4, %ymm3, %ymm3
1:
	ret

mig_vec_result:
	movdqu	%xmm0, (%rdi)
	movdqu	%xmm1, 16(%rdi)
	fistpq	32(%rdi)
	test	%esi, %esi
	jz	1f
	vextractf128 $1, %ymm3, %xmm5
	movdqu	%xmm5, 40(%rdi)
1:
	ret

	.section .note.GNU-stack, "", @progbits
