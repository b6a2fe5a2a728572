// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit test of the instruction emulator, arch/x86/emulate.c, built as a
 * userspace program.
 *
 * The differential part generates random instructions of every family
 * the emulator knows (random prefixes, operand and address sizes, REX
 * bits, registers, immediates and addressing forms), runs each on this
 * CPU and through the emulator from the same registers, flags and
 * memory, and compares the GPRs, the arithmetic flags and DF, and the
 * memory.  Natively, the instruction sits in an executable page between
 * a prologue that loads all sixteen GPRs and RFLAGS from a state block
 * and an epilogue that stores them back, both addressing the block
 * RIP-relative so that no register is needed for it.  Memory operands
 * point into a test buffer through a base register (or RIP, or an
 * absolute address, or FS/GS: GS gets a base of our choosing), which is
 * why everything lives below 2 GiB (MAP_32BIT): 32-bit addresses and
 * disp32 reach it.  The emulator gets its own copy of the buffer.
 *
 * Every arithmetic flag is compared except those the manuals leave
 * undefined, so that the test does not depend on one CPU model (CI may
 * run on Intel or AMD): AF after AND, OR, XOR and TEST (the emulator
 * clears it, as AMD EPYC does), and OF, SF, AF and PF after the bit
 * tests (gen_bt(); the emulator leaves them alone, as EPYC does).
 * Undocumented aliases (F6/F7 /1 for TEST) are emulated but not
 * generated.
 *
 * A table part then checks 16- and 32-bit encodings, which a 64-bit
 * process cannot run, against hand-derived results, and the faults and
 * refusals the emulator must give.
 *
 * The SSE moves (MOVUPS/MOVUPD, MOVAPS/MOVAPD, MOVNTPS/MOVNTPD/MOVNTDQ,
 * MOVDQA, MOVDQU, MOVD/MOVQ) get the same differential treatment, one
 * TAP line per opcode and mandatory prefix (and REX.W for MOVD/MOVQ with
 * a GPR), with random XMM contents: the native prologue also loads all
 * sixteen XMM registers from the state block and the epilogue stores
 * them back (MOVDQU, RIP-relative), and the emulator gets read_xmm and
 * write_xmm callbacks on its own copy.  Register and memory operands,
 * xmm8-15 and r8-r15 through REX.R and REX.B, REX.W where it means
 * nothing; the aligned forms also at misaligned addresses, which are
 * not run on the CPU (a #GP is a SIGSEGV there) but must give #GP(0)
 * from the emulator with nothing changed.  Then, through the emulator
 * only: without read_xmm/write_xmm, or in the slots' other encodings
 * (F2, MOVSS, MMX), they are VIREO_EMU_UNHANDLED; LOCK gives #UD; and
 * a callback answering VIREO_EMU_FAULT (#NM, #PF) comes back with
 * nothing changed.  (A native SSE case that takes a SIGILL runs again:
 * see run_native_sse().)
 *
 * Usage: emu_test [seed]
 */
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <asm/prctl.h>

#include <vireo/emulate.h>

#include "tap.h"

#define PER_FAMILY	10000
#define PER_SSE_FORM	3000
#define CODE_SIZE	4096
#define STATE_SIZE	4096
#define BUF_SIZE	16384
/* memory operands land in [MARGIN, BUF_SIZE - MARGIN) */
#define MARGIN		4096
#define NREGS		16
#define NXMM		16
/* the instruction's place in the code page, after the prologue */
#define INSN_OFF	512
#define R_SP		4

#define FL_FIXED	0x202ULL	/* bit 1 and IF, as POPF leaves them */
#define FL_COMPARED	(VIREO_FL_ARITH | VIREO_FL_DF)

/* the block the native prologue loads and the epilogue stores */
struct native_state {
	u64 regs[NREGS];
	u64 rflags;
	u64 host_rsp;
	u8 xmm[NXMM][16];	/* loaded and stored for SSE cases only */
};

static u8 *region;		/* code, state, buffer: below 2 GiB */
static u8 *code;
static struct native_state *ns;
static u8 *buf;			/* the native run's memory */
static u8 emu_buf[BUF_SIZE];	/* the emulator's copy */
static u64 fs_base, gs_base;
static unsigned long long seed;

static u64 rng_state;

static u64 rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

static unsigned int rn(unsigned int n)
{
	return (unsigned int)(rnd() >> 33) % n;
}

/* values near the edges where flags change, often enough to matter */
static u64 rnd_val(void)
{
	unsigned int k = rn(64);

	switch (rn(8)) {
	case 0:
		return 0;
	case 1:
		return ~0ULL;
	case 2:
		return rn(256);
	case 3:
		return (1ULL << k) - rn(3);
	case 4:
		return (1ULL << k) + rn(2);
	case 5:
		return -(u64)rn(256);
	default:
		return rnd();
	}
}

/* What an instruction is made of, before it becomes bytes. */
struct enc {
	u8 pfx[8];
	unsigned int npfx;
	bool rex;		/* emit a REX even if no bit needs one */
	bool rexw;
	u8 rex_noise;		/* X/B bits set where they mean nothing */
	u8 opc[3];
	unsigned int nopc;
	int opc_reg;		/* B0+r: the register in the opcode, or -1 */
	bool modrm, sib;
	u8 mod, reg, rm;	/* reg, rm: 0-15 */
	u8 ss, index, base;	/* SIB; index, base: 0-15 */
	unsigned int dsize;
	s64 disp;
	bool riprel;
	u64 rip_target;		/* the effective address RIP + disp must give */
	unsigned int isize, msize;
	u64 imm, moffs;
	/* what the generator decided, for the operand it builds */
	unsigned int osz;	/* operand size of the non-byte forms */
	bool a32;
	bool fs_ok;		/* FS may be used: the EA can hold fs_base */
};

struct tcase {
	u8 bytes[VIREO_INSN_MAX_LEN + 8];
	unsigned int len;
	u64 regs[NREGS];
	u64 rflags;
	u64 compare_flags;	/* which RFLAGS bits must match */
	/* SSE moves: the XMM registers are loaded, stored and compared */
	bool sse;
	bool mem_operand, riprel;
	bool a32;		/* an address-size prefix (0x67) */
	u8 xmm[NXMM][16];
};

static void add_pfx(struct enc *e, u8 b)
{
	if (e->npfx < sizeof(e->pfx))
		e->pfx[e->npfx++] = b;
}

/* Lay @e out at address @at; returns the length. */
static unsigned int assemble(const struct enc *e, u64 at, u8 *out)
{
	unsigned int n = 0, i, disp_at = 0;
	u8 rex = e->rexw ? 0x08 : 0;
	u8 free_bits = 0x03;	/* X and B, until something uses them */

	if (e->modrm) {
		rex |= e->reg & 8 ? 0x04 : 0;
		if (e->sib) {
			rex |= (e->index & 8 ? 0x02 : 0) |
			       (e->base & 8 ? 0x01 : 0);
			free_bits = 0;
		} else {
			rex |= e->rm & 8 ? 0x01 : 0;
			free_bits = 0x02;
		}
	}
	if (e->opc_reg >= 0) {
		rex |= e->opc_reg & 8 ? 0x01 : 0;
		free_bits &= ~0x01;
	}
	rex |= e->rex_noise & free_bits;
	if (rex || e->rex)
		rex |= 0x40;

	for (i = 0; i < e->npfx; i++)
		out[n++] = e->pfx[i];
	if (rex)
		out[n++] = rex;
	for (i = 0; i < e->nopc; i++)
		out[n++] = e->opc[i];
	if (e->opc_reg >= 0)
		out[n - 1] |= e->opc_reg & 7;
	if (e->modrm)
		out[n++] = e->mod << 6 | (e->reg & 7) << 3 | (e->rm & 7);
	if (e->sib)
		out[n++] = e->ss << 6 | (e->index & 7) << 3 | (e->base & 7);
	disp_at = n;
	for (i = 0; i < e->dsize; i++)
		out[n++] = (u64)e->disp >> (8 * i);
	for (i = 0; i < e->msize; i++)
		out[n++] = e->moffs >> (8 * i);
	for (i = 0; i < e->isize; i++)
		out[n++] = e->imm >> (8 * i);
	if (e->riprel) {
		/* RIP-relative: relative to the end of the instruction */
		u32 d = (u32)(e->rip_target - (at + n));

		for (i = 0; i < 4; i++)
			out[disp_at + i] = d >> (8 * i);
	}
	return n;
}

static u8 pick_reg(u32 avoid)
{
	u8 r;

	do {
		r = rn(NREGS);
	} while (avoid & (1U << r));
	return r;
}

/* random garbage for bits 63:32, which 32-bit addressing ignores */
static u64 hi_garbage(const struct enc *e)
{
	return e->a32 && rn(2) ? rnd() << 32 : 0;
}

/*
 * A memory operand at linear address @target in the buffer: choose the
 * segment, the addressing form and displacement, then set the base and
 * index registers (never those in @avoid) so that they add up to it.
 */
static void gen_mem(struct tcase *t, struct enc *e, u64 target, u32 avoid)
{
	static const u8 ignored_seg[] = { 0x26, 0x2e, 0x36, 0x3e };
	u64 ea = target, idx;
	bool fs = false;
	unsigned int form;

	switch (rn(8)) {
	case 0:
		add_pfx(e, 0x65);
		ea = target - gs_base;
		break;
	case 1:
		if (!e->a32 && e->fs_ok) {
			add_pfx(e, 0x64);
			ea = target - fs_base;
			fs = true;
		}
		break;
	case 2:	/* ES, CS, SS, DS: ignored in 64-bit mode */
		add_pfx(e, ignored_seg[rn(4)]);
		break;
	}
	e->modrm = true;
	form = rn(6);
	if (fs && (form == 2 || form >= 4))
		form = 3;	/* a disp32 alone cannot reach FS's base */
	e->mod = rn(3);
	e->dsize = e->mod == 1 ? 1 : e->mod == 2 ? 4 : 0;
	e->disp = e->mod == 1 ? (s8)rnd() : e->mod == 2 ? (s32)rnd() : 0;

	switch (form) {
	case 0:		/* [base + disp], no SIB */
		e->base = pick_reg(avoid | 1U << 4 | 1U << 12);
		if (e->mod == 0 && (e->base & 7) == 5) {
			e->mod = 1;
			e->dsize = 1;
			e->disp = (s8)rnd();
		}
		e->rm = e->base;
		t->regs[e->base] = (ea - e->disp) ^ hi_garbage(e);
		break;
	case 1:		/* [base + index * scale + disp] */
	case 2:		/* [index * scale + disp32] */
		e->sib = true;
		e->rm = 4;
		e->ss = rn(4);
		e->base = pick_reg(avoid);
		e->index = pick_reg(avoid | 1U << 4 | 1U << e->base);
		idx = (u64)(s64)(int)(rn(201) - 100);
		t->regs[e->index] = idx ^ hi_garbage(e);
		idx = t->regs[e->index] << e->ss;
		if (form == 2) {
			/* no base: base field 5 with mod 0; REX.B is moot */
			e->mod = 0;
			e->dsize = 4;
			e->base = 5 | (rn(2) ? 8 : 0);
			e->disp = (s32)(u32)(ea - idx);
			break;
		}
		if (e->mod == 0 && (e->base & 7) == 5) {
			e->mod = 1;
			e->dsize = 1;
			e->disp = (s8)rnd();
		}
		t->regs[e->base] = (ea - e->disp - idx) ^ hi_garbage(e);
		break;
	case 3:		/* [base + disp] through a SIB without index */
		e->sib = true;
		e->rm = 4;
		e->ss = rn(4);
		e->index = 4;
		e->base = pick_reg(avoid);
		if (e->mod == 0 && (e->base & 7) == 5) {
			e->mod = 1;
			e->dsize = 1;
			e->disp = (s8)rnd();
		}
		t->regs[e->base] = (ea - e->disp) ^ hi_garbage(e);
		break;
	case 4:		/* [RIP + disp32] */
		e->mod = 0;
		e->rm = 5;
		e->dsize = 4;
		e->riprel = true;
		e->rip_target = ea;
		break;
	default:	/* [disp32], SIB with neither base nor index */
		e->mod = 0;
		e->rm = 4;
		e->sib = true;
		e->index = 4;
		e->base = 5;
		e->dsize = 4;
		e->disp = (s32)(u32)ea;
		break;
	}
}

static u64 insn_addr(void)
{
	return (u64)(uintptr_t)code + INSN_OFF;
}

static u64 buf_target(unsigned int room)
{
	return (u64)(uintptr_t)buf + MARGIN + rn(BUF_SIZE - 2 * MARGIN - room);
}

/* 66 and REX.W: which of them, and the operand size they give */
static void gen_opsize(struct enc *e)
{
	bool p66 = rn(2);

	e->rexw = rn(3) == 0;
	e->rex = rn(4) == 0;
	e->rex_noise = rn(4) == 0 ? rn(4) : 0;
	if (p66)
		add_pfx(e, 0x66);
	e->osz = e->rexw ? 8 : p66 ? 2 : 4;
	e->a32 = rn(4) == 0;
	if (e->a32)
		add_pfx(e, 0x67);
	e->fs_ok = true;
}

/* The ModRM.rm operand: a register, or memory in the buffer. */
static bool gen_rm(struct tcase *t, struct enc *e, u32 avoid)
{
	if (rn(3) == 0) {
		e->modrm = true;
		e->mod = 3;
		e->rm = rn(NREGS);
		return false;
	}
	gen_mem(t, e, buf_target(8), avoid);
	return true;
}

static void set_imm(struct enc *e, unsigned int size)
{
	e->isize = size;
	e->imm = rnd_val();
}

/* the Iz immediate of the operand size */
static unsigned int iz(const struct enc *e)
{
	return e->osz == 2 ? 2 : 4;
}

static void maybe_lock(struct enc *e, bool mem)
{
	if (mem && rn(4) == 0)
		add_pfx(e, 0xf0);
}

/* AF is undefined after OR (1), AND (4) and XOR (6) */
static void no_af_if_logic(struct tcase *t, unsigned int op)
{
	if (op == 1 || op == 4 || op == 6)
		t->compare_flags &= ~VIREO_FL_AF;
}

/* 00-3D */
static void gen_alu(struct tcase *t, struct enc *e)
{
	unsigned int op = rn(8), form = rn(6);
	bool mem;

	gen_opsize(e);
	e->opc[e->nopc++] = op << 3 | form;
	if (form >= 4) {
		set_imm(e, form == 4 ? 1 : iz(e));
		no_af_if_logic(t, op);
		return;
	}
	e->reg = rn(NREGS);
	mem = gen_rm(t, e, 0);
	if (form <= 1 && op != 7)
		maybe_lock(e, mem);
	no_af_if_logic(t, op);
}

/* 80, 81, 83 */
static void gen_alu_imm(struct tcase *t, struct enc *e)
{
	static const u8 opcs[] = { 0x80, 0x81, 0x83 };
	u8 opc = opcs[rn(3)];
	bool mem;

	gen_opsize(e);
	e->opc[e->nopc++] = opc;
	e->reg = rn(8);
	mem = gen_rm(t, e, 0);
	set_imm(e, opc == 0x81 ? iz(e) : 1);
	if (e->reg != 7)
		maybe_lock(e, mem);
	no_af_if_logic(t, e->reg);
}

/* TEST 84, 85, A8, A9, F6 /0, F7 /0 */
static void gen_test(struct tcase *t, struct enc *e)
{
	unsigned int form = rn(3);
	bool w = rn(2);

	gen_opsize(e);
	t->compare_flags &= ~VIREO_FL_AF;	/* undefined after TEST */
	if (form == 0) {
		e->opc[e->nopc++] = 0x84 | w;
		e->reg = rn(NREGS);
		gen_rm(t, e, 0);
	} else if (form == 1) {
		e->opc[e->nopc++] = 0xa8 | w;
		set_imm(e, w ? iz(e) : 1);
	} else {
		e->opc[e->nopc++] = 0xf6 | w;
		e->reg = 0;		/* not /1: an undocumented alias */
		gen_rm(t, e, 0);
		set_imm(e, w ? iz(e) : 1);
	}
}

/* INC, DEC (FE, FF /0 /1); NOT, NEG (F6, F7 /2 /3) */
static void gen_unary(struct tcase *t, struct enc *e)
{
	bool w = rn(2), grp3 = rn(2);
	bool mem;

	gen_opsize(e);
	e->opc[e->nopc++] = (grp3 ? 0xf6 : 0xfe) | w;
	e->reg = (grp3 ? 2 : 0) + rn(2);
	mem = gen_rm(t, e, 0);
	maybe_lock(e, mem);
}

/* MOV 88-8B, C6, C7, B0-BF, A0-A3 */
static void gen_mov(struct tcase *t, struct enc *e)
{
	bool w = rn(2);

	gen_opsize(e);
	switch (rn(4)) {
	case 0:
		e->opc[e->nopc++] = 0x88 | w | (rn(2) << 1);
		e->reg = rn(NREGS);
		gen_rm(t, e, 0);
		break;
	case 1:
		e->opc[e->nopc++] = 0xc6 | w;
		e->reg = 0;
		gen_rm(t, e, 0);
		set_imm(e, w ? iz(e) : 1);
		break;
	case 2:
		e->opc[e->nopc++] = w ? 0xb8 : 0xb0;
		e->opc_reg = rn(NREGS);
		set_imm(e, w ? e->osz : 1);
		break;
	default:
		/* moffs: the absolute address, of the address size */
		e->opc[e->nopc++] = 0xa0 | w | (rn(2) << 1);
		e->msize = e->a32 ? 4 : 8;
		e->moffs = buf_target(8);
		if (rn(4) == 0) {
			add_pfx(e, 0x65);
			e->moffs -= gs_base;
		}
		break;
	}
}

/* MOVZX, MOVSX (0F B6/B7/BE/BF), MOVSXD (63) */
static void gen_movx(struct tcase *t, struct enc *e)
{
	static const u8 opcs[] = { 0xb6, 0xb7, 0xbe, 0xbf };

	gen_opsize(e);
	if (rn(5) == 0) {
		e->opc[e->nopc++] = 0x63;
	} else {
		e->opc[e->nopc++] = 0x0f;
		e->opc[e->nopc++] = opcs[rn(4)];
	}
	e->reg = rn(NREGS);
	gen_rm(t, e, 0);
}

/* XCHG 86, 87 */
static void gen_xchg(struct tcase *t, struct enc *e)
{
	bool mem;

	gen_opsize(e);
	e->opc[e->nopc++] = 0x86 | rn(2);
	e->reg = rn(NREGS);
	mem = gen_rm(t, e, 0);
	maybe_lock(e, mem);
}

/*
 * BT, BTS, BTR, BTC with a register bit offset (0F A3/AB/B3/BB), which
 * into memory may be up to 2048 bytes either way, and 0F BA /4-/7 imm8.
 */
static void gen_bt(struct tcase *t, struct enc *e)
{
	static const u8 opcs[] = { 0xa3, 0xab, 0xb3, 0xbb };
	unsigned int op = rn(4);
	bool mem;

	gen_opsize(e);
	e->opc[e->nopc++] = 0x0f;
	if (rn(3) == 0) {
		e->opc[e->nopc++] = 0xba;
		e->reg = 4 + op;
		mem = gen_rm(t, e, 0);
		set_imm(e, 1);
	} else {
		e->opc[e->nopc++] = opcs[op];
		e->reg = rn(NREGS);
		if (rn(3) == 0) {
			e->modrm = true;
			e->mod = 3;
			e->rm = rn(NREGS);
			mem = false;
		} else {
			gen_mem(t, e, buf_target(8), 1U << e->reg);
			mem = true;
			/* a signed offset of up to +-2048 bytes */
			t->regs[e->reg] = (u64)(s64)(int)(rn(32768) - 16384) ^
					  (e->osz == 8 ? 0 : rnd() << 32);
		}
	}
	if (op)
		maybe_lock(e, mem);
	/* OF, SF, AF and PF are undefined after a bit test */
	t->compare_flags &= ~(VIREO_FL_OF | VIREO_FL_SF | VIREO_FL_AF |
			      VIREO_FL_PF);
}

/*
 * MOVS, CMPS, STOS, LODS, SCAS, with REP (all) or REPE/REPNE (CMPS,
 * SCAS): rSI and rDI in the middle of the buffer, up to 100 iterations.
 */
static void gen_string(struct tcase *t, struct enc *e)
{
	static const u8 opcs[] = { 0xa4, 0xa6, 0xaa, 0xac, 0xae };
	u8 opc = opcs[rn(5)];
	u64 mid = (u64)(uintptr_t)buf + BUF_SIZE / 2;
	unsigned int rep = rn(3);

	gen_opsize(e);
	e->opc[e->nopc++] = opc | rn(2);
	if (rep == 1 || (rep == 2 && (opc == 0xa6 || opc == 0xae)))
		add_pfx(e, rep == 1 ? 0xf3 : 0xf2);
	else if (rep == 2)
		add_pfx(e, 0xf3);
	t->regs[6] = (mid - 1024 + rn(2048)) ^ hi_garbage(e);
	t->regs[7] = (mid - 1024 + rn(2048)) ^ hi_garbage(e);
	t->regs[1] = rn(101) ^ hi_garbage(e);
	if (rn(4) == 0) {
		/* the source segment can be overridden */
		add_pfx(e, 0x65);
		t->regs[6] = (t->regs[6] - gs_base) ^ hi_garbage(e);
	}
	if (rn(3) == 0) {
		/* CMPS/SCAS: make equal runs likely, so REPE goes on */
		u8 b = rnd();

		memset(buf + BUF_SIZE / 2 - 1024 - 800, b, 3648);
		t->regs[0] = b * 0x0101010101010101ULL;
	}
}

/* PUSH r/m (FF /6), POP r/m (8F /0), with RSP in the buffer */
static void gen_pushpop(struct tcase *t, struct enc *e)
{
	bool push = rn(2);

	gen_opsize(e);
	e->opc[e->nopc++] = push ? 0xff : 0x8f;
	e->reg = push ? 6 : 0;
	t->regs[R_SP] = (u64)(uintptr_t)buf + BUF_SIZE / 2 + rn(64) - 32;
	if (rn(4) == 0) {
		/* [rsp + disp8]: pop computes it after moving RSP */
		e->modrm = true;
		e->mod = 1;
		e->rm = 4;
		e->sib = true;
		e->index = 4;
		e->base = 4;
		e->dsize = 1;
		e->disp = (s8)rnd();
		return;
	}
	if (rn(3) == 0) {
		e->modrm = true;
		e->mod = 3;
		e->rm = rn(NREGS);
		if (e->rm == R_SP && !push && e->osz != 2 && rn(2))
			e->rm = 0;	/* POP RSP: keep it rarer */
		return;
	}
	gen_mem(t, e, buf_target(8), 1U << R_SP);
}

/* MOVNTI (0F C3), memory only, no 66 */
static void gen_movnti(struct tcase *t, struct enc *e)
{
	e->rexw = rn(2);
	e->rex = rn(2);
	e->a32 = rn(4) == 0;
	if (e->a32)
		add_pfx(e, 0x67);
	e->opc[e->nopc++] = 0x0f;
	e->opc[e->nopc++] = 0xc3;
	e->reg = rn(NREGS);
	gen_mem(t, e, buf_target(8), 0);
}

struct family {
	const char *name;
	void (*gen)(struct tcase *t, struct enc *e);
};

static const struct family families[] = {
	{ "ADD/OR/ADC/SBB/AND/SUB/XOR/CMP 00-3D", gen_alu },
	{ "ALU with immediate 80/81/83", gen_alu_imm },
	{ "TEST 84/85/A8/A9/F6/F7", gen_test },
	{ "INC/DEC/NOT/NEG", gen_unary },
	{ "MOV 88-8B/A0-A3/B0-BF/C6/C7", gen_mov },
	{ "MOVZX/MOVSX/MOVSXD", gen_movx },
	{ "XCHG 86/87", gen_xchg },
	{ "BT/BTS/BTR/BTC", gen_bt },
	{ "MOVS/CMPS/STOS/LODS/SCAS with REP", gen_string },
	{ "PUSH/POP r/m", gen_pushpop },
	{ "MOVNTI", gen_movnti },
};

/* Random registers, flags and memory for a case to start from. */
static void rand_state(struct tcase *t)
{
	unsigned int i;

	for (i = 0; i < NREGS; i++)
		t->regs[i] = rnd_val();
	t->rflags = FL_FIXED | (rnd() & FL_COMPARED);
	t->compare_flags = FL_COMPARED;
	for (i = 0; i < BUF_SIZE; i += 8) {
		u64 v = rn(4) ? rnd() : rnd_val();

		memcpy(buf + i, &v, 8);
	}
	t->sse = false;
	t->mem_operand = false;
	t->riprel = false;
}

/* A random test case of family @f: state, memory and instruction. */
static void gen_case(const struct family *f, struct tcase *t)
{
	struct enc e;

again:
	e = (struct enc){ .opc_reg = -1 };
	rand_state(t);
	f->gen(t, &e);
	/* where the instruction will be: see build_native() */
	t->len = assemble(&e, insn_addr(), t->bytes);
	t->a32 = e.a32;
	/* prefixes may add up to more than the CPU takes */
	if (t->len > VIREO_INSN_MAX_LEN)
		goto again;
}

static u8 *emit_rip(u8 *p, bool store, unsigned int reg, const void *where)
{
	s32 d;

	*p++ = 0x48 | (reg & 8 ? 0x04 : 0);
	*p++ = store ? 0x89 : 0x8b;
	*p++ = 0x05 | (reg & 7) << 3;
	d = (s32)((intptr_t)where - (intptr_t)(p + 4));
	memcpy(p, &d, 4);
	return p + 4;
}

/* MOVDQU xmm@reg, [rip + where], or the store the other way */
static u8 *emit_xmm_rip(u8 *p, bool store, unsigned int reg,
			const void *where)
{
	s32 d;

	*p++ = 0xf3;
	if (reg & 8)
		*p++ = 0x44;		/* REX.R */
	*p++ = 0x0f;
	*p++ = store ? 0x7f : 0x6f;
	*p++ = 0x05 | (reg & 7) << 3;
	d = (s32)((intptr_t)where - (intptr_t)(p + 4));
	memcpy(p, &d, 4);
	return p + 4;
}

static u8 *emit(u8 *p, const char *bytes, unsigned int n)
{
	memcpy(p, bytes, n);
	return p + n;
}

/*
 * The code page: save the callee-saved registers and RSP, load RFLAGS,
 * the XMM registers for an SSE case, and the GPRs (RSP last), the
 * instruction at code + INSN_OFF, store the XMM registers (SSE), the
 * GPRs and RFLAGS, clear DF as the ABI wants, restore and return.  The
 * XMM registers are all caller-saved: the call to the page tells the
 * compiler it loses them.
 */
static void build_native(const struct tcase *t)
{
	u8 *p = code;
	s32 d;
	int r;

	memset(code, 0xcc, CODE_SIZE);
	p = emit(p, "\x53\x55\x41\x54\x41\x55\x41\x56\x41\x57", 10);
	p = emit_rip(p, true, R_SP, &ns->host_rsp);
	p = emit(p, "\xff\x35", 2);		/* push [rip + rflags] */
	d = (s32)((intptr_t)&ns->rflags - (intptr_t)(p + 4));
	memcpy(p, &d, 4);
	p += 4;
	p = emit(p, "\x9d", 1);			/* popf */
	for (r = 0; t->sse && r < NXMM; r++)
		p = emit_xmm_rip(p, false, r, ns->xmm[r]);
	for (r = 0; r < NREGS; r++)
		if (r != R_SP)
			p = emit_rip(p, false, r, &ns->regs[r]);
	p = emit_rip(p, false, R_SP, &ns->regs[R_SP]);
	if (p > code + INSN_OFF)
		tap_bail("native prologue longer than INSN_OFF");
	/* pad to code + INSN_OFF with NOPs (which touch nothing) */
	while (p < code + INSN_OFF)
		*p++ = 0x90;
	p = emit(p, (const char *)t->bytes, t->len);
	for (r = 0; t->sse && r < NXMM; r++)
		p = emit_xmm_rip(p, true, r, ns->xmm[r]);
	for (r = 0; r < NREGS; r++)
		p = emit_rip(p, true, r, &ns->regs[r]);
	p = emit_rip(p, false, R_SP, &ns->host_rsp);
	p = emit(p, "\x9c\x8f\x05", 3);		/* pushf; pop [rip + rflags] */
	d = (s32)((intptr_t)&ns->rflags - (intptr_t)(p + 4));
	memcpy(p, &d, 4);
	p += 4;
	p = emit(p, "\xfc\x41\x5f\x41\x5e\x41\x5d\x41\x5c\x5d\x5b\xc3", 12);
}

static sigjmp_buf native_jmp;
static volatile int native_signal;

static void on_signal(int sig)
{
	native_signal = sig;
	siglongjmp(native_jmp, 1);
}

/* Run @t on the CPU; false when it faulted (a bug in this test). */
static bool run_native(const struct tcase *t, struct native_state *out)
{
	void (*fn)(void) = (void (*)(void))(uintptr_t)code;

	build_native(t);
	memcpy(ns->regs, t->regs, sizeof(ns->regs));
	ns->rflags = t->rflags;
	if (t->sse)
		memcpy(ns->xmm, t->xmm, sizeof(ns->xmm));
	native_signal = 0;
	if (sigsetjmp(native_jmp, 1))
		return false;
	fn();
	*out = *ns;
	return true;
}

static u64 buf_la(void)
{
	return (u64)(uintptr_t)buf;
}

static bool in_buf(u64 la, unsigned int bytes)
{
	return la >= buf_la() && la + bytes <= buf_la() + BUF_SIZE;
}

static enum vireo_emu_result t_read(struct vireo_emu_ctxt *c, u64 la,
				    void *val, unsigned int bytes)
{
	if (!in_buf(la, bytes))
		return vireo_emu_set_fault(c, VIREO_EMU_PF, true, 0, la);
	memcpy(val, emu_buf + (la - buf_la()), bytes);
	return VIREO_EMU_OK;
}

static enum vireo_emu_result t_write(struct vireo_emu_ctxt *c, u64 la,
				     const void *val, unsigned int bytes)
{
	if (!in_buf(la, bytes))
		return vireo_emu_set_fault(c, VIREO_EMU_PF, true, 2, la);
	memcpy(emu_buf + (la - buf_la()), val, bytes);
	return VIREO_EMU_OK;
}

static unsigned int cmpxchg_calls;

static enum vireo_emu_result t_cmpxchg(struct vireo_emu_ctxt *c, u64 la,
				       const void *old, const void *new,
				       unsigned int bytes)
{
	if (!in_buf(la, bytes))
		return vireo_emu_set_fault(c, VIREO_EMU_PF, true, 2, la);
	cmpxchg_calls++;
	if (memcmp(emu_buf + (la - buf_la()), old, bytes))
		return VIREO_EMU_RETRY;
	memcpy(emu_buf + (la - buf_la()), new, bytes);
	return VIREO_EMU_OK;
}

static const struct vireo_emu_ops test_ops = {
	.read = t_read,
	.write = t_write,
	.cmpxchg = t_cmpxchg,
};

/*
 * The SSE cases' callbacks, which count their calls and can be told to
 * answer VIREO_EMU_FAULT: #PF for memory, #NM (CR0.TS) for XMM.
 */
enum { CB_READ, CB_WRITE, CB_READ_XMM, CB_WRITE_XMM, NCB };

static u8 emu_xmm[NXMM][16];	/* the emulator's XMM registers */
static unsigned int cb_calls[NCB];
static unsigned int cb_fail;	/* a mask of the callbacks that fail */
static unsigned int bad_xmm_calls;	/* register numbers out of range */

static bool cb_fails(unsigned int cb)
{
	cb_calls[cb]++;
	return cb_fail & 1U << cb;
}

static enum vireo_emu_result s_read(struct vireo_emu_ctxt *c, u64 la,
				    void *val, unsigned int bytes)
{
	if (cb_fails(CB_READ))
		return vireo_emu_set_fault(c, VIREO_EMU_PF, true, 0, la);
	return t_read(c, la, val, bytes);
}

static enum vireo_emu_result s_write(struct vireo_emu_ctxt *c, u64 la,
				     const void *val, unsigned int bytes)
{
	if (cb_fails(CB_WRITE))
		return vireo_emu_set_fault(c, VIREO_EMU_PF, true, 2, la);
	return t_write(c, la, val, bytes);
}

static enum vireo_emu_result s_read_xmm(struct vireo_emu_ctxt *c,
					unsigned int reg, void *val)
{
	if (cb_fails(CB_READ_XMM))
		return vireo_emu_set_fault(c, VIREO_EMU_NM, false, 0, 0);
	if (reg >= NXMM) {
		bad_xmm_calls++;
		return VIREO_EMU_UNHANDLED;
	}
	memcpy(val, emu_xmm[reg], 16);
	return VIREO_EMU_OK;
}

static enum vireo_emu_result s_write_xmm(struct vireo_emu_ctxt *c,
					 unsigned int reg, const void *val)
{
	if (cb_fails(CB_WRITE_XMM))
		return vireo_emu_set_fault(c, VIREO_EMU_NM, false, 0, 0);
	if (reg >= NXMM) {
		bad_xmm_calls++;
		return VIREO_EMU_UNHANDLED;
	}
	memcpy(emu_xmm[reg], val, 16);
	return VIREO_EMU_OK;
}

static const struct vireo_emu_ops sse_ops = {
	.read = s_read,
	.write = s_write,
	.cmpxchg = t_cmpxchg,
	.read_xmm = s_read_xmm,
	.write_xmm = s_write_xmm,
};

/* half of the XMM access: the SSE moves must still be refused */
static const struct vireo_emu_ops read_xmm_only_ops = {
	.read = s_read,
	.write = s_write,
	.read_xmm = s_read_xmm,
};

static const struct vireo_emu_ops write_xmm_only_ops = {
	.read = s_read,
	.write = s_write,
	.write_xmm = s_write_xmm,
};

/*
 * A context holding @t's registers and flags at its instruction, with
 * @ops (for an SSE case, the XMM registers too, and no failing callback).
 */
static void init_ctxt(const struct tcase *t, struct vireo_emu_ctxt *c,
		      const struct vireo_emu_ops *ops)
{
	*c = (struct vireo_emu_ctxt) {
		.rip = insn_addr(),
		.rflags = t->rflags,
		.mode = VIREO_MODE_64,
		.ops = ops,
	};
	c->seg_base[VIREO_SEG_FS] = fs_base;
	c->seg_base[VIREO_SEG_GS] = gs_base;
	memcpy(c->regs, t->regs, sizeof(c->regs));
	if (t->sse)
		memcpy(emu_xmm, t->xmm, sizeof(emu_xmm));
	memset(cb_calls, 0, sizeof(cb_calls));
	cb_fail = 0;
}

/*
 * Emulate @t until RIP moves past it (a REP instruction takes several
 * calls of VIREO_EMU_REP_BATCH iterations); the result of the last call.
 */
static enum vireo_emu_result run_emu(const struct tcase *t,
				     struct vireo_emu_ctxt *c,
				     unsigned int *calls)
{
	u64 rip = insn_addr();
	enum vireo_emu_result r;

	init_ctxt(t, c, t->sse ? &sse_ops : &test_ops);
	for (*calls = 1; *calls <= 100; ++*calls) {
		r = vireo_emulate(c, t->bytes, t->len);
		if (r != VIREO_EMU_OK || c->rip != rip)
			return r;
	}
	return VIREO_EMU_RETRY;
}

static const char *const reg_names[NREGS] = {
	"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
	"r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
};

static void diag_bytes(const char *what, const struct tcase *t)
{
	char hex[3 * sizeof(t->bytes) + 1];
	unsigned int i;

	for (i = 0; i < t->len; i++)
		sprintf(hex + 3 * i, "%02x ", t->bytes[i]);
	hex[3 * t->len] = 0;
	tap_diag("%s: %s", what, hex);
}

/* @x as one 128-bit hex number */
static const char *xmm_hex(const u8 *x, char *out)
{
	u64 lo, hi;

	memcpy(&lo, x, 8);
	memcpy(&hi, x + 8, 8);
	sprintf(out, "%016llx_%016llx", (unsigned long long)hi,
		(unsigned long long)lo);
	return out;
}

/*
 * Whether the NXMM registers at @a and @b differ (16 bytes each, the
 * first at @was before the instruction); diagnose those that do.
 */
static bool xmm_differ(const char *aname, const u8 *a, const char *bname,
		       const u8 *b, const u8 *was)
{
	char ha[40], hb[40], hw[40];
	bool differ = false;
	unsigned int i;

	for (i = 0; i < NXMM; i++, a += 16, b += 16, was += 16) {
		if (!memcmp(a, b, 16))
			continue;
		tap_diag("  xmm%u: %s %s %s %s (was %s)", i, aname,
			 xmm_hex(a, ha), bname, xmm_hex(b, hb),
			 xmm_hex(was, hw));
		differ = true;
	}
	return differ;
}

/*
 * With an address-size prefix a string instruction counts in ECX and
 * walks ESI and EDI: whether the upper halves of RCX, RSI and RDI stay
 * or are cleared differs between CPUs (an Intel CPU here clears them,
 * even for a zero count; earlier machines kept them).  Either passes.
 */
static bool upper_half_either(const struct tcase *t, int i, u64 cpu, u64 emu)
{
	u64 old_hi = t->regs[i] >> 32;

	if ((i != 1 && i != 6 && i != 7) || !t->a32 ||
	    (u32)cpu != (u32)emu)
		return false;
	return ((cpu >> 32) == 0 || (cpu >> 32) == old_hi) &&
	       ((emu >> 32) == 0 || (emu >> 32) == old_hi);
}

/* Compare the two runs of @t; diagnose the first few differences. */
static bool same_result(const struct tcase *t, const struct native_state *n,
			const struct vireo_emu_ctxt *c)
{
	bool ok = true;
	int i;

	for (i = 0; i < NREGS; i++) {
		if (n->regs[i] == c->regs[i] ||
		    upper_half_either(t, i, n->regs[i], c->regs[i]))
			continue;
		tap_diag("  %s: cpu %#llx emu %#llx (was %#llx)", reg_names[i],
			 (unsigned long long)n->regs[i],
			 (unsigned long long)c->regs[i],
			 (unsigned long long)t->regs[i]);
		ok = false;
	}
	if ((n->rflags ^ c->rflags) & t->compare_flags) {
		tap_diag("  rflags: cpu %#llx emu %#llx (was %#llx)",
			 (unsigned long long)(n->rflags & t->compare_flags),
			 (unsigned long long)(c->rflags & t->compare_flags),
			 (unsigned long long)t->rflags);
		ok = false;
	}
	if (memcmp(buf, emu_buf, BUF_SIZE)) {
		for (i = 0; buf[i] == emu_buf[i]; i++)
			;
		tap_diag("  memory +%#x: cpu %#x emu %#x", i, buf[i],
			 emu_buf[i]);
		ok = false;
	}
	if (t->sse && xmm_differ("cpu", n->xmm[0], "emu", emu_xmm[0],
				 t->xmm[0]))
		ok = false;
	return ok;
}

/* whether the CPU changed anything: the test must not be vacuous */
static bool native_changed(const struct tcase *t, const struct native_state *n)
{
	return memcmp(t->regs, n->regs, sizeof(t->regs)) ||
	       ((t->rflags ^ n->rflags) & t->compare_flags) ||
	       memcmp(buf, emu_buf, BUF_SIZE) ||
	       (t->sse && memcmp(t->xmm, n->xmm, sizeof(t->xmm)));
}

/*
 * Under valgrind the "native" run is valgrind's model of the CPU, which
 * lacks some aliases (F7 /1) and cannot follow our stack switch: there
 * the random instructions only go through the emulator, for valgrind to
 * check its memory accesses.
 */
static bool emulator_only;
static unsigned int rep_resumed;

static bool under_valgrind(void)
{
	const char *p = getenv("LD_PRELOAD");

	return p && strstr(p, "vgpreload");
}

/* The emulator alone must execute every generated instruction. */
static bool run_emu_only(const struct family *f, unsigned int count)
{
	struct vireo_emu_ctxt c;
	enum vireo_emu_result r;
	unsigned int i, calls;
	struct tcase t;

	for (i = 0; i < count; i++) {
		gen_case(f, &t);
		memcpy(emu_buf, buf, BUF_SIZE);
		r = run_emu(&t, &c, &calls);
		if (calls > 1)
			rep_resumed++;
		if (r != VIREO_EMU_OK) {
			diag_bytes("emulator refused", &t);
			tap_diag("  result %d, case %u of %s", r, i, f->name);
			return false;
		}
	}
	return true;
}

static bool run_family(const struct family *f, unsigned int count)
{
	unsigned int i, bad = 0, calls, changed = 0;
	struct vireo_emu_ctxt c;
	struct native_state n;
	struct tcase t;
	enum vireo_emu_result r;

	if (emulator_only)
		return run_emu_only(f, count);
	for (i = 0; i < count && bad < 5; i++) {
		gen_case(f, &t);
		memcpy(emu_buf, buf, BUF_SIZE);
		if (!run_native(&t, &n)) {
			diag_bytes("native run took a signal", &t);
			tap_diag("  signal %d, case %u", native_signal, i);
			bad++;
			continue;
		}
		changed += native_changed(&t, &n);
		r = run_emu(&t, &c, &calls);
		if (calls > 1)
			rep_resumed++;
		if (r != VIREO_EMU_OK) {
			diag_bytes("emulator refused", &t);
			tap_diag("  result %d vector %u, case %u", r,
				 c.fault.vector, i);
			bad++;
			continue;
		}
		if (c.rip != insn_addr() + t.len ||
		    !same_result(&t, &n, &c)) {
			diag_bytes("differs", &t);
			tap_diag("  case %u of %s", i, f->name);
			bad++;
		}
	}
	if (changed < count / 4) {
		tap_diag("%s: only %u of %u instructions changed anything",
			 f->name, changed, count);
		bad++;
	}
	return !bad;
}

/*
 * The SSE moves: one form per opcode and mandatory prefix (and REX.W
 * where it selects MOVQ), as arch/x86/emulate.c lists them.
 */
#define SSE_ALIGNED	1	/* #GP(0) at a misaligned address */
#define SSE_MEM_ONLY	2	/* no register form */
#define SSE_GPR		4	/* ModRM.rm is a GPR when mod == 3 */

struct sse_form {
	const char *name;
	u8 pfx;			/* the mandatory prefix, or 0 */
	u8 opc;			/* the opcode after 0F */
	bool rexw;		/* SSE_GPR: MOVQ (64 bits), not MOVD */
	unsigned int flags;
};

static const struct sse_form sse_forms[] = {
	{ "MOVUPS xmm, xmm/m128 (0F 10)", 0, 0x10, false, 0 },
	{ "MOVUPS xmm/m128, xmm (0F 11)", 0, 0x11, false, 0 },
	{ "MOVUPD xmm, xmm/m128 (66 0F 10)", 0x66, 0x10, false, 0 },
	{ "MOVUPD xmm/m128, xmm (66 0F 11)", 0x66, 0x11, false, 0 },
	{ "MOVAPS xmm, xmm/m128 (0F 28)", 0, 0x28, false, SSE_ALIGNED },
	{ "MOVAPS xmm/m128, xmm (0F 29)", 0, 0x29, false, SSE_ALIGNED },
	{ "MOVAPD xmm, xmm/m128 (66 0F 28)", 0x66, 0x28, false,
	  SSE_ALIGNED },
	{ "MOVAPD xmm/m128, xmm (66 0F 29)", 0x66, 0x29, false,
	  SSE_ALIGNED },
	{ "MOVNTPS m128, xmm (0F 2B)", 0, 0x2b, false,
	  SSE_ALIGNED | SSE_MEM_ONLY },
	{ "MOVNTPD m128, xmm (66 0F 2B)", 0x66, 0x2b, false,
	  SSE_ALIGNED | SSE_MEM_ONLY },
	{ "MOVNTDQ m128, xmm (66 0F E7)", 0x66, 0xe7, false,
	  SSE_ALIGNED | SSE_MEM_ONLY },
	{ "MOVDQA xmm, xmm/m128 (66 0F 6F)", 0x66, 0x6f, false,
	  SSE_ALIGNED },
	{ "MOVDQA xmm/m128, xmm (66 0F 7F)", 0x66, 0x7f, false,
	  SSE_ALIGNED },
	{ "MOVDQU xmm, xmm/m128 (F3 0F 6F)", 0xf3, 0x6f, false, 0 },
	{ "MOVDQU xmm/m128, xmm (F3 0F 7F)", 0xf3, 0x7f, false, 0 },
	{ "MOVD xmm, r/m32 (66 0F 6E)", 0x66, 0x6e, false, SSE_GPR },
	{ "MOVQ xmm, r/m64 (66 REX.W 0F 6E)", 0x66, 0x6e, true, SSE_GPR },
	{ "MOVD r/m32, xmm (66 0F 7E)", 0x66, 0x7e, false, SSE_GPR },
	{ "MOVQ r/m64, xmm (66 REX.W 0F 7E)", 0x66, 0x7e, true, SSE_GPR },
	{ "MOVQ xmm, xmm/m64 (F3 0F 7E)", 0xf3, 0x7e, false, 0 },
	{ "MOVQ xmm/m64, xmm (66 0F D6)", 0x66, 0xd6, false, 0 },
};

/* What gen_sse() is to build besides the form. */
struct sse_gen {
	int mem;		/* a memory operand (1), a register (0), either */
	bool misaligned;	/* memory that is not 16-byte aligned */
	bool lock;		/* a LOCK prefix */
};

/*
 * An instruction of form @f: ModRM.reg any of xmm0-15, ModRM.rm a
 * register (xmm0-15, or a GPR for MOVD/MOVQ) or memory in the buffer
 * through any addressing form; REX.W random where it means nothing.
 */
static void gen_sse(struct tcase *t, struct enc *e, const struct sse_form *f,
		    const struct sse_gen *g)
{
	bool mem = g->mem >= 0 ? g->mem : rn(3) != 0;
	unsigned int i, j;
	u64 target;
	u8 b;

	if (f->flags & SSE_MEM_ONLY && g->mem < 0)
		mem = true;
	if (g->misaligned)
		mem = true;
	if (f->pfx)
		add_pfx(e, f->pfx);
	if (g->lock)
		add_pfx(e, 0xf0);
	e->rexw = f->flags & SSE_GPR ? f->rexw : rn(4) == 0;
	e->rex = rn(4) == 0;
	e->rex_noise = rn(4) == 0 ? rn(4) : 0;
	e->opc[e->nopc++] = 0x0f;
	e->opc[e->nopc++] = f->opc;
	e->reg = rn(NXMM);
	if (!mem) {
		e->modrm = true;
		e->mod = 3;
		e->rm = rn(NREGS);
	} else {
		/* 67 only with memory: elsewhere it is reserved */
		e->a32 = rn(4) == 0;
		if (e->a32)
			add_pfx(e, 0x67);
		e->fs_ok = true;
		target = buf_target(32) & ~15ULL;
		if (g->misaligned)
			target += 1 + rn(15);
		else if (!(f->flags & SSE_ALIGNED) && rn(4))
			target += rn(16);
		gen_mem(t, e, target, 0);
	}
	/* the legacy prefixes, in any order */
	for (i = e->npfx; i > 1; i--) {
		j = rn(i);
		b = e->pfx[i - 1];
		e->pfx[i - 1] = e->pfx[j];
		e->pfx[j] = b;
	}
}

/* A random SSE case of form @f: state, XMM registers, instruction. */
static void gen_sse_case(const struct sse_form *f, const struct sse_gen *g,
			 struct tcase *t)
{
	unsigned int i, j;
	struct enc e;
	u64 v;

	do {
		e = (struct enc){ .opc_reg = -1 };
		rand_state(t);
		t->sse = true;
		for (i = 0; i < NXMM; i++) {
			for (j = 0; j < 16; j += 8) {
				v = rn(4) ? rnd() : rnd_val();
				memcpy(&t->xmm[i][j], &v, 8);
			}
		}
		gen_sse(t, &e, f, g);
		t->len = assemble(&e, insn_addr(), t->bytes);
		t->a32 = e.a32;
	} while (t->len > VIREO_INSN_MAX_LEN);
	t->mem_operand = e.mod != 3;
	t->riprel = e.riprel;
}

/* After a refusal or a fault: registers, flags, memory and XMM as in @t */
static bool unchanged(const struct tcase *t, const struct vireo_emu_ctxt *c)
{
	bool ok = true;
	int i;

	for (i = 0; i < NREGS; i++) {
		if (c->regs[i] == t->regs[i])
			continue;
		tap_diag("  %s: %#llx, was %#llx", reg_names[i],
			 (unsigned long long)c->regs[i],
			 (unsigned long long)t->regs[i]);
		ok = false;
	}
	if (c->rip != insn_addr() || c->rflags != t->rflags) {
		tap_diag("  rip %#llx rflags %#llx, were %#llx %#llx",
			 (unsigned long long)c->rip,
			 (unsigned long long)c->rflags,
			 (unsigned long long)insn_addr(),
			 (unsigned long long)t->rflags);
		ok = false;
	}
	if (memcmp(buf, emu_buf, BUF_SIZE)) {
		for (i = 0; buf[i] == emu_buf[i]; i++)
			;
		tap_diag("  memory +%#x: %#x, was %#x", i, emu_buf[i], buf[i]);
		ok = false;
	}
	if (t->sse && xmm_differ("now", emu_xmm[0], "before", t->xmm[0],
				 t->xmm[0]))
		ok = false;
	return ok;
}

/* Emulate @t once with @ops, the callbacks in mask @fail failing. */
static enum vireo_emu_result emu_once(const struct tcase *t,
				      const struct vireo_emu_ops *ops,
				      unsigned int fail,
				      struct vireo_emu_ctxt *c)
{
	enum vireo_emu_result r;

	memcpy(emu_buf, buf, BUF_SIZE);
	init_ctxt(t, c, ops);
	cb_fail = fail;
	r = vireo_emulate(c, t->bytes, t->len);
	cb_fail = 0;
	return r;
}

/*
 * @r and @c must be @want, with @vector for a FAULT (#GP and #PF with
 * an error code, 0 for #GP; #UD and #NM without), and nothing changed.
 */
static bool check_refusal(const struct tcase *t, const char *what,
			  enum vireo_emu_result r,
			  const struct vireo_emu_ctxt *c,
			  enum vireo_emu_result want, u8 vector)
{
	bool ok = r == want, ec = vector == VIREO_EMU_GP ||
				  vector == VIREO_EMU_PF;

	if (ok && r == VIREO_EMU_FAULT)
		ok = c->fault.vector == vector &&
		     c->fault.error_code_valid == ec &&
		     (vector != VIREO_EMU_GP || !c->fault.error_code);
	if (!ok) {
		diag_bytes(what, t);
		tap_diag("  result %d vector %u error code %d/%#x, want %d vector %u",
			 r, c->fault.vector, c->fault.error_code_valid,
			 c->fault.error_code, want, vector);
	}
	if (!unchanged(t, c)) {
		if (ok)
			diag_bytes(what, t);
		tap_diag("  changed something (result %d)", r);
		ok = false;
	}
	return ok;
}

struct sse_stats {
	unsigned int reg, mem, riprel, misaligned;
};

static unsigned int sse_sigill_retries;

/*
 * Run SSE case @t on the CPU, again after a SIGILL.  In a VM the host
 * may, when it takes an exit right there, emulate the instruction and
 * inject a #UD if its emulator does not know it: under Firecracker (KVM)
 * on AMD EPYC, about one MOVD/MOVQ (66 0F 6E/7E/D6, F3 0F 7E) in 100000
 * took a SIGILL at the instruction that the same case run again did not
 * (and no other form ever did).  A real #UD comes every time.  The
 * instruction had no effect; the buffer is restored anyway.
 */
static bool run_native_sse(const struct tcase *t, struct native_state *n)
{
	unsigned int tries;

	for (tries = 0; !run_native(t, n); tries++) {
		if (native_signal != SIGILL || tries == 2)
			return false;
		diag_bytes("native run took a SIGILL, running it again", t);
		sse_sigill_retries++;
		memcpy(buf, emu_buf, BUF_SIZE);
	}
	return true;
}

/*
 * @count random instructions of form @f on the CPU and through the
 * emulator; every fourth of an aligned form at a misaligned address,
 * through the emulator only, which must give #GP(0).
 */
static bool run_sse_form(const struct sse_form *f, unsigned int count,
			 struct sse_stats *st)
{
	unsigned int i, bad = 0, calls, changed = 0, native = 0;
	struct sse_gen g = { .mem = -1 };
	struct vireo_emu_ctxt c;
	struct native_state n;
	enum vireo_emu_result r;
	struct tcase t;

	for (i = 0; i < count && bad < 5; i++) {
		g.misaligned = f->flags & SSE_ALIGNED && i % 4 == 3;
		gen_sse_case(f, &g, &t);
		st->mem += t.mem_operand;
		st->reg += !t.mem_operand;
		st->riprel += t.riprel;
		if (g.misaligned) {
			st->misaligned++;
			r = emu_once(&t, &sse_ops, 0, &c);
			bad += !check_refusal(&t, "misaligned, want #GP(0)", r,
					      &c, VIREO_EMU_FAULT,
					      VIREO_EMU_GP);
			continue;
		}
		memcpy(emu_buf, buf, BUF_SIZE);
		if (!emulator_only) {
			if (!run_native_sse(&t, &n)) {
				diag_bytes("native run took a signal", &t);
				tap_diag("  signal %d, case %u", native_signal,
					 i);
				bad++;
				continue;
			}
			native++;
			changed += native_changed(&t, &n);
		}
		r = run_emu(&t, &c, &calls);
		if (r != VIREO_EMU_OK) {
			diag_bytes("emulator refused", &t);
			tap_diag("  result %d vector %u, case %u of %s", r,
				 c.fault.vector, i, f->name);
			bad++;
			continue;
		}
		if (emulator_only)
			continue;
		if (c.rip != insn_addr() + t.len ||
		    !same_result(&t, &n, &c)) {
			diag_bytes("differs", &t);
			tap_diag("  case %u of %s", i, f->name);
			bad++;
		}
	}
	if (changed < native / 4) {
		tap_diag("%s: only %u of %u instructions changed anything",
			 f->name, changed, native);
		bad++;
	}
	if (bad_xmm_calls) {
		tap_diag("%s: %u XMM callbacks for a register above 15",
			 f->name, bad_xmm_calls);
		bad_xmm_calls = 0;
		bad++;
	}
	return !bad;
}

/* Without read_xmm and write_xmm (or one of them): UNHANDLED. */
static bool sse_without_xmm_ops(unsigned int per_form)
{
	static const struct vireo_emu_ops *const ops[] = {
		&test_ops, &read_xmm_only_ops, &write_xmm_only_ops,
	};
	struct sse_gen g = { .mem = -1 };
	unsigned int i, k, bad = 0;
	struct vireo_emu_ctxt c;
	enum vireo_emu_result r;
	struct tcase t;

	for (k = 0; k < ARRAY_SIZE(sse_forms); k++) {
		for (i = 0; i < per_form && bad < 5; i++) {
			g.misaligned = sse_forms[k].flags & SSE_ALIGNED &&
				       i % 4 == 3;
			gen_sse_case(&sse_forms[k], &g, &t);
			r = emu_once(&t, ops[i % 3], 0, &c);
			bad += !check_refusal(&t, "without XMM access", r, &c,
					      VIREO_EMU_UNHANDLED, 0);
		}
	}
	return !bad;
}

/*
 * LOCK: #UD with a memory operand (before the alignment check); the
 * register forms the decoder already refuses (UNHANDLED, or #UD).
 */
static bool sse_lock(unsigned int per_form)
{
	struct sse_gen g = { .lock = true };
	unsigned int i, k, bad = 0;
	struct vireo_emu_ctxt c;
	enum vireo_emu_result r;
	struct tcase t;

	for (k = 0; k < ARRAY_SIZE(sse_forms); k++) {
		for (i = 0; i < per_form && bad < 5; i++) {
			g.mem = i % 3 != 0 ||
				sse_forms[k].flags & SSE_MEM_ONLY;
			g.misaligned = sse_forms[k].flags & SSE_ALIGNED &&
				       i % 4 == 3;
			gen_sse_case(&sse_forms[k], &g, &t);
			r = emu_once(&t, &sse_ops, 0, &c);
			if (!t.mem_operand && r == VIREO_EMU_UNHANDLED)
				bad += !check_refusal(&t, "LOCK", r, &c,
						      VIREO_EMU_UNHANDLED, 0);
			else
				bad += !check_refusal(&t, "LOCK", r, &c,
						      VIREO_EMU_FAULT,
						      VIREO_EMU_UD);
		}
	}
	return !bad;
}

/*
 * A callback answering VIREO_EMU_FAULT.  Both XMM callbacks with #NM,
 * as with CR0.TS set: every SSE move must fault.  One callback (#NM for
 * XMM, #PF for memory): the move must fault when it called it and
 * complete when it did not.  A fault must change nothing.
 */
static bool sse_failing_callbacks(unsigned int per_form,
				  unsigned int *faults)
{
	static const u8 vector[NCB] = {
		[CB_READ] = VIREO_EMU_PF, [CB_WRITE] = VIREO_EMU_PF,
		[CB_READ_XMM] = VIREO_EMU_NM, [CB_WRITE_XMM] = VIREO_EMU_NM,
	};
	struct sse_gen g = { .mem = -1 };
	unsigned int i, k, cb, bad = 0;
	struct vireo_emu_ctxt c;
	enum vireo_emu_result r;
	struct tcase t;

	for (k = 0; k < ARRAY_SIZE(sse_forms); k++) {
		for (i = 0; i < per_form && bad < 5; i++) {
			gen_sse_case(&sse_forms[k], &g, &t);
			if (i % 2 == 0) {
				r = emu_once(&t, &sse_ops,
					     1U << CB_READ_XMM |
					     1U << CB_WRITE_XMM, &c);
				bad += !check_refusal(&t, "XMM callbacks #NM",
						      r, &c, VIREO_EMU_FAULT,
						      VIREO_EMU_NM);
				++*faults;
				continue;
			}
			cb = rn(NCB);
			r = emu_once(&t, &sse_ops, 1U << cb, &c);
			if (cb_calls[cb]) {
				bad += !check_refusal(&t, "failing callback",
						      r, &c, VIREO_EMU_FAULT,
						      vector[cb]);
				++*faults;
			} else if (r != VIREO_EMU_OK) {
				diag_bytes("failing callback not called", &t);
				tap_diag("  callback %u, result %d vector %u",
					 cb, r, c.fault.vector);
				bad++;
			}
		}
	}
	return !bad;
}

/*
 * The other encodings in the SSE moves' opcode slots: F2 (MOVSD and
 * others), MOVSS, the MMX forms without a prefix, the register forms of
 * the non-temporal stores.  The emulator leaves them all: UNHANDLED.
 */
static bool sse_other_encodings(unsigned int per_slot, unsigned int *slots)
{
	static const u8 opcs[] = {
		0x10, 0x11, 0x28, 0x29, 0x2b, 0x6e, 0x6f, 0x7e, 0x7f, 0xd6,
		0xe7,
	};
	static const u8 pfxs[] = { 0, 0x66, 0xf3, 0xf2 };
	unsigned int i, k, p, j, bad = 0;
	struct sse_form f = { .name = "other" };
	struct sse_gen g;
	struct vireo_emu_ctxt c;
	enum vireo_emu_result r;
	struct tcase t;

	for (k = 0; k < ARRAY_SIZE(opcs); k++) {
		for (p = 0; p < ARRAY_SIZE(pfxs); p++) {
			g = (struct sse_gen){ .mem = -1 };
			for (j = 0; j < ARRAY_SIZE(sse_forms); j++) {
				if (sse_forms[j].opc != opcs[k] ||
				    sse_forms[j].pfx != pfxs[p])
					continue;
				/* handled: only a register is refused */
				g.mem = sse_forms[j].flags & SSE_MEM_ONLY ?
					0 : 2;
			}
			if (g.mem == 2)
				continue;
			f.opc = opcs[k];
			f.pfx = pfxs[p];
			++*slots;
			for (i = 0; i < per_slot && bad < 5; i++) {
				gen_sse_case(&f, &g, &t);
				r = emu_once(&t, &sse_ops, 0, &c);
				bad += !check_refusal(&t, "other encoding", r,
						      &c, VIREO_EMU_UNHANDLED,
						      0);
			}
		}
	}
	return !bad;
}

#define FLAT_SIZE	0x30000
static u8 flat[FLAT_SIZE];

static enum vireo_emu_result f_read(struct vireo_emu_ctxt *c, u64 la,
				    void *val, unsigned int bytes)
{
	if (la + bytes > FLAT_SIZE)
		return vireo_emu_set_fault(c, VIREO_EMU_PF, true, 0, la);
	memcpy(val, flat + la, bytes);
	return VIREO_EMU_OK;
}

static enum vireo_emu_result f_write(struct vireo_emu_ctxt *c, u64 la,
				     const void *val, unsigned int bytes)
{
	if (la + bytes > FLAT_SIZE)
		return vireo_emu_set_fault(c, VIREO_EMU_PF, true, 2, la);
	memcpy(flat + la, val, bytes);
	return VIREO_EMU_OK;
}

static const struct vireo_emu_ops flat_ops = {
	.read = f_read,
	.write = f_write,
};

enum { RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI };

#define MAX_SET		4

/*
 * One hand-checked case: registers and memory before, what the emulator
 * must return, and registers, flags and memory after.  Registers not
 * listed are 0 before and must be 0 after.
 */
struct tblcase {
	const char *name;
	int mode;
	unsigned int n;
	const char *bytes;
	u64 seg_base[6];
	bool stack32;
	u64 rflags;
	struct { int reg; u64 val; } in[MAX_SET];
	struct { u32 la; u8 size; u64 val; } mem_in[2];
	int result;
	struct { int reg; u64 val; } out[MAX_SET];
	u64 rflags_out;		/* arithmetic flags and DF, when OK */
	struct { u32 la; u8 size; u64 val; } mem_out[2];
	u8 vector;		/* when FAULT */
	/*
	 * A REP instruction that stops part way: out[] holds the registers
	 * even after a fault, and RIP stays when it returns OK.
	 */
	bool partial;
};

/* the entries leave trailing fields out: they are 0 */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const struct tblcase tbl[] = {
	{ "16-bit add [bx+si+4],ax: DS base, carry and zero", 16, 3,
	  "\x01\x40\x04", { [VIREO_SEG_DS] = 0x10000 }, false, 0,
	  { { RAX, 0x8001 }, { RBX, 0x100 }, { RSI, 0x20 } },
	  { { 0x10124, 2, 0x7fff } }, VIREO_EMU_OK,
	  { { RAX, 0x8001 }, { RBX, 0x100 }, { RSI, 0x20 } },
	  VIREO_FL_CF | VIREO_FL_ZF | VIREO_FL_PF | VIREO_FL_AF,
	  { { 0x10124, 2, 0x0000 } } },
	{ "16-bit [bx+si] wraps at 64 KiB", 16, 2, "\x8b\x00",
	  { [VIREO_SEG_DS] = 0x1000 }, false, 0,
	  { { RBX, 0xffff }, { RSI, 0x3 } },
	  { { 0x1002, 2, 0xbeef } }, VIREO_EMU_OK,
	  { { RAX, 0xbeef }, { RBX, 0xffff }, { RSI, 0x3 } }, 0 },
	{ "16-bit [bp+2] defaults to SS", 16, 3, "\x8b\x46\x02",
	  { [VIREO_SEG_SS] = 0x2000, [VIREO_SEG_DS] = 0x5000 }, false, 0,
	  { { RBP, 0x10 } }, { { 0x2012, 2, 0x1234 } }, VIREO_EMU_OK,
	  { { RAX, 0x1234 }, { RBP, 0x10 } }, 0 },
	{ "16-bit 66 add eax,imm32: overflow", 16, 6,
	  "\x66\x05\x01\x00\x00\x00", { 0 }, false, 0,
	  { { RAX, 0x7fffffff } }, { { 0 } }, VIREO_EMU_OK,
	  { { RAX, 0x80000000 } },
	  VIREO_FL_OF | VIREO_FL_SF | VIREO_FL_AF | VIREO_FL_PF },
	{ "16-bit push word [bx]: SP wraps below 0", 16, 2, "\xff\x37",
	  { [VIREO_SEG_SS] = 0x3000, [VIREO_SEG_DS] = 0x100 }, false, 0,
	  { { RBX, 0x40 }, { RSP, 0x10000 } }, { { 0x140, 2, 0xcafe } },
	  VIREO_EMU_OK, { { RBX, 0x40 }, { RSP, 0x1fffe } }, 0,
	  { { 0x12ffe, 2, 0xcafe } } },
	{ "16-bit rep movsb: DS:SI to ES:DI, CX counts", 16, 2, "\xf3\xa4",
	  { [VIREO_SEG_ES] = 0x8000, [VIREO_SEG_DS] = 0x4000 }, false, 0,
	  { { RCX, 3 }, { RSI, 0x10 }, { RDI, 0x20 } },
	  { { 0x4010, 4, 0x44332211 } }, VIREO_EMU_OK,
	  { { RCX, 0 }, { RSI, 0x13 }, { RDI, 0x23 } }, 0,
	  { { 0x8020, 4, 0x00332211 } } },
	{ "16-bit std; lodsw goes down, SI wraps", 16, 1, "\xad",
	  { [VIREO_SEG_DS] = 0x4000 }, false, VIREO_FL_DF,
	  { { RSI, 0x1 }, { RAX, 0x12345678 } }, { { 0x4001, 2, 0xabcd } },
	  VIREO_EMU_OK, { { RSI, 0xffff }, { RAX, 0x1234abcd } },
	  VIREO_FL_DF },
	{ "16-bit 66 67 mov eax,[ecx*4+0x10]", 16, 9,
	  "\x66\x67\x8b\x04\x8d\x10\x00\x00\x00",
	  { [VIREO_SEG_DS] = 0x100 }, false, 0,
	  { { RCX, 0x8 }, { RAX, 0xffff0000ffff0000ULL } },
	  { { 0x130, 4, 0x89abcdef } }, VIREO_EMU_OK,
	  { { RAX, 0x89abcdef }, { RCX, 0x8 } }, 0 },
	{ "32-bit mov eax,[ebx*4+0x10]: no base", 32, 7,
	  "\x8b\x04\x9d\x10\x00\x00\x00", { [VIREO_SEG_DS] = 0x100 },
	  false, 0, { { RBX, 0x8 } }, { { 0x130, 4, 0xdeadbeef } },
	  VIREO_EMU_OK, { { RAX, 0xdeadbeef }, { RBX, 0x8 } }, 0 },
	{ "32-bit 67 mov ax,[bx+di] in a 32-bit segment", 32, 4,
	  "\x66\x67\x8b\x01", { [VIREO_SEG_DS] = 0x100 }, false, 0,
	  { { RBX, 0x10 }, { RDI, 0x10001 }, { RAX, 0x11112222 } },
	  { { 0x111, 2, 0x5566 } }, VIREO_EMU_OK,
	  { { RAX, 0x11115566 }, { RBX, 0x10 }, { RDI, 0x10001 } }, 0 },
	{ "32-bit sub byte [ecx],1: borrow, sign", 32, 3, "\x80\x29\x01",
	  { 0 }, false, 0, { { RCX, 0x200 } }, { { 0x200, 1, 0 } },
	  VIREO_EMU_OK, { { RCX, 0x200 } },
	  VIREO_FL_CF | VIREO_FL_SF | VIREO_FL_AF | VIREO_FL_PF,
	  { { 0x200, 1, 0xff } } },
	{ "32-bit bts [eax],edx: offset -1 is bit 31 of the dword below",
	  32, 3, "\x0f\xab\x10", { 0 }, false, 0,
	  { { RAX, 0x304 }, { RDX, 0xffffffff } }, { { 0x300, 4, 0x1 } },
	  VIREO_EMU_OK, { { RAX, 0x304 }, { RDX, 0xffffffff } }, 0,
	  { { 0x300, 4, 0x80000001 } } },
	{ "32-bit movsx ecx,byte [esi]", 32, 3, "\x0f\xbe\x0e", { 0 },
	  false, 0, { { RSI, 0x400 } }, { { 0x400, 1, 0x80 } },
	  VIREO_EMU_OK, { { RCX, 0xffffff80 }, { RSI, 0x400 } }, 0 },
	{ "32-bit push dword [eax] on a 16-bit stack", 32, 2, "\xff\x30",
	  { [VIREO_SEG_SS] = 0x10000 }, false, 0,
	  { { RAX, 0x500 }, { RSP, 0x12340002 } },
	  { { 0x500, 4, 0x01020304 } }, VIREO_EMU_OK,
	  { { RAX, 0x500 }, { RSP, 0x1234fffe } }, 0,
	  { { 0x1fffe, 4, 0x01020304 } } },
	{ "32-bit pop dword [esp+4]: address after the pop", 32, 4,
	  "\x8f\x44\x24\x04", { 0 }, true, 0, { { RSP, 0x600 } },
	  { { 0x600, 4, 0xa5a5a5a5 } }, VIREO_EMU_OK, { { RSP, 0x604 } },
	  0, { { 0x608, 4, 0xa5a5a5a5 } } },
	{ "32-bit repe cmpsb stops at the difference", 32, 2, "\xf3\xa6",
	  { 0 }, false, 0, { { RCX, 8 }, { RSI, 0x700 }, { RDI, 0x800 } },
	  { { 0x700, 4, 0x44332211 }, { 0x800, 4, 0x45332211 } },
	  VIREO_EMU_OK, { { RCX, 4 }, { RSI, 0x704 }, { RDI, 0x804 } },
	  VIREO_FL_CF | VIREO_FL_SF | VIREO_FL_AF | VIREO_FL_PF },
	{ "32-bit 66 xchg [ebx],ax", 32, 3, "\x66\x87\x03", { 0 }, false,
	  0, { { RAX, 0xaaaa1111 }, { RBX, 0x900 } },
	  { { 0x900, 4, 0x33332222 } }, VIREO_EMU_OK,
	  { { RAX, 0xaaaa2222 }, { RBX, 0x900 } }, 0,
	  { { 0x900, 4, 0x33331111 } } },
	{ "32-bit ds base wraps at 4 GiB", 32, 2, "\x8b\x03",
	  { [VIREO_SEG_DS] = 0xfffff000 }, false, 0, { { RBX, 0x1100 } },
	  { { 0x100, 4, 0x77 } }, VIREO_EMU_OK,
	  { { RAX, 0x77 }, { RBX, 0x1100 } }, 0 },
	{ "64-bit non-canonical address: #GP", 64, 3, "\x48\x8b\x03",
	  { 0 }, false, 0, { { RBX, 0x800000000000ULL } }, { { 0 } },
	  VIREO_EMU_FAULT, { { 0 } }, 0, { { 0 } }, VIREO_EMU_GP },
	{ "64-bit non-canonical [rbp]: #SS", 64, 4, "\x48\x8b\x45\x00",
	  { 0 }, false, 0, { { RBP, 0xffff7fffffffffffULL } }, { { 0 } },
	  VIREO_EMU_FAULT, { { 0 } }, 0, { { 0 } }, VIREO_EMU_SS },
	{ "64-bit lock cmp: #UD", 64, 3, "\xf0\x39\x03", { 0 }, false, 0,
	  { { 0 } }, { { 0 } }, VIREO_EMU_FAULT, { { 0 } }, 0, { { 0 } },
	  VIREO_EMU_UD },
	{ "64-bit movnti to a register: #UD", 64, 3, "\x0f\xc3\xc0",
	  { 0 }, false, 0, { { 0 } }, { { 0 } }, VIREO_EMU_FAULT,
	  { { 0 } }, 0, { { 0 } }, VIREO_EMU_UD },
	{ "64-bit bt with 0F BA /0: #UD", 64, 4, "\x0f\xba\x00\x01",
	  { 0 }, false, 0, { { 0 } }, { { 0 } },
	  VIREO_EMU_FAULT, { { 0 } }, 0, { { 0 } }, VIREO_EMU_UD },
	{ "64-bit mul is not emulated, nothing changes", 64, 2, "\xf7\xe3",
	  { 0 }, false, 0, { { RAX, 5 }, { RBX, 7 } }, { { 0 } },
	  VIREO_EMU_UNHANDLED, { { RAX, 5 }, { RBX, 7 } }, 0 },
	{ "64-bit add to unbacked memory: #PF, registers kept", 64, 3,
	  "\x48\x01\x03", { 0 }, false, VIREO_FL_CF,
	  { { RBX, 0x100000 }, { RAX, 1 } }, { { 0 } }, VIREO_EMU_FAULT,
	  { { RBX, 0x100000 }, { RAX, 1 } }, VIREO_FL_CF, { { 0 } },
	  VIREO_EMU_PF },
	{ "64-bit rep stosb stops after a batch, RIP stays", 64, 2,
	  "\xf3\xaa", { 0 }, false, 0,
	  { { RCX, 100 }, { RDI, 0x1000 }, { RAX, 0x5a } }, { { 0 } },
	  VIREO_EMU_OK,
	  { { RCX, 100 - VIREO_EMU_REP_BATCH },
	    { RDI, 0x1000 + VIREO_EMU_REP_BATCH }, { RAX, 0x5a } }, 0,
	  { { 0x1000 + VIREO_EMU_REP_BATCH - 8, 8, 0x5a5a5a5a5a5a5a5aULL },
	    { 0x1000 + VIREO_EMU_REP_BATCH, 1, 0 } }, 0, true },
	{ "64-bit rep movsq faulting on its third element keeps two", 64,
	  3, "\xf3\x48\xa5", { 0 }, false, 0,
	  { { RCX, 5 }, { RSI, 0x100 }, { RDI, FLAT_SIZE - 16 } },
	  { { 0x100, 8, 0x1111 }, { 0x108, 8, 0x2222 } }, VIREO_EMU_FAULT,
	  { { RCX, 3 }, { RSI, 0x110 }, { RDI, FLAT_SIZE } }, 0,
	  { { FLAT_SIZE - 16, 8, 0x1111 }, { FLAT_SIZE - 8, 8, 0x2222 } },
	  VIREO_EMU_PF, true },
};

#pragma GCC diagnostic pop

static bool run_tbl(const struct tblcase *tc)
{
	struct vireo_emu_ctxt c = {
		.mode = tc->mode == 16 ? VIREO_MODE_16 :
			tc->mode == 32 ? VIREO_MODE_32 : VIREO_MODE_64,
		.stack32 = tc->stack32,
		.rflags = FL_FIXED | tc->rflags,
		.rip = 0x1000,
		.ops = &flat_ops,
	};
	u64 want[NREGS] = { 0 }, v;
	enum vireo_emu_result r;
	unsigned int i;
	bool ok = true;

	memset(flat, 0, sizeof(flat));
	memcpy(c.seg_base, tc->seg_base, sizeof(c.seg_base));
	for (i = 0; i < MAX_SET; i++) {
		c.regs[tc->in[i].reg] |= tc->in[i].val;
		want[tc->out[i].reg] |= tc->out[i].val;
	}
	for (i = 0; i < 2; i++)
		memcpy(flat + tc->mem_in[i].la, &tc->mem_in[i].val,
		       tc->mem_in[i].size);
	r = vireo_emulate(&c, (const u8 *)tc->bytes, tc->n);
	if ((int)r != tc->result) {
		tap_diag("%s: result %d, want %d", tc->name, r, tc->result);
		return false;
	}
	if (r == VIREO_EMU_FAULT && c.fault.vector != tc->vector) {
		tap_diag("%s: vector %u, want %u", tc->name, c.fault.vector,
			 tc->vector);
		ok = false;
	}
	if (tc->partial) {
		if (c.rip != 0x1000) {
			tap_diag("%s: rip moved", tc->name);
			ok = false;
		}
	} else if (r != VIREO_EMU_OK) {
		/* nothing may have changed */
		memset(want, 0, sizeof(want));
		for (i = 0; i < MAX_SET; i++)
			want[tc->in[i].reg] |= tc->in[i].val;
	} else if (c.rip != 0x1000 + tc->n) {
		tap_diag("%s: rip %#llx", tc->name, (unsigned long long)c.rip);
		ok = false;
	}
	for (i = 0; i < NREGS; i++) {
		if (c.regs[i] == want[i])
			continue;
		tap_diag("%s: %s %#llx, want %#llx", tc->name, reg_names[i],
			 (unsigned long long)c.regs[i],
			 (unsigned long long)want[i]);
		ok = false;
	}
	v = r == VIREO_EMU_OK || tc->partial ? tc->rflags_out : tc->rflags;
	if ((c.rflags & FL_COMPARED) != v) {
		tap_diag("%s: rflags %#llx, want %#llx", tc->name,
			 (unsigned long long)(c.rflags & FL_COMPARED),
			 (unsigned long long)v);
		ok = false;
	}
	for (i = 0; i < 2 && (r == VIREO_EMU_OK || tc->partial); i++) {
		v = 0;
		memcpy(&v, flat + tc->mem_out[i].la, tc->mem_out[i].size);
		if (v != tc->mem_out[i].val) {
			tap_diag("%s: memory %#x is %#llx, want %#llx",
				 tc->name, tc->mem_out[i].la,
				 (unsigned long long)v,
				 (unsigned long long)tc->mem_out[i].val);
			ok = false;
		}
	}
	return ok;
}

static void setup(void)
{
	static u8 altstack[65536];
	stack_t ss = { .ss_sp = altstack, .ss_size = sizeof(altstack) };
	struct sigaction sa = { .sa_handler = on_signal,
				.sa_flags = SA_ONSTACK | SA_NODEFER };

	region = mmap(NULL, CODE_SIZE + STATE_SIZE + BUF_SIZE,
		      PROT_READ | PROT_WRITE | PROT_EXEC,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
	if (region == MAP_FAILED)
		tap_bail("mmap of an executable page below 2 GiB failed");
	code = region;
	ns = (struct native_state *)(region + CODE_SIZE);
	buf = region + CODE_SIZE + STATE_SIZE;

	/* GS is free in a 64-bit process: give it a base near the buffer */
	gs_base = (u64)(uintptr_t)buf - 0x12340;
	if (syscall(SYS_arch_prctl, ARCH_SET_GS, gs_base) ||
	    syscall(SYS_arch_prctl, ARCH_GET_FS, &fs_base))
		tap_bail("arch_prctl: %s", strerror(errno));

	if (sigaltstack(&ss, NULL))
		tap_bail("sigaltstack: %s", strerror(errno));
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGILL, &sa, NULL);
}

#define SSE_CHECKS	4	/* run_sse()'s TAP lines after the forms' */
#define SSE_REFUSALS	30	/* per form, for each of those */

/* The SSE moves: one TAP line per form, then SSE_CHECKS more. */
static void run_sse(void)
{
	unsigned int i, n, faults = 0, slots = 0;
	struct sse_stats st, all = { 0 };
	char mis[48];
	bool ok;

	for (i = 0; i < ARRAY_SIZE(sse_forms); i++) {
		st = (struct sse_stats){ 0 };
		ok = run_sse_form(&sse_forms[i], PER_SSE_FORM, &st);
		mis[0] = 0;
		if (st.misaligned)
			sprintf(mis, ", %u of them misaligned: #GP(0)",
				st.misaligned);
		tap_ok(ok, "64-bit SSE %s: %d random instructions, %s (%u reg, %u mem%s)",
		       sse_forms[i].name, PER_SSE_FORM,
		       emulator_only ? "emulator only" : "CPU = emulator",
		       st.reg, st.mem, mis);
		all.riprel += st.riprel;
		all.mem += st.mem;
	}
	tap_diag("SSE: %u memory operands, %u RIP-relative; %u runs again after a SIGILL",
		 all.mem, all.riprel, sse_sigill_retries);
	n = ARRAY_SIZE(sse_forms) * SSE_REFUSALS;
	tap_ok(sse_without_xmm_ops(SSE_REFUSALS),
	       "64-bit SSE moves without read_xmm/write_xmm (or with one): UNHANDLED, nothing changed (%u random)",
	       n);
	tap_ok(sse_lock(SSE_REFUSALS),
	       "64-bit SSE moves with LOCK: #UD, nothing changed (%u random)",
	       n);
	ok = sse_failing_callbacks(4 * SSE_REFUSALS, &faults);
	tap_ok(ok, "64-bit SSE moves: a callback's #NM/#PF returned, no change (%u, %u faults)",
	       4 * n, faults);
	ok = sse_other_encodings(SSE_REFUSALS, &slots);
	tap_ok(ok, "64-bit F2/MOVSS/MMX/... in SSE move slots: UNHANDLED (%u encodings, %u random)",
	       slots, slots * SSE_REFUSALS);
}

int main(int argc, char **argv)
{
	unsigned int i;

	seed = argc > 1 ? strtoull(argv[1], NULL, 0) : 0xe3c0ffeeULL;
	rng_state = seed ? seed : 1;

	tap_plan(ARRAY_SIZE(families) + ARRAY_SIZE(tbl) +
		 ARRAY_SIZE(sse_forms) + SSE_CHECKS);
	setup();
	tap_diag("random seed 0x%llx (emu_test SEED repeats a run)", seed);
	emulator_only = under_valgrind();
	if (emulator_only)
		tap_diag("under valgrind: random instructions not run natively");
	for (i = 0; i < ARRAY_SIZE(families); i++)
		tap_ok(run_family(&families[i], PER_FAMILY),
		       "64-bit %s: %d random instructions, %s",
		       families[i].name, PER_FAMILY,
		       emulator_only ? "emulator only" : "CPU = emulator");
	tap_diag("%u REP instructions resumed after a batch, %u cmpxchg",
		 rep_resumed, cmpxchg_calls);
	for (i = 0; i < ARRAY_SIZE(tbl); i++)
		tap_ok(run_tbl(&tbl[i]), "%d-bit %s", tbl[i].mode,
		       tbl[i].name);
	run_sse();
	tap_done();
}
