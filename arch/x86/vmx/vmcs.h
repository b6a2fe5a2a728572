/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * VMCS field encodings, control bits and exit reasons, from the Intel
 * SDM vol. 3, appendices A-C and chapter 25.
 */
#ifndef _VIREO_VMX_VMCS_H
#define _VIREO_VMX_VMCS_H

#include <linux/bits.h>
#include <linux/types.h>

/* 16-bit fields */
#define VMCS_VPID			0x0000
#define GUEST_ES_SELECTOR		0x0800
#define GUEST_CS_SELECTOR		0x0802
#define GUEST_SS_SELECTOR		0x0804
#define GUEST_DS_SELECTOR		0x0806
#define GUEST_FS_SELECTOR		0x0808
#define GUEST_GS_SELECTOR		0x080a
#define GUEST_LDTR_SELECTOR		0x080c
#define GUEST_TR_SELECTOR		0x080e
#define HOST_ES_SELECTOR		0x0c00
#define HOST_CS_SELECTOR		0x0c02
#define HOST_SS_SELECTOR		0x0c04
#define HOST_DS_SELECTOR		0x0c06
#define HOST_FS_SELECTOR		0x0c08
#define HOST_GS_SELECTOR		0x0c0a
#define HOST_TR_SELECTOR		0x0c0c
/* 64-bit fields */
#define MSR_BITMAP			0x2004
#define TSC_OFFSET			0x2010
#define EPT_POINTER			0x201a
#define GUEST_PHYSICAL_ADDRESS		0x2400
#define VMCS_LINK_POINTER		0x2800
#define GUEST_IA32_DEBUGCTL		0x2802
#define GUEST_IA32_PAT			0x2804
#define GUEST_IA32_EFER			0x2806
#define GUEST_PDPTR0			0x280a
#define HOST_IA32_PAT			0x2c00
#define HOST_IA32_EFER			0x2c02
/* 32-bit fields */
#define PIN_BASED_CONTROLS		0x4000
#define PROC_BASED_CONTROLS		0x4002
#define EXCEPTION_BITMAP		0x4004
#define CR3_TARGET_COUNT		0x400a
#define EXIT_CONTROLS			0x400c
#define EXIT_MSR_STORE_COUNT		0x400e
#define EXIT_MSR_LOAD_COUNT		0x4010
#define ENTRY_CONTROLS			0x4012
#define ENTRY_MSR_LOAD_COUNT		0x4014
#define ENTRY_INTR_INFO			0x4016
#define ENTRY_EXCEPTION_ERROR_CODE	0x4018
#define ENTRY_INSTRUCTION_LEN		0x401a
#define SECONDARY_CONTROLS		0x401e
#define VM_INSTRUCTION_ERROR		0x4400
#define EXIT_REASON			0x4402
#define EXIT_INTR_INFO			0x4404
#define IDT_VECTORING_INFO		0x4408
#define IDT_VECTORING_ERROR_CODE	0x440a
#define EXIT_INSTRUCTION_LEN		0x440c
#define GUEST_ES_LIMIT			0x4800
#define GUEST_ES_AR			0x4814
#define GUEST_GDTR_LIMIT		0x4810
#define GUEST_IDTR_LIMIT		0x4812
#define GUEST_INTERRUPTIBILITY		0x4824
#define GUEST_ACTIVITY_STATE		0x4826
#define GUEST_SYSENTER_CS		0x482a
#define HOST_IA32_SYSENTER_CS		0x4c00
/* natural-width fields */
#define CR0_GUEST_HOST_MASK		0x6000
#define CR4_GUEST_HOST_MASK		0x6002
#define CR0_READ_SHADOW			0x6004
#define CR4_READ_SHADOW			0x6006
#define EXIT_QUALIFICATION		0x6400
#define GUEST_CR0			0x6800
#define GUEST_CR3			0x6802
#define GUEST_CR4			0x6804
#define GUEST_ES_BASE			0x6806
#define GUEST_GDTR_BASE			0x6816
#define GUEST_IDTR_BASE			0x6818
#define GUEST_DR7			0x681a
#define GUEST_RSP			0x681c
#define GUEST_RIP			0x681e
#define GUEST_RFLAGS			0x6820
#define GUEST_PENDING_DBG		0x6822
#define GUEST_SYSENTER_ESP		0x6824
#define GUEST_SYSENTER_EIP		0x6826
#define HOST_CR0			0x6c00
#define HOST_CR3			0x6c02
#define HOST_CR4			0x6c04
#define HOST_FS_BASE			0x6c06
#define HOST_GS_BASE			0x6c08
#define HOST_TR_BASE			0x6c0a
#define HOST_GDTR_BASE			0x6c0c
#define HOST_IDTR_BASE			0x6c0e
#define HOST_SYSENTER_ESP		0x6c10
#define HOST_SYSENTER_EIP		0x6c12
#define HOST_RSP			0x6c14
#define HOST_RIP			0x6c16

