/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The x86 instruction emulator (arch/x86/emulate.c), shared by both
 * vendors.  It executes one instruction against a vireo_emu_ctxt: the
 * GPRs, RIP and RFLAGS, the CPU mode and the segment bases, and an ops
 * table through which every memory access goes by guest-linear address,
 * so the caller decides what is RAM and what is MMIO.
 *
 * Like decode.c it is plain C with no kernel dependencies beyond the
 * fixed-size types: selftests/unit/ builds it as a userspace program and
 * compares it with the real CPU.
 */
#ifndef _VIREO_EMULATE_H
#define _VIREO_EMULATE_H

#include <vireo/insn.h>

/* What an instruction (or a memory callback) came to. */
enum vireo_emu_result {
	/*
	 * Executed: registers, RIP and RFLAGS in the context are the new
	 * ones.  A REP string instruction that did not finish within
	 * VIREO_EMU_REP_BATCH iterations also returns this, with RIP still
	 * at the instruction and RCX/RSI/RDI moved on, just as the CPU
	 * leaves it for an interrupt: running the guest (or calling again)
	 * carries on where it stopped.
	 */
	VIREO_EMU_OK,
	/*
	 * An exception, described by ctxt->fault, for the caller to inject.
	 * RIP is unchanged; so is every register, except that a REP string
	 * instruction keeps the iterations it completed before the fault.
	 */
	VIREO_EMU_FAULT,
	/* Not an instruction the emulator executes; nothing changed. */
	VIREO_EMU_UNHANDLED,
	/*
	 * A locked read-modify-write found memory changed under it
	 * (ops->cmpxchg failed): nothing changed, execute it again.
	 */
	VIREO_EMU_RETRY,
	/*
	 * A memory callback must leave for the VMM first (an MMIO access
	 * the kernel does not serve): like VIREO_EMU_FAULT nothing of the
	 * instruction took effect beyond the REP iterations it completed,
	 * and executing it again once the VMM has answered carries on.
	 */
	VIREO_EMU_EXIT,
};

/* Most iterations of a REP string instruction in one call. */
#define VIREO_EMU_REP_BATCH	64

/* Exception vectors the emulator raises itself. */
#define VIREO_EMU_UD		6
#define VIREO_EMU_NM		7
#define VIREO_EMU_SS		12
#define VIREO_EMU_GP		13
#define VIREO_EMU_PF		14

/* RFLAGS bits the emulator reads or writes */
#define VIREO_FL_CF		BIT(0)
#define VIREO_FL_PF		BIT(2)
#define VIREO_FL_AF		BIT(4)
#define VIREO_FL_ZF		BIT(6)
#define VIREO_FL_SF		BIT(7)
#define VIREO_FL_DF		BIT(10)
#define VIREO_FL_OF		BIT(11)
#define VIREO_FL_ARITH		(VIREO_FL_CF | VIREO_FL_PF | VIREO_FL_AF | \
				 VIREO_FL_ZF | VIREO_FL_SF | VIREO_FL_OF)

struct vireo_emu_fault {
	u8 vector;
	bool error_code_valid;
	u32 error_code;
	u64 address;		/* #PF: the faulting linear address (CR2) */
};

struct vireo_emu_ctxt;

/*
 * Memory callbacks.  @la is a guest-linear address (segment base added,
 * canonical in 64-bit mode); @val is @bytes (1-8, or 16 for the SSE
 * moves) little-endian bytes.
 * Each returns VIREO_EMU_OK, or VIREO_EMU_FAULT after filling
 * ctxt->fault (vireo_emu_set_fault()), or VIREO_EMU_UNHANDLED when the
 * access cannot be done here (the emulator then gives up on the
 * instruction).  An instruction writes memory at most once, after all
 * its reads, so a failed access leaves it without effect.
 */
struct vireo_emu_ops {
	enum vireo_emu_result (*read)(struct vireo_emu_ctxt *ctxt, u64 la,
				      void *val, unsigned int bytes);
	enum vireo_emu_result (*write)(struct vireo_emu_ctxt *ctxt, u64 la,
				       const void *val, unsigned int bytes);
	/*
	 * Optional: write @new only if memory still holds @old, atomically;
	 * VIREO_EMU_RETRY when it does not.  Used for XCHG with memory and
	 * LOCK-prefixed instructions; without it they use write().
	 */
	enum vireo_emu_result (*cmpxchg)(struct vireo_emu_ctxt *ctxt, u64 la,
					 const void *old, const void *new,
					 unsigned int bytes);
	/*
	 * Optional: the 16 bytes of XMM register @reg (0-15).  Without
	 * them the SSE moves are VIREO_EMU_UNHANDLED.  They may answer
	 * VIREO_EMU_FAULT (#UD without CR4.OSFXSR or with CR0.EM, #NM with
	 * CR0.TS); the emulator writes an XMM register last, after every
	 * memory access succeeded.
	 */
	enum vireo_emu_result (*read_xmm)(struct vireo_emu_ctxt *ctxt,
					  unsigned int reg, void *val);
	enum vireo_emu_result (*write_xmm)(struct vireo_emu_ctxt *ctxt,
					   unsigned int reg, const void *val);
};

struct vireo_emu_ctxt {
	u64 regs[16];		/* RAX..R15 in the hardware's order */
	u64 rip;
	u64 rflags;
	enum vireo_cpu_mode mode;	/* of the code segment */
	/*
	 * SS.B outside 64-bit mode: the stack pointer is ESP (true) or SP
	 * for PUSH and POP.
	 */
	bool stack32;
	/*
	 * Segment bases, by enum vireo_seg.  64-bit mode uses only FS and
	 * GS (the others are 0 there).  Limits and access rights are not
	 * checked: the hardware checked the access that exited, and only
	 * the later iterations of a REP string instruction could go past a
	 * limit unnoticed.
	 */
	u64 seg_base[6];
	const struct vireo_emu_ops *ops;
	void *priv;		/* for the callbacks */
	struct vireo_emu_fault fault;	/* set with VIREO_EMU_FAULT */
	/*
	 * REP iterations this call completed and committed to regs[] so
	 * far (vireo_emulate_insn() zeroes it): a callback sees it grow
	 * when the accesses it is asked for belong to a new iteration.
	 */
	u32 iterations;
};

static inline enum vireo_emu_result
vireo_emu_set_fault(struct vireo_emu_ctxt *ctxt, u8 vector,
		    bool error_code_valid, u32 error_code, u64 address)
{
	ctxt->fault.vector = vector;
	ctxt->fault.error_code_valid = error_code_valid;
	ctxt->fault.error_code = error_code;
	ctxt->fault.address = address;
	return VIREO_EMU_FAULT;
}

/*
 * Decode the instruction in bytes[0..len) in ctxt->mode and execute it.
 * Bytes that do not decode give VIREO_EMU_UNHANDLED (a caller that
 * fetched all VIREO_INSN_MAX_LEN bytes knows it is a #UD).
 */
enum vireo_emu_result vireo_emulate(struct vireo_emu_ctxt *ctxt,
				    const u8 *bytes, unsigned int len);

/* The same, for an instruction vireo_decode() already decoded. */
enum vireo_emu_result vireo_emulate_insn(struct vireo_emu_ctxt *ctxt,
					 const struct vireo_insn *insn);

#endif /* _VIREO_EMULATE_H */
