/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Guest code for the first-light selftests, assembled with the test
 * binaries and copied into guest memory at the addresses below.  Each
 * blob is bracketed by <name> and <name>_end; absolute addresses inside
 * a blob are computed from its load address.
 */
#define RM_LOAD		0x1000	/* real mode: modes, MMIO below 1 MiB */
#define PM_LOAD		0x2000	/* 32-bit code, all 32-bit modes */
#define LM_LOAD		0x3000	/* 64-bit code */
#define SW_LOAD		0x4000	/* switches real -> protected -> long */
#define STR_LOAD	0x5000	/* string I/O */
#define RM_MMIO_SEG	0xc000	/* real-mode MMIO at 0xc0000 */
#define MMIO		0x10000000
#define PML4		0x103000

	.section .rodata
	.globl	guest_rm, guest_rm_end, guest_pm, guest_pm_end
	.globl	guest_lm, guest_lm_end, guest_switch, guest_switch_end
	.globl	guest_str, guest_str_end

/* The same exits in every mode: see selftests/modes.c. */
	.code16
guest_rm:
	mov	$0x11, %al
	out	%al, $0x10
	mov	$0x2233, %ax
	out	%ax, $0x12
	mov	$0x44556677, %eax
	out	%eax, $0x14
	in	$0x16, %al
	out	%al, $0x17
	in	$0x18, %eax
	out	%eax, $0x19
	mov	$RM_MMIO_SEG, %bx
	mov	%bx, %es
	movl	$0x12345678, %es:0x10
	movb	%es:0x20, %cl
	mov	%cl, %al
	out	%al, $0x1a
	movw	%es:0x30, %dx
	mov	%dx, %ax
	out	%ax, $0x1b
	hlt
guest_rm_end:

	.code32
guest_pm:
	mov	$0x11, %al
	out	%al, $0x10
	mov	$0x2233, %ax
	out	%ax, $0x12
	mov	$0x44556677, %eax
	out	%eax, $0x14
	in	$0x16, %al
	out	%al, $0x17
	in	$0x18, %eax
	out	%eax, $0x19
	movl	$0x12345678, MMIO + 0x10
	movb	MMIO + 0x20, %cl
	mov	%cl, %al
	out	%al, $0x1a
	movzwl	MMIO + 0x30, %edx
	mov	%dx, %ax
	out	%ax, $0x1b
	hlt
guest_pm_end:

	.code64
guest_lm:
	mov	$0x11, %al
	out	%al, $0x10
	mov	$0x2233, %ax
	out	%ax, $0x12
	mov	$0x44556677, %eax
	out	%eax, $0x14
	in	$0x16, %al
	out	%al, $0x17
	in	$0x18, %eax
	out	%eax, $0x19
	mov	$MMIO, %rbx
	movl	$0x12345678, 0x10(%rbx)
	movb	0x20(%rbx), %cl
	mov	%cl, %al
	out	%al, $0x1a
	movw	0x30(%rbx), %dx
	mov	%dx, %ax
	out	%ax, $0x1b
	hlt
guest_lm_end:

/* Real mode to 32-bit protected mode to 64-bit long mode, by itself. */
	.code16
guest_switch:
	cli
	xor	%ax, %ax
	mov	%ax, %ds
	lgdtl	SW_LOAD + (sw_gdt_desc - guest_switch)
	mov	$16, %al
	out	%al, $0x20
	mov	%cr0, %eax
	or	$1, %eax
	mov	%eax, %cr0
	ljmpl	$0x08, $(SW_LOAD + (sw_pm - guest_switch))
	.code32
sw_pm:
	mov	$0x10, %ax
	mov	%ax, %ds
	mov	%ax, %es
	mov	%ax, %ss
	mov	$32, %al
	out	%al, $0x20
	movl	$0x3232, MMIO + 0x40
	mov	$PML4, %eax
	mov	%eax, %cr3
	mov	%cr4, %eax
	or	$0x20, %eax
	mov	%eax, %cr4
	mov	$0xc0000080, %ecx
	rdmsr
	or	$0x100, %eax
	wrmsr
	mov	%cr0, %eax
	or	$0x80000000, %eax
	mov	%eax, %cr0
	ljmpl	$0x18, $(SW_LOAD + (sw_lm - guest_switch))
	.code64
sw_lm:
	mov	$64, %al
	out	%al, $0x20
	movabs	$MMIO + 0x48, %rbx
	movq	$0x6464, (%rbx)
	mov	$0xc0000080, %ecx
	rdmsr
	out	%eax, $0x21
	hlt
	.balign	8
sw_gdt:
	.quad	0
	.quad	0x00cf9a000000ffff	/* 0x08: 32-bit code */
	.quad	0x00cf92000000ffff	/* 0x10: data */
	.quad	0x00af9a000000ffff	/* 0x18: 64-bit code */
sw_gdt_desc:
	.word	4 * 8 - 1
	.long	SW_LOAD + (sw_gdt - guest_switch)
guest_switch_end:

/* String I/O: see selftests/modes.c for the data. */
	.code16
guest_str:
	xor	%ax, %ax
	mov	%ax, %ds
	mov	%ax, %es
	cld
	mov	$0x30, %dx
	mov	$0x6000, %si
	mov	$4, %cx
	rep outsb
	mov	$0x6010, %si
	mov	$3, %cx
	rep outsw
	mov	$0x6020, %si
	mov	$2, %cx
	rep outsl
	mov	$0x31, %dx
	mov	$0x6100, %di
	mov	$5, %cx
	rep insb
	mov	$0x6110, %di
	mov	$2, %cx
	rep insw
	std
	mov	$0x32, %dx
	mov	$0x6203, %si
	mov	$4, %cx
	rep outsb
	cld
	mov	$0x33, %dx
	mov	$0x6000, %si
	outsb
	hlt
guest_str_end:

	.section .note.GNU-stack,"",@progbits