/*
 * The eight guest segment registers in ES, CS, SS, DS, FS, GS, LDTR, TR
 * order: selector, limit, access rights and base are 2 apart.
 */
#define SEG_SELECTOR(n)			(GUEST_ES_SELECTOR + 2 * (n))
#define SEG_LIMIT(n)			(GUEST_ES_LIMIT + 2 * (n))
#define SEG_AR(n)			(GUEST_ES_AR + 2 * (n))
#define SEG_BASE(n)			(GUEST_ES_BASE + 2 * (n))
enum { SEG_ES, SEG_CS, SEG_SS, SEG_DS, SEG_FS, SEG_GS, SEG_LDTR, SEG_TR };

/* access rights */
#define AR_UNUSABLE			BIT(16)

/* pin-based controls */
#define PIN_EXTINT_EXITING		BIT(0)
#define PIN_NMI_EXITING			BIT(3)
#define PIN_VIRTUAL_NMIS		BIT(5)
/* primary processor-based controls */
#define PROC_INTR_WINDOW_EXITING	BIT(2)
#define PROC_TSC_OFFSETTING		BIT(3)
#define PROC_HLT_EXITING		BIT(7)
#define PROC_MWAIT_EXITING		BIT(10)
#define PROC_CR3_LOAD_EXITING		BIT(15)
#define PROC_CR3_STORE_EXITING		BIT(16)
#define PROC_CR8_LOAD_EXITING		BIT(19)
#define PROC_CR8_STORE_EXITING		BIT(20)
#define PROC_NMI_WINDOW_EXITING		BIT(22)
#define PROC_MOV_DR_EXITING		BIT(23)
#define PROC_UNCOND_IO_EXITING		BIT(24)
#define PROC_USE_MSR_BITMAPS		BIT(28)
#define PROC_MONITOR_EXITING		BIT(29)
#define PROC_SECONDARY			BIT(31)
/* secondary processor-based controls */
#define PROC2_EPT			BIT(1)
#define PROC2_RDTSCP			BIT(3)
#define PROC2_VPID			BIT(5)
#define PROC2_UNRESTRICTED		BIT(7)
#define PROC2_INVPCID			BIT(12)
#define PROC2_XSAVES			BIT(20)
/* exit controls */
#define EXIT_SAVE_DEBUG			BIT(2)
#define EXIT_HOST_ADDR_SPACE		BIT(9)
#define EXIT_SAVE_PAT			BIT(18)
#define EXIT_LOAD_PAT			BIT(19)
#define EXIT_SAVE_EFER			BIT(20)
#define EXIT_LOAD_EFER			BIT(21)
/* entry controls */
#define ENTRY_LOAD_DEBUG		BIT(2)
#define ENTRY_IA32E			BIT(9)
#define ENTRY_LOAD_PAT			BIT(14)
#define ENTRY_LOAD_EFER			BIT(15)

/* guest interruptibility state */
#define INTERRUPTIBILITY_STI		BIT(0)
#define INTERRUPTIBILITY_MOV_SS		BIT(1)
#define INTERRUPTIBILITY_NMI		BIT(3)
/* pending debug exceptions: single step */
#define PENDING_DBG_BS			BIT(14)
/* exit qualification of a #DB: B0-B3, BD, BS */
#define DB_QUAL_DR6_BITS		0x600fULL

