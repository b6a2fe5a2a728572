/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The Virtual Machine Control Block, as the AMD64 Architecture
 * Programmer's Manual vol. 2, appendix B lays it out: a control area at
 * offset 0 and the guest state save area at offset 0x400.
 */
#ifndef _VIREO_SVM_VMCB_H
#define _VIREO_SVM_VMCB_H

#include <linux/build_bug.h>
#include <linux/types.h>

/* intercept word 3 (offset 0x0c) */
#define INTERCEPT_INTR			BIT(0)
#define INTERCEPT_VINTR			BIT(4)
#define INTERCEPT_IRET			BIT(20)
#define INTERCEPT_NMI			BIT(1)
#define INTERCEPT_SMI			BIT(2)
#define INTERCEPT_INIT			BIT(3)
#define INTERCEPT_CPUID			BIT(18)
#define INTERCEPT_INVD			BIT(22)
#define INTERCEPT_HLT			BIT(24)
#define INTERCEPT_INVLPGA		BIT(26)
#define INTERCEPT_IOIO			BIT(27)
#define INTERCEPT_MSR			BIT(28)
#define INTERCEPT_SHUTDOWN		BIT(31)
/* intercept word 4 (offset 0x10) */
#define INTERCEPT_VMRUN			BIT(0)
#define INTERCEPT_VMMCALL		BIT(1)
#define INTERCEPT_VMLOAD		BIT(2)
#define INTERCEPT_VMSAVE		BIT(3)
#define INTERCEPT_STGI			BIT(4)
#define INTERCEPT_CLGI			BIT(5)
#define INTERCEPT_SKINIT		BIT(6)
#define INTERCEPT_MONITOR		BIT(10)
#define INTERCEPT_MWAIT			BIT(11)
#define INTERCEPT_MWAIT_COND		BIT(12)
#define INTERCEPT_XSETBV		BIT(13)

/* int_ctl */
#define V_TPR_MASK			0xfULL
#define V_IRQ				BIT(8)
#define V_INTR_PRIO_SHIFT		16
#define V_IGN_TPR			BIT(20)
#define V_INTR_MASKING			BIT(24)

/* int_state */
#define INT_STATE_SHADOW		BIT(0)

/* tlb_ctl */
#define TLB_CONTROL_DO_NOTHING		0
#define TLB_CONTROL_FLUSH_ALL		1

/* nested_ctl */
#define NESTED_CTL_NP_ENABLE		BIT(0)

/* event_inj and exit_int_info */
#define EVTINJ_VECTOR_MASK		0xff
#define EVTINJ_TYPE_SHIFT		8
#define EVTINJ_TYPE_MASK		(7 << 8)
#define EVTINJ_TYPE_INTR		(0 << 8)
#define EVTINJ_TYPE_NMI			(2 << 8)
#define EVTINJ_TYPE_EXCEPTION		(3 << 8)
#define EVTINJ_TYPE_SOFT		(4 << 8)
#define EVTINJ_ERROR_VALID		BIT(11)
#define EVTINJ_VALID			BIT(31)

/* intercept_cr: reads of CR0-15 in bits 0-15, writes in bits 16-31 */
#define INTERCEPT_CR0_WRITE		BIT(16 + 0)
#define INTERCEPT_CR4_WRITE		BIT(16 + 4)
#define INTERCEPT_CR8_WRITE		BIT(16 + 8)

/* exit codes */
#define SVM_EXIT_WRITE_CR0		0x010
#define SVM_EXIT_WRITE_CR4		0x014
#define SVM_EXIT_WRITE_CR8		0x018
#define SVM_EXIT_READ_DR0		0x020
#define SVM_EXIT_WRITE_DR15		0x03f
#define SVM_EXIT_EXCP_DB		0x041
#define SVM_EXIT_EXCP_BP		0x043
#define SVM_EXIT_INTR			0x060
#define SVM_EXIT_NMI			0x061
#define SVM_EXIT_SMI			0x062
#define SVM_EXIT_INIT			0x063
#define SVM_EXIT_VINTR			0x064
#define SVM_EXIT_CPUID			0x072
#define SVM_EXIT_IRET			0x074
#define SVM_EXIT_INVD			0x076
#define SVM_EXIT_HLT			0x078
#define SVM_EXIT_INVLPGA		0x07a
#define SVM_EXIT_IOIO			0x07b
#define SVM_EXIT_MSR			0x07c
#define SVM_EXIT_SHUTDOWN		0x07f
#define SVM_EXIT_VMRUN			0x080
#define SVM_EXIT_VMMCALL		0x081
#define SVM_EXIT_VMLOAD			0x082
#define SVM_EXIT_VMSAVE			0x083
#define SVM_EXIT_STGI			0x084
#define SVM_EXIT_CLGI			0x085
#define SVM_EXIT_SKINIT			0x086
#define SVM_EXIT_MONITOR		0x08a
#define SVM_EXIT_MWAIT			0x08b
#define SVM_EXIT_MWAIT_COND		0x08c
#define SVM_EXIT_XSETBV			0x08d
#define SVM_EXIT_NPF			0x400
#define SVM_EXIT_INVALID		((u64)-1)

/* IOIO exit_info_1 */
#define IOIO_TYPE_IN			BIT(0)
#define IOIO_STR			BIT(2)
#define IOIO_REP			BIT(3)
#define IOIO_SIZE_SHIFT			4
#define IOIO_SIZE_MASK			(7 << IOIO_SIZE_SHIFT)
#define IOIO_PORT_SHIFT			16

