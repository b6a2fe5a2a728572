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
 *
 * The irqchip snippets run in a VM with KVM_CREATE_IRQCHIP, where a HLT
 * waits in the kernel for an interrupt instead of exiting: they end with
 * an OUT to BENCH_DONE_PORT.  Their interrupt handlers are in the IDT at
 * GUEST_IDT that vireo-bench.c builds: g_vectors has one 16-byte stub
 * per vector that reports the vector on BENCH_FAIL_PORT (a 4-byte OUT),
 * and the vectors of the benchmarks have the h_* handlers instead.  The
 * handlers count what they took in the words at GUEST_DATA.
 */
#define BENCH_IO_PORT		0xe0
#define BENCH_FAIL_PORT		0xe1
#define BENCH_DONE_PORT		0xe2
#define HYPERCALL_NR		0x100	/* no such hypercall */
#define KVM_ENOSYS		1000

/* The local xAPIC and the IOAPIC, by MMIO */
#define APIC_BASE		0xfee00000
#define APIC_EOI		0xb0
#define APIC_SVR		0xf0
#define APIC_ICR		0x300
#define APIC_ICR2		0x310
#define APIC_LVTT		0x320
#define APIC_TMICT		0x380
#define APIC_TDCR		0x3e0
#define IOAPIC_BASE		0xfec00000
#define IOAPIC_WIN		0x10

/* Must match vireo-bench.c */
#define VEC_PING		0x40
#define VEC_PONG		0x41
#define VEC_TIMER		0x50
#define VEC_IRQFD		0x60
#define VEC_SPURIOUS		0xff
#define GUEST_DATA		0x6000
#define D_PINGS			(GUEST_DATA + 0)	/* taken by vCPU 1 */
#define D_PONGS			(GUEST_DATA + 4)	/* taken by vCPU 0 */
#define D_STOP			(GUEST_DATA + 8)	/* vCPU 1: stop */
#define D_TIMER			(GUEST_DATA + 12)
#define D_IRQFD			(GUEST_DATA + 16)

	.section .rodata
	.code64
	.globl	guest_code, guest_code_end
	.globl	g_hlt, g_cpuid, g_vmmcall, g_vmcall, g_out, g_mmio, g_touch
	.globl	g_ipi_ping, g_ipi_pong, g_apic_timer, g_irqfd
	.globl	g_vectors, h_ping, h_pong, h_timer, h_irqfd

	.balign	16
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

/* ---- with the in-kernel irqchip ---- */

/* Software-enable the local APIC; R9 = its base.  Clobbers RAX. */
apic_on:
	mov	$APIC_BASE, %r9d
	mov	$(0x100 | VEC_SPURIOUS), %eax
	mov	%eax, APIC_SVR(%r9)
	ret

/*
 * Wait with interrupts on until the word at \counter reaches \want:
 * STI;HLT so that an interrupt taken between the test and the HLT
 * still ends the HLT.  Returns with interrupts off.
 */
.macro	wait_for counter, want
.Lwait\@:
	cmpl	\want, \counter
	jae	.Lwaited\@
	sti
	hlt
	cli
	jmp	.Lwait\@
.Lwaited\@:
.endm

/*
 * vCPU 0 of the IPI round trip: R8 times, a fixed IPI of VEC_PING to
 * APIC ID 1 and a wait for its VEC_PONG.  Before the last one it tells
 * vCPU 1 to stop.
 */
g_ipi_ping:
	call	apic_on
	mov	$(1 << 24), %eax
	mov	%eax, APIC_ICR2(%r9)
	xor	%r10d, %r10d
	cli
1:	cmp	$1, %r8
	jne	2f
	movl	$1, D_STOP
2:	inc	%r10d
	mov	$VEC_PING, %eax		/* fixed, physical, no shorthand */
	mov	%eax, APIC_ICR(%r9)
	wait_for D_PONGS, %r10d
	dec	%r8
	jnz	1b
	out	%al, $BENCH_DONE_PORT
	hlt

/*
 * vCPU 1: says it is ready (an OUT to BENCH_IO_PORT), then halts; its
 * h_ping answers every VEC_PING.  Done once D_STOP is set.
 */
g_ipi_pong:
	call	apic_on
	xor	%eax, %eax
	mov	%eax, APIC_ICR2(%r9)	/* replies go to APIC ID 0 */
	mov	$0x5a, %al
	out	%al, $BENCH_IO_PORT
	cli
	wait_for D_STOP, $1
	out	%al, $BENCH_DONE_PORT
	hlt

/* R8 times: the APIC timer one-shot with a count of 1, divided by 1. */
g_apic_timer:
	call	apic_on
	mov	$0xb, %eax		/* divide by 1 */
	mov	%eax, APIC_TDCR(%r9)
	mov	$VEC_TIMER, %eax	/* one-shot, not masked */
	mov	%eax, APIC_LVTT(%r9)
	xor	%r10d, %r10d
	cli
1:	inc	%r10d
	mov	$1, %eax
	mov	%eax, APIC_TMICT(%r9)
	wait_for D_TIMER, %r10d
	dec	%r8
	jnz	1b
	out	%al, $BENCH_DONE_PORT
	hlt

/*
 * Routes IOAPIC pin R8 to VEC_IRQFD on APIC ID 0 (fixed, physical,
 * edge, active high), says it is ready and halts for good: h_irqfd
 * answers every interrupt with an OUT to BENCH_IO_PORT.
 */
g_irqfd:
	call	apic_on
	mov	$IOAPIC_BASE, %edx
	lea	0x11(,%r8,2), %eax	/* the entry's upper half... */
	mov	%eax, (%rdx)
	xor	%eax, %eax		/* ...destination APIC ID 0 */
	mov	%eax, IOAPIC_WIN(%rdx)
	lea	0x10(,%r8,2), %eax
	mov	%eax, (%rdx)
	mov	$VEC_IRQFD, %eax
	mov	%eax, IOAPIC_WIN(%rdx)
	mov	$0x5a, %al
	out	%al, $BENCH_IO_PORT
	sti
1:	hlt
	jmp	1b

/* Handlers: count, EOI (and answer) */
.macro	handler_entry counter
	push	%rax
	push	%rdx
	incl	\counter
	mov	$APIC_BASE, %edx
	xor	%eax, %eax
	mov	%eax, APIC_EOI(%rdx)
.endm

.macro	handler_exit
	pop	%rdx
	pop	%rax
	iretq
.endm

h_ping:
	handler_entry D_PINGS
	mov	$VEC_PONG, %eax
	mov	%eax, APIC_ICR(%rdx)
	handler_exit

h_pong:
	handler_entry D_PONGS
	handler_exit

h_timer:
	handler_entry D_TIMER
	handler_exit

h_irqfd:
	handler_entry D_IRQFD
	mov	$0x5a, %al
	out	%al, $BENCH_IO_PORT
	handler_exit

/* Every other vector: report it and stop. */
	.balign	16
g_vectors:
	.Lvec = 0
	.rept	256
	.balign	16
	push	$.Lvec
	jmp	bad_vector
	.Lvec = .Lvec + 1
	.endr
bad_vector:
	pop	%rax
	out	%eax, $BENCH_FAIL_PORT
	cli
1:	hlt
	jmp	1b
guest_code_end:

	.section .note.GNU-stack, "", @progbits