/* interruption information */
#define INTR_INFO_VECTOR(i)		((i) & 0xff)
#define INTR_INFO_TYPE(i)		(((i) >> 8) & 7)
#define INTR_TYPE_EXT_INTR		0
#define INTR_TYPE_NMI			2
#define INTR_TYPE_HW_EXCEPTION		3
#define INTR_TYPE_SW_INTR		4
#define INTR_TYPE_PRIV_SW_EXCEPTION	5
#define INTR_TYPE_SW_EXCEPTION		6
#define INTR_INFO_ERROR_VALID		BIT(11)
#define INTR_INFO_VALID			BIT(31)

/* exit reasons */
#define EXIT_REASON_EXCEPTION_NMI	0
#define EXIT_REASON_EXTERNAL_INTR	1
#define EXIT_REASON_TRIPLE_FAULT	2
#define EXIT_REASON_INIT		3
#define EXIT_REASON_SIPI		4
#define EXIT_REASON_INTR_WINDOW		7
#define EXIT_REASON_NMI_WINDOW		8
#define EXIT_REASON_CPUID		10
#define EXIT_REASON_HLT			12
#define EXIT_REASON_INVD		13
#define EXIT_REASON_VMCALL		18
#define EXIT_REASON_VMCLEAR		19
#define EXIT_REASON_VMXON		27
#define EXIT_REASON_CR_ACCESS		28
#define EXIT_REASON_DR_ACCESS		29
#define EXIT_REASON_IO			30
#define EXIT_REASON_RDMSR		31
#define EXIT_REASON_WRMSR		32
#define EXIT_REASON_INVALID_STATE	33
#define EXIT_REASON_MSR_LOADING		34
#define EXIT_REASON_MWAIT		36
#define EXIT_REASON_MONITOR		39
#define EXIT_REASON_MCE_DURING_ENTRY	41
#define EXIT_REASON_EPT_VIOLATION	48
#define EXIT_REASON_EPT_MISCONFIG	49
#define EXIT_REASON_INVEPT		50
#define EXIT_REASON_INVVPID		53
#define EXIT_REASON_XSETBV		55
#define EXIT_REASON_ENTRY_FAILED	BIT(31)

/* I/O exit qualification */
#define IO_QUAL_SIZE(q)			(((q) & 7) + 1)
#define IO_QUAL_IN			BIT(3)
#define IO_QUAL_STRING			BIT(4)
#define IO_QUAL_REP			BIT(5)
#define IO_QUAL_PORT(q)			(((q) >> 16) & 0xffff)
/* EPT violation exit qualification */
#define EPT_QUAL_WRITE			BIT(1)
#define EPT_QUAL_FETCH			BIT(2)
#define EPT_QUAL_PERMS			(BIT(3) | BIT(4) | BIT(5))
/* control-register access exit qualification */
#define CR_QUAL_NUM(q)			((q) & 0xf)
#define CR_QUAL_TYPE(q)			(((q) >> 4) & 3)
#define CR_QUAL_GPR(q)			(((q) >> 8) & 0xf)
#define CR_QUAL_LMSW_DATA(q)		(((q) >> 16) & 0xffff)
#define CR_TYPE_MOV_TO			0
#define CR_TYPE_MOV_FROM		1
#define CR_TYPE_CLTS			2
#define CR_TYPE_LMSW			3
/* debug-register access exit qualification */
#define DR_QUAL_NUM(q)			((q) & 7)
#define DR_QUAL_FROM			BIT(4)
#define DR_QUAL_GPR(q)			(((q) >> 8) & 0xf)

/* IA32_VMX_EPT_VPID_CAP */
#define EPT_CAP_INVEPT_SINGLE		BIT_ULL(25)
#define EPT_CAP_INVEPT_ALL		BIT_ULL(26)
#define VPID_CAP_INVVPID_SINGLE		BIT_ULL(41)
#define VPID_CAP_INVVPID_ALL		BIT_ULL(42)
/* EPT pointer: write-back, 4-level walk */
#define EPTP_WB_4LEVEL			(6 | (3 << 3))
/* EPT entries */
#define EPT_READ			BIT_ULL(0)
#define EPT_WRITE			BIT_ULL(1)
#define EPT_EXEC			BIT_ULL(2)
#define EPT_MT_WB			(6ULL << 3)

/* vmenter.S */
int vireo_vmx_enter(u64 *regs, bool launched);
void vireo_vmx_exit_point(void);

#endif /* _VIREO_VMX_VMCS_H */