/* NPF exit_info_1: a #PF-style error code */
#define NPF_PRESENT			BIT(0)
#define NPF_WRITE			BIT(1)
#define NPF_FETCH			BIT(4)

/* segment attributes: the descriptor's bits 8-15 and 20-23, packed */
#define SEG_ATTR_TYPE(a)		((a) & 0xf)
#define SEG_ATTR_S			BIT(4)
#define SEG_ATTR_DPL_SHIFT		5
#define SEG_ATTR_P			BIT(7)
#define SEG_ATTR_AVL			BIT(8)
#define SEG_ATTR_L			BIT(9)
#define SEG_ATTR_DB			BIT(10)
#define SEG_ATTR_G			BIT(11)

struct vmcb_control {
	u32 intercept_cr;		/* 0x000 */
	u32 intercept_dr;		/* 0x004 */
	u32 intercept_exceptions;	/* 0x008 */
	u32 intercept_misc1;		/* 0x00c */
	u32 intercept_misc2;		/* 0x010 */
	u32 intercept_misc3;		/* 0x014 */
	u8 reserved_1[0x03c - 0x018];
	u16 pause_filter_thresh;	/* 0x03c */
	u16 pause_filter_count;		/* 0x03e */
	u64 iopm_base_pa;		/* 0x040 */
	u64 msrpm_base_pa;		/* 0x048 */
	u64 tsc_offset;			/* 0x050 */
	u32 asid;			/* 0x058 */
	u8 tlb_ctl;			/* 0x05c */
	u8 reserved_2[3];
	u64 int_ctl;			/* 0x060 */
	u64 int_state;			/* 0x068 */
	u64 exit_code;			/* 0x070 */
	u64 exit_info_1;		/* 0x078 */
	u64 exit_info_2;		/* 0x080 */
	u64 exit_int_info;		/* 0x088 */
	u64 nested_ctl;			/* 0x090 */
	u64 avic_vapic_bar;		/* 0x098 */
	u64 ghcb_gpa;			/* 0x0a0 */
	u64 event_inj;			/* 0x0a8 */
	u64 nested_cr3;			/* 0x0b0 */
	u64 virt_ext;			/* 0x0b8 */
	u32 clean;			/* 0x0c0 */
	u32 reserved_3;
	u64 next_rip;			/* 0x0c8 */
	u8 insn_len;			/* 0x0d0 */
	u8 insn_bytes[15];
	u8 reserved_4[0x400 - 0x0e0];
} __packed;

struct vmcb_seg {
	u16 selector;
	u16 attrib;
	u32 limit;
	u64 base;
} __packed;

struct vmcb_save {
	struct vmcb_seg es;		/* 0x000 */
	struct vmcb_seg cs;		/* 0x010 */
	struct vmcb_seg ss;		/* 0x020 */
	struct vmcb_seg ds;		/* 0x030 */
	struct vmcb_seg fs;		/* 0x040 */
	struct vmcb_seg gs;		/* 0x050 */
	struct vmcb_seg gdtr;		/* 0x060 */
	struct vmcb_seg ldtr;		/* 0x070 */
	struct vmcb_seg idtr;		/* 0x080 */
	struct vmcb_seg tr;		/* 0x090 */
	u8 reserved_1[0x0cb - 0x0a0];
	u8 cpl;				/* 0x0cb */
	u32 reserved_2;
	u64 efer;			/* 0x0d0 */
	u8 reserved_3[0x148 - 0x0d8];
	u64 cr4;			/* 0x148 */
	u64 cr3;			/* 0x150 */
	u64 cr0;			/* 0x158 */
	u64 dr7;			/* 0x160 */
	u64 dr6;			/* 0x168 */
	u64 rflags;			/* 0x170 */
	u64 rip;			/* 0x178 */
	u8 reserved_4[0x1d8 - 0x180];
	u64 rsp;			/* 0x1d8 */
	u8 reserved_5[0x1f8 - 0x1e0];
	u64 rax;			/* 0x1f8 */
	u64 star;			/* 0x200 */
	u64 lstar;			/* 0x208 */
	u64 cstar;			/* 0x210 */
	u64 sfmask;			/* 0x218 */
	u64 kernel_gs_base;		/* 0x220 */
	u64 sysenter_cs;		/* 0x228 */
	u64 sysenter_esp;		/* 0x230 */
	u64 sysenter_eip;		/* 0x238 */
	u64 cr2;			/* 0x240 */
	u8 reserved_6[0x268 - 0x248];
	u64 g_pat;			/* 0x268 */
	u64 dbgctl;			/* 0x270 */
} __packed;

struct vmcb {
	struct vmcb_control control;
	struct vmcb_save save;
} __packed;

static_assert(offsetof(struct vmcb_control, asid) == 0x058);
static_assert(offsetof(struct vmcb_control, event_inj) == 0x0a8);
static_assert(offsetof(struct vmcb_control, next_rip) == 0x0c8);
static_assert(sizeof(struct vmcb_control) == 0x400);
static_assert(offsetof(struct vmcb_save, cpl) == 0x0cb);
static_assert(offsetof(struct vmcb_save, efer) == 0x0d0);
static_assert(offsetof(struct vmcb_save, cr4) == 0x148);
static_assert(offsetof(struct vmcb_save, rsp) == 0x1d8);
static_assert(offsetof(struct vmcb_save, rax) == 0x1f8);
static_assert(offsetof(struct vmcb_save, cr2) == 0x240);
static_assert(offsetof(struct vmcb_save, g_pat) == 0x268);

#endif /* _VIREO_SVM_VMCB_H */
