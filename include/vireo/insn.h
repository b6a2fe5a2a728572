/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The x86 instruction decoder (arch/x86/decode.c) and the guest page
 * table walker (arch/x86/walk.c), shared by both vendors.
 *
 * decode.c is plain C with no kernel dependencies beyond the fixed-size
 * types, so selftests/unit/ builds it as a userspace program too.
 */
#ifndef _VIREO_INSN_H
#define _VIREO_INSN_H

#ifdef __KERNEL__
#include <linux/bits.h>
#include <linux/types.h>
#else
/* userspace builds provide u8..s64, bool and BIT(): selftests/unit/kshim.h */
#include "kshim.h"
#endif

#define VIREO_INSN_MAX_LEN	15

/* Default operand/address size of the code segment being decoded. */
enum vireo_cpu_mode {
	VIREO_MODE_16,		/* real mode, vm86, or CS.D=0 */
	VIREO_MODE_32,		/* protected or compatibility mode, CS.D=1 */
	VIREO_MODE_64,		/* 64-bit mode (EFER.LMA and CS.L) */
};

/* Segment registers, in the hardware's numbering (ModRM sreg order). */
enum vireo_seg {
	VIREO_SEG_ES, VIREO_SEG_CS, VIREO_SEG_SS,
	VIREO_SEG_DS, VIREO_SEG_FS, VIREO_SEG_GS,
};

enum vireo_op {
	VIREO_OP_NONE,
	VIREO_OP_STORE,		/* MOV r/m, reg (88/89), MOV moffs, AL/eAX */
	VIREO_OP_STORE_IMM,	/* MOV r/m, imm (C6/C7) */
	VIREO_OP_LOAD,		/* MOV reg, r/m (8A/8B), MOV AL/eAX, moffs */
	VIREO_OP_LOAD_ZX,	/* MOVZX reg, r/m8 or r/m16 */
	VIREO_OP_LOAD_SX,	/* MOVSX reg, r/m8 or r/m16 (and MOVSXD) */
	VIREO_OP_IN,		/* IN AL/AX/EAX, imm8 or DX */
	VIREO_OP_OUT,		/* OUT imm8 or DX, AL/AX/EAX */
	VIREO_OP_INS,		/* INSB/INSW/INSD */
	VIREO_OP_OUTS,		/* OUTSB/OUTSW/OUTSD */
	VIREO_OP_HLT,
	VIREO_OP_CPUID,
	VIREO_OP_OTHER,		/* decoded (length known) but not one of these */
};

/* The opcode map an opcode byte belongs to. */
enum vireo_opmap {
	VIREO_MAP_ONE,		/* xx */
	VIREO_MAP_0F,		/* 0F xx */
	VIREO_MAP_0F38,		/* 0F 38 xx */
	VIREO_MAP_0F3A,		/* 0F 3A xx */
};

struct vireo_insn {
	u8 len;			/* total length, prefixes included */
	enum vireo_op op;
	u8 op_size;		/* operand size: 1, 2, 4 or 8 */
	u8 addr_size;		/* address size: 2, 4 or 8 */
	/*
	 * Size of the memory access (MOVZX/MOVSX: the source, 1 or 2;
	 * MOVSXD: 4) or of the I/O access (1, 2 or 4).
	 */
	u8 mem_size;
	/*
	 * Register operand (ModRM.reg with REX.R), 0-15 = RAX..R15; 0 (the
	 * accumulator) for moffs MOV and IN/OUT, 0 for STORE_IMM.
	 */
	u8 reg;
	/*
	 * The register is AH, CH, DH or BH (8-bit, no REX, reg 4-7): reg
	 * stays 4-7 and the byte is bits 15:8 of register reg - 4.
	 */
	bool high_byte;
	u64 imm;		/* STORE_IMM value, sign-extended to op_size */
	u16 port;		/* IN/OUT imm8 form */
	bool port_in_dx;	/* IN/OUT with the port in DX */
	bool rep;		/* F3 (or F2) prefix */
	enum vireo_seg seg;	/* effective data segment (override or DS) */
	bool has_modrm;
	/*
	 * ModRM.mod != 3, moffs, or INS/OUTS.  A MOV with mod 3 still
	 * decodes as STORE/LOAD, with mem_operand false.
	 */
	bool mem_operand;
	/*
	 * Memory operand, for computing its address: base + index * scale
	 * + disp, truncated to addr_size.  16-bit forms: BX/BP in base_reg
	 * and SI/DI in index_reg, or SI, DI, BP, BX alone in base_reg.
	 * INS: base_reg RDI; OUTS: base_reg RSI.
	 */
	int base_reg;		/* -1 none, else 0-15; RIP-relative: see below */
	int index_reg;		/* -1 none */
	u8 scale;		/* 1, 2, 4, 8 */
	s64 disp;		/* sign-extended displacement, or moffs (zero-ext.) */
	bool rip_relative;	/* address = next RIP + disp */

	/*
	 * The raw encoding, for the instruction emulator (emulate.c), which
	 * needs more than the classification above.
	 */
	u8 map;			/* enum vireo_opmap */
	u8 opcode;		/* the opcode byte within that map */
	u8 modrm;		/* valid when has_modrm */
	u8 rex;			/* the REX prefix in effect (0x40-0x4f), or 0 */
	u8 rep_prefix;		/* 0xf2 or 0xf3, the last one seen, or 0 */
	bool lock;		/* F0 */
	bool opsize_prefix;	/* 66 */
	u8 imm_len;		/* bytes of immediate, 0-8 */
	u64 raw_imm;		/* those bytes, zero-extended, as encoded */
};

/*
 * Decode the instruction in buf[0..len).  Returns 0 and fills *insn, or
 * -1 when the bytes are not a valid instruction or run past len (a
 * caller that fetched fewer than VIREO_INSN_MAX_LEN bytes may fetch more
 * and try again).  Unknown but well-formed opcodes decode as
 * VIREO_OP_OTHER only where the length is known; otherwise -1.
 */
int vireo_decode(const u8 *buf, unsigned int len, enum vireo_cpu_mode mode,
		 struct vireo_insn *insn);

#ifdef __KERNEL__
struct kvm_sregs;
struct vireo_vcpu;

/* access bits for vireo_gva_to_gpa(), as in a #PF error code */
#define VIREO_ACC_WRITE		BIT(1)
#define VIREO_ACC_USER		BIT(2)
#define VIREO_ACC_FETCH		BIT(4)

/*
 * Translate a guest linear address through the guest's own page tables
 * (none, 32-bit, PAE or 4-level, from sregs' CR0/CR4/EFER/CR3).
 * Returns 0 with *gpa set; -EFAULT with *pf_error the #PF error code
 * the guest should see when the walk faults; another -errno when a
 * page table is outside guest memory (-ENXIO, or what vireo_read_guest()
 * returned), for a non-canonical address in long mode (-EINVAL: a #GP
 * or #SS, not a #PF) and with 5-level paging (-EOPNOTSUPP).
 */
int vireo_gva_to_gpa(struct vireo_vcpu *vcpu, const struct kvm_sregs *sregs,
		     u64 gva, u32 access, u64 *gpa, u32 *pf_error);
#endif

#endif /* _VIREO_INSN_H */
