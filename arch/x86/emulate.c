// SPDX-License-Identifier: GPL-2.0-only
/*
 * The x86 instruction emulator: executes one instruction that
 * vireo_decode() decoded against a struct vireo_emu_ctxt.  It covers the
 * instructions a guest may point at MMIO or at memory the host must see
 * being written: MOV in all its forms (and MOVZX, MOVSX, MOVSXD, MOVNTI),
 * the two-operand arithmetic and logic group, TEST, INC, DEC, NEG, NOT,
 * XCHG, the bit tests, the string instructions with their REP prefixes,
 * PUSH/POP of a ModRM operand, and the SSE moves (MOVUPS, MOVAPS,
 * MOVDQU, MOVDQA, MOVNTDQ, MOVD, MOVQ and kin) when the caller gives
 * access to the XMM registers.  Anything else is VIREO_EMU_UNHANDLED.
 *
 * The instruction works on a copy of the registers and flags, which is
 * written back to the context only when it completes, and every
 * instruction writes memory at most once, after its reads: a fault
 * anywhere leaves the guest as if the instruction had not started, the
 * way the CPU reports a fault.  The only exception is the CPU's own: a
 * REP string instruction keeps the iterations done before the fault.
 *
 * Like decode.c this file is built into vireo.ko and, unchanged, into
 * the userspace unit test in selftests/unit/: it may use nothing but
 * <vireo/emulate.h>.  Values cross the ops table as little-endian bytes,
 * which a u64 on x86 already is.
 */
#include <vireo/emulate.h>

#define REX_B		0x01
#define REX_R		0x04
#define REX_W		0x08

#define R_AX		0
#define R_CX		1
#define R_SP		4
#define R_SI		6
#define R_DI		7

/* the ALU operation in bits 5:3 of opcodes 00-3F and in ModRM.reg of 80-83 */
enum { ALU_ADD, ALU_OR, ALU_ADC, ALU_SBB, ALU_AND, ALU_SUB, ALU_XOR, ALU_CMP };

/* One instruction being executed. */
struct emu {
	struct vireo_emu_ctxt *c;
	const struct vireo_insn *in;
	u64 regs[16];		/* the working copy, see commit() */
	u64 rflags;
	u64 next_rip;
	bool keep_rip;		/* a REP instruction stopped part way */
};

/* An operand: a register, or a byte of one, or memory. */
struct opnd {
	bool mem;
	bool high;		/* AH, CH, DH or BH: bits 15:8 of reg - 4 */
	u8 reg;
	u8 size;		/* 1, 2, 4 or 8 */
	u64 la;			/* linear address of a memory operand */
};

static u64 size_mask(unsigned int bytes)
{
	return bytes >= 8 ? ~0ULL : (1ULL << (8 * bytes)) - 1;
}

static u64 sign_extend(u64 v, unsigned int bytes)
{
	unsigned int shift;

	if (!bytes || bytes >= 8)
		return v;
	shift = 64 - 8 * bytes;
	return (u64)((s64)(v << shift) >> shift);
}

/* the sign bit of a @bytes-wide value */
static bool msb(u64 v, unsigned int bytes)
{
	return (v >> (8 * bytes - 1)) & 1;
}

static void commit(const struct emu *e)
{
	unsigned int i;

	for (i = 0; i < 16; i++)
		e->c->regs[i] = e->regs[i];
	e->c->rflags = e->rflags;
}

static u64 reg_get(const struct emu *e, u8 reg, bool high, unsigned int size)
{
	if (high)
		return (e->regs[reg - 4] >> 8) & 0xff;
	return e->regs[reg] & size_mask(size);
}

/*
 * Write a register the way the CPU does: 8- and 16-bit writes leave the
 * rest of the register alone, a 32-bit write zero-extends into 63:32.
 */
static void reg_set(struct emu *e, u8 reg, bool high, unsigned int size,
		    u64 val)
{
	u64 *r = high ? &e->regs[reg - 4] : &e->regs[reg];

	switch (size) {
	case 1:
		if (high)
			*r = (*r & ~0xff00ULL) | ((val & 0xff) << 8);
		else
			*r = (*r & ~0xffULL) | (val & 0xff);
		break;
	case 2:
		*r = (*r & ~0xffffULL) | (val & 0xffff);
		break;
	case 4:
		*r = val & 0xffffffffULL;
		break;
	default:
		*r = val;
		break;
	}
}

/* 48-bit linear addresses: Vireo never gives a guest CR4.LA57 */
static bool canonical(u64 la)
{
	return (u64)((s64)(la << 16) >> 16) == la;
}

/*
 * Linear address of @bytes at offset @ea of segment @seg.  In 64-bit mode
 * only FS and GS have a base, and an address that is not canonical is a
 * #GP(0), or #SS(0) for a stack reference.  Outside it, addresses wrap at
 * 4 GiB.
 */
static enum vireo_emu_result linear(struct emu *e, enum vireo_seg seg,
				    u64 ea, unsigned int bytes, u64 *la)
{
	struct vireo_emu_ctxt *c = e->c;
	u64 a;

	if (c->mode != VIREO_MODE_64) {
		*la = (c->seg_base[seg] + ea) & 0xffffffffULL;
		return VIREO_EMU_OK;
	}
	a = ea;
	if (seg == VIREO_SEG_FS || seg == VIREO_SEG_GS)
		a += c->seg_base[seg];
	if (!canonical(a) || !canonical(a + bytes - 1))
		return vireo_emu_set_fault(c, seg == VIREO_SEG_SS ?
					   VIREO_EMU_SS : VIREO_EMU_GP,
					   true, 0, 0);
	*la = a;
	return VIREO_EMU_OK;
}

/* base + index * scale + disp (+ next RIP), in the address size */
static u64 eff_addr(const struct emu *e)
{
	const struct vireo_insn *in = e->in;
	u64 ea = (u64)in->disp;

	if (in->base_reg >= 0)
		ea += e->regs[in->base_reg];
	if (in->index_reg >= 0)
		ea += e->regs[in->index_reg] * in->scale;
	if (in->rip_relative)
		ea += e->next_rip;
	return ea & size_mask(in->addr_size);
}

static enum vireo_emu_result mem_read(struct emu *e, u64 la,
				      unsigned int bytes, u64 *val)
{
	u64 v = 0;
	enum vireo_emu_result r;

	r = e->c->ops->read(e->c, la, &v, bytes);
	*val = v & size_mask(bytes);
	return r;
}

static enum vireo_emu_result mem_write(struct emu *e, u64 la,
				       unsigned int bytes, u64 val)
{
	return e->c->ops->write(e->c, la, &val, bytes);
}

/* The ModRM.rm operand, or the moffs of A0-A3. */
static enum vireo_emu_result rm_opnd(struct emu *e, unsigned int size,
				     struct opnd *op)
{
	const struct vireo_insn *in = e->in;

	op->size = size;
	op->mem = in->mem_operand;
	op->high = false;
	if (!op->mem) {
		op->reg = (in->modrm & 7) | (in->rex & REX_B ? 8 : 0);
		op->high = size == 1 && !in->rex && op->reg >= 4;
		return VIREO_EMU_OK;
	}
	return linear(e, in->seg, eff_addr(e), size, &op->la);
}

/* A register operand; @reg is 0-15, 4-7 being AH-BH for bytes without REX */
static void reg_opnd(const struct emu *e, u8 reg, unsigned int size,
		     struct opnd *op)
{
	op->mem = false;
	op->size = size;
	op->reg = reg;
	op->high = size == 1 && !e->in->rex && reg >= 4 && reg <= 7;
}

/* ModRM.reg */
static void modrm_reg_opnd(const struct emu *e, unsigned int size,
			   struct opnd *op)
{
	const struct vireo_insn *in = e->in;

	reg_opnd(e, ((in->modrm >> 3) & 7) | (in->rex & REX_R ? 8 : 0), size,
		 op);
}

static enum vireo_emu_result opnd_read(struct emu *e, const struct opnd *op,
				       u64 *val)
{
	if (op->mem)
		return mem_read(e, op->la, op->size, val);
	*val = reg_get(e, op->reg, op->high, op->size);
	return VIREO_EMU_OK;
}

/*
 * Store @val to @op, which held @old.  A locked store to memory goes
 * through cmpxchg when the caller has one, so that another vCPU's write
 * in between is not lost: the instruction is then retried.
 */
static enum vireo_emu_result opnd_store(struct emu *e, const struct opnd *op,
					u64 old, u64 val, bool locked)
{
	struct vireo_emu_ctxt *c = e->c;

	if (!op->mem) {
		reg_set(e, op->reg, op->high, op->size, val);
		return VIREO_EMU_OK;
	}
	if (locked && c->ops->cmpxchg)
		return c->ops->cmpxchg(c, op->la, &old, &val, op->size);
	return mem_write(e, op->la, op->size, val);
}

static enum vireo_emu_result opnd_write(struct emu *e, const struct opnd *op,
					u64 val)
{
	return opnd_store(e, op, 0, val, false);
}

/* The immediate, sign-extended from its encoded length to @size. */
static u64 imm_val(const struct emu *e, unsigned int size)
{
	return sign_extend(e->in->raw_imm, e->in->imm_len) & size_mask(size);
}

static bool parity_even(u64 v)
{
	v &= 0xff;
	v ^= v >> 4;
	v ^= v >> 2;
	v ^= v >> 1;
	return !(v & 1);
}

/* ZF, SF and PF of a result */
static u64 flags_szp(u64 res, unsigned int size)
{
	u64 f = 0;

	res &= size_mask(size);
	if (!res)
		f |= VIREO_FL_ZF;
	if (msb(res, size))
		f |= VIREO_FL_SF;
	if (parity_even(res))
		f |= VIREO_FL_PF;
	return f;
}

static void set_flags(struct emu *e, u64 which, u64 f)
{
	e->rflags = (e->rflags & ~which) | (f & which);
}

/*
 * a + b + carry.  Bit i of cv is the carry out of bit i: both addends
 * set, or one set and no sum bit (so a carry came in).  AF is the carry
 * out of bit 3, which is what flipped bit 4.
 */
static u64 do_add(struct emu *e, u64 a, u64 b, u64 carry, unsigned int size,
		  u64 which)
{
	u64 res = (a + b + carry) & size_mask(size);
	u64 cv = (a & b) | ((a | b) & ~res);
	u64 f = flags_szp(res, size) | ((a ^ b ^ res) & VIREO_FL_AF);

	if (msb(cv, size))
		f |= VIREO_FL_CF;
	if (msb((a ^ res) & (b ^ res), size))
		f |= VIREO_FL_OF;
	set_flags(e, which, f);
	return res;
}

/* a - b - borrow, bv holding the borrow out of each bit */
static u64 do_sub(struct emu *e, u64 a, u64 b, u64 borrow, unsigned int size,
		  u64 which)
{
	u64 res = (a - b - borrow) & size_mask(size);
	u64 bv = (~a & b) | (~(a ^ b) & res);
	u64 f = flags_szp(res, size) | ((a ^ b ^ res) & VIREO_FL_AF);

	if (msb(bv, size))
		f |= VIREO_FL_CF;
	if (msb((a ^ b) & (a ^ res), size))
		f |= VIREO_FL_OF;
	set_flags(e, which, f);
	return res;
}

/*
 * AND, OR, XOR, TEST: CF and OF clear.  AF is undefined; the CPUs we know
 * clear it, and so do we.
 */
static u64 do_logic(struct emu *e, u64 res, unsigned int size)
{
	set_flags(e, VIREO_FL_ARITH, flags_szp(res, size));
	return res & size_mask(size);
}

static u64 alu(struct emu *e, unsigned int op, u64 a, u64 b,
	       unsigned int size)
{
	u64 cf = e->rflags & VIREO_FL_CF ? 1 : 0;

	switch (op) {
	case ALU_ADD:
		return do_add(e, a, b, 0, size, VIREO_FL_ARITH);
	case ALU_OR:
		return do_logic(e, a | b, size);
	case ALU_ADC:
		return do_add(e, a, b, cf, size, VIREO_FL_ARITH);
	case ALU_SBB:
		return do_sub(e, a, b, cf, size, VIREO_FL_ARITH);
	case ALU_AND:
		return do_logic(e, a & b, size);
	case ALU_XOR:
		return do_logic(e, a ^ b, size);
	default:	/* SUB, CMP */
		return do_sub(e, a, b, 0, size, VIREO_FL_ARITH);
	}
}

/* dst = dst op b, except that CMP only sets the flags */
static enum vireo_emu_result alu_apply(struct emu *e, unsigned int op,
				       const struct opnd *dst, u64 b)
{
	enum vireo_emu_result r;
	u64 a, res;

	r = opnd_read(e, dst, &a);
	if (r)
		return r;
	res = alu(e, op, a, b, dst->size);
	if (op == ALU_CMP)
		return VIREO_EMU_OK;
	return opnd_store(e, dst, a, res, e->in->lock);
}

/* 00-3D: the six forms of each operation, in bits 2:0 */
static enum vireo_emu_result op_alu(struct emu *e)
{
	u8 opc = e->in->opcode, form = opc & 7;
	unsigned int size = form & 1 ? e->in->op_size : 1;
	struct opnd dst, src;
	enum vireo_emu_result r;
	u64 b;

	switch (form) {
	case 0:		/* r/m, reg */
	case 1:
		r = rm_opnd(e, size, &dst);
		modrm_reg_opnd(e, size, &src);
		break;
	case 2:		/* reg, r/m */
	case 3:
		modrm_reg_opnd(e, size, &dst);
		r = rm_opnd(e, size, &src);
		break;
	default:	/* AL/eAX, imm */
		reg_opnd(e, R_AX, size, &dst);
		return alu_apply(e, opc >> 3, &dst, imm_val(e, size));
	}
	if (r)
		return r;
	r = opnd_read(e, &src, &b);
	if (r)
		return r;
	return alu_apply(e, opc >> 3, &dst, b);
}

/* 80, 81, 83: r/m, imm with the operation in ModRM.reg */
static enum vireo_emu_result op_alu_imm(struct emu *e)
{
	unsigned int size = e->in->opcode == 0x80 ? 1 : e->in->op_size;
	struct opnd dst;
	enum vireo_emu_result r;

	r = rm_opnd(e, size, &dst);
	if (r)
		return r;
	return alu_apply(e, (e->in->modrm >> 3) & 7, &dst, imm_val(e, size));
}

/* TEST r/m, reg (84, 85) */
static enum vireo_emu_result op_test(struct emu *e)
{
	unsigned int size = e->in->opcode & 1 ? e->in->op_size : 1;
	struct opnd dst, src;
	enum vireo_emu_result r;
	u64 a, b;

	r = rm_opnd(e, size, &dst);
	if (r)
		return r;
	modrm_reg_opnd(e, size, &src);
	r = opnd_read(e, &dst, &a);
	if (r)
		return r;
	opnd_read(e, &src, &b);
	do_logic(e, a & b, size);
	return VIREO_EMU_OK;
}

/* TEST AL/eAX, imm (A8, A9) */
static enum vireo_emu_result op_test_acc(struct emu *e)
{
	unsigned int size = e->in->opcode & 1 ? e->in->op_size : 1;

	do_logic(e, reg_get(e, R_AX, false, size) & imm_val(e, size), size);
	return VIREO_EMU_OK;
}

/* F6, F7: TEST imm, NOT, NEG; MUL and DIV are not ours */
static enum vireo_emu_result op_grp3(struct emu *e)
{
	unsigned int size = e->in->opcode & 1 ? e->in->op_size : 1;
	unsigned int ext = (e->in->modrm >> 3) & 7;
	struct opnd dst;
	enum vireo_emu_result r;
	u64 a;

	if (ext > 3)
		return VIREO_EMU_UNHANDLED;
	r = rm_opnd(e, size, &dst);
	if (r)
		return r;
	r = opnd_read(e, &dst, &a);
	if (r)
		return r;
	switch (ext) {
	case 2:		/* NOT: no flags */
		return opnd_store(e, &dst, a, ~a & size_mask(size),
				  e->in->lock);
	case 3:		/* NEG: 0 - a, so CF is a != 0 */
		return opnd_store(e, &dst, a,
				  do_sub(e, 0, a, 0, size, VIREO_FL_ARITH),
				  e->in->lock);
	default:	/* /0 and its alias /1: TEST */
		do_logic(e, a & imm_val(e, size), size);
		return VIREO_EMU_OK;
	}
}

/* FE, FF /0 /1: INC and DEC leave CF alone */
static enum vireo_emu_result op_incdec(struct emu *e, bool dec)
{
	unsigned int size = e->in->opcode & 1 ? e->in->op_size : 1;
	u64 which = VIREO_FL_ARITH & ~VIREO_FL_CF;
	struct opnd dst;
	enum vireo_emu_result r;
	u64 a, res;

	r = rm_opnd(e, size, &dst);
	if (r)
		return r;
	r = opnd_read(e, &dst, &a);
	if (r)
		return r;
	if (dec)
		res = do_sub(e, a, 1, 0, size, which);
	else
		res = do_add(e, a, 1, 0, size, which);
	return opnd_store(e, &dst, a, res, e->in->lock);
}

/* Stack address size: RSP in 64-bit mode, else ESP or SP by SS.B. */
static unsigned int stack_size(const struct emu *e)
{
	if (e->c->mode == VIREO_MODE_64)
		return 8;
	return e->c->stack32 ? 4 : 2;
}

/* PUSH and POP: 64 or 16 bits in 64-bit mode, never 32 */
static unsigned int push_size(const struct emu *e)
{
	if (e->c->mode == VIREO_MODE_64)
		return e->in->op_size == 2 ? 2 : 8;
	return e->in->op_size;
}

/*
 * PUSH r/m (FF /6).  The operand's address uses RSP as it was before the
 * push, and PUSH RSP pushes the old value.
 */
static enum vireo_emu_result op_push(struct emu *e)
{
	unsigned int size = push_size(e), ssize = stack_size(e);
	struct opnd src;
	enum vireo_emu_result r;
	u64 val, sp, la;

	r = rm_opnd(e, size, &src);
	if (r)
		return r;
	r = opnd_read(e, &src, &val);
	if (r)
		return r;
	sp = (e->regs[R_SP] - size) & size_mask(ssize);
	r = linear(e, VIREO_SEG_SS, sp, size, &la);
	if (r)
		return r;
	r = mem_write(e, la, size, val);
	if (r)
		return r;
	reg_set(e, R_SP, false, ssize, sp);
	return VIREO_EMU_OK;
}

/*
 * POP r/m (8F /0).  RSP moves on before the destination's address is
 * computed, and POP RSP leaves RSP holding the popped value.
 */
static enum vireo_emu_result op_pop(struct emu *e)
{
	unsigned int size = push_size(e), ssize = stack_size(e);
	struct opnd dst;
	enum vireo_emu_result r;
	u64 val, sp, la;

	sp = e->regs[R_SP] & size_mask(ssize);
	r = linear(e, VIREO_SEG_SS, sp, size, &la);
	if (r)
		return r;
	r = mem_read(e, la, size, &val);
	if (r)
		return r;
	reg_set(e, R_SP, false, ssize, sp + size);
	r = rm_opnd(e, size, &dst);
	if (r)
		return r;
	return opnd_write(e, &dst, val);
}

/* XCHG r/m, reg (86, 87): with memory, always locked */
static enum vireo_emu_result op_xchg(struct emu *e)
{
	unsigned int size = e->in->opcode & 1 ? e->in->op_size : 1;
	struct opnd dst, src;
	enum vireo_emu_result r;
	u64 a, b;

	r = rm_opnd(e, size, &dst);
	if (r)
		return r;
	modrm_reg_opnd(e, size, &src);
	r = opnd_read(e, &dst, &a);
	if (r)
		return r;
	opnd_read(e, &src, &b);
	r = opnd_store(e, &dst, a, b, true);
	if (r)
		return r;
	reg_set(e, src.reg, src.high, size, a);
	return VIREO_EMU_OK;
}

/* MOV r/m, reg; MOV reg, r/m; MOV r/m, imm; the moffs forms */
static enum vireo_emu_result op_mov(struct emu *e)
{
	const struct vireo_insn *in = e->in;
	unsigned int size = in->opcode & 1 ? in->op_size : 1;
	struct opnd dst, src;
	enum vireo_emu_result r;
	u64 val;

	switch (in->opcode) {
	case 0x88:	/* r/m, reg */
	case 0x89:
	case 0xa2:	/* moffs, AL/eAX */
	case 0xa3:
		r = rm_opnd(e, size, &dst);
		if (in->has_modrm)
			modrm_reg_opnd(e, size, &src);
		else
			reg_opnd(e, R_AX, size, &src);
		break;
	case 0xc6:	/* r/m, imm */
	case 0xc7:
		if ((in->modrm >> 3) & 7)
			return VIREO_EMU_UNHANDLED;	/* XABORT, XBEGIN */
		r = rm_opnd(e, size, &dst);
		if (r)
			return r;
		return opnd_write(e, &dst, imm_val(e, size));
	default:	/* 8A, 8B reg, r/m; A0, A1 AL/eAX, moffs */
		if (in->has_modrm)
			modrm_reg_opnd(e, size, &dst);
		else
			reg_opnd(e, R_AX, size, &dst);
		r = rm_opnd(e, size, &src);
		break;
	}
	if (r)
		return r;
	r = opnd_read(e, &src, &val);
	if (r)
		return r;
	return opnd_write(e, &dst, val);
}

/* MOV reg, imm (B0-BF): the register in the opcode, extended by REX.B */
static enum vireo_emu_result op_mov_imm_reg(struct emu *e)
{
	const struct vireo_insn *in = e->in;
	unsigned int size = in->opcode >= 0xb8 ? in->op_size : 1;
	struct opnd dst;

	reg_opnd(e, (in->opcode & 7) | (in->rex & REX_B ? 8 : 0), size, &dst);
	return opnd_write(e, &dst, imm_val(e, size));
}

/* MOVZX, MOVSX (0F B6/B7/BE/BF) and MOVSXD (63): @src_size to op_size */
static enum vireo_emu_result op_movx(struct emu *e, unsigned int src_size,
				     bool sx)
{
	unsigned int size = e->in->op_size;
	struct opnd dst, src;
	enum vireo_emu_result r;
	u64 val;

	r = rm_opnd(e, src_size, &src);
	if (r)
		return r;
	r = opnd_read(e, &src, &val);
	if (r)
		return r;
	if (sx)
		val = sign_extend(val, src_size);
	modrm_reg_opnd(e, size, &dst);
	return opnd_write(e, &dst, val & size_mask(size));
}

/* MOVNTI (0F C3): a 32- or 64-bit store to memory, no prefixes allowed */
static enum vireo_emu_result op_movnti(struct emu *e)
{
	const struct vireo_insn *in = e->in;
	unsigned int size = in->rex & REX_W ? 8 : 4;
	struct opnd dst, src;
	enum vireo_emu_result r;
	u64 val;

	if (!in->mem_operand || in->opsize_prefix || in->rep_prefix)
		return vireo_emu_set_fault(e->c, VIREO_EMU_UD, false, 0, 0);
	r = rm_opnd(e, size, &dst);
	if (r)
		return r;
	modrm_reg_opnd(e, size, &src);
	opnd_read(e, &src, &val);
	return opnd_write(e, &dst, val);
}

/*
 * The SSE moves Linux and Windows use on MMIO, with their mandatory
 * prefix (none, 66, F3):
 *   0F 10/11 MOVUPS, 66 0F 10/11 MOVUPD         load/store, unaligned
 *   0F 28/29 MOVAPS, 66 0F 28/29 MOVAPD         load/store, aligned
 *   0F 2B MOVNTPS, 66 0F 2B MOVNTPD, 66 0F E7 MOVNTDQ    store, aligned
 *   66 0F 6F/7F MOVDQA (aligned), F3 0F 6F/7F MOVDQU
 *   66 0F 6E MOVD/MOVQ xmm, r/m     66 0F 7E MOVD/MOVQ r/m, xmm
 *   F3 0F 7E MOVQ xmm, xmm/m64      66 0F D6 MOVQ xmm/m64, xmm
 * A load into an XMM register zeroes what the source does not fill
 * (except the full 16-byte moves, which fill it all).  An aligned form
 * with a misaligned memory operand is a #GP(0).
 */
enum sse_kind { SSE_NONE, SSE_LOAD, SSE_STORE };

static enum sse_kind sse_decode(const struct vireo_insn *in,
				unsigned int *size, bool *aligned, bool *gpr)
{
	u8 pfx = in->rep_prefix ? in->rep_prefix :
		 in->opsize_prefix ? 0x66 : 0;

	*size = 16;
	*aligned = false;
	*gpr = false;
	if (pfx == 0xf2)
		return SSE_NONE;
	switch (in->opcode) {
	case 0x10:
	case 0x11:
		if (pfx == 0xf3)
			return SSE_NONE;	/* MOVSS */
		return in->opcode == 0x10 ? SSE_LOAD : SSE_STORE;
	case 0x28:
	case 0x29:
		if (pfx == 0xf3)
			return SSE_NONE;
		*aligned = true;
		return in->opcode == 0x28 ? SSE_LOAD : SSE_STORE;
	case 0x2b:
		if (pfx == 0xf3 || !in->mem_operand)
			return SSE_NONE;
		*aligned = true;
		return SSE_STORE;
	case 0xe7:
		if (pfx != 0x66 || !in->mem_operand)
			return SSE_NONE;
		*aligned = true;
		return SSE_STORE;
	case 0x6f:
	case 0x7f:
		if (!pfx)
			return SSE_NONE;	/* MMX MOVQ */
		*aligned = pfx == 0x66;
		return in->opcode == 0x6f ? SSE_LOAD : SSE_STORE;
	case 0x6e:
	case 0x7e:
		if (pfx == 0xf3 && in->opcode == 0x7e) {
			*size = 8;
			return SSE_LOAD;
		}
		if (pfx != 0x66)
			return SSE_NONE;	/* MMX MOVD/MOVQ */
		*size = in->rex & REX_W ? 8 : 4;
		*gpr = true;
		return in->opcode == 0x6e ? SSE_LOAD : SSE_STORE;
	case 0xd6:
		if (pfx != 0x66)
			return SSE_NONE;
		*size = 8;
		return SSE_STORE;
	}
	return SSE_NONE;
}

static enum vireo_emu_result op_sse_mov(struct emu *e)
{
	const struct vireo_insn *in = e->in;
	const struct vireo_emu_ops *ops = e->c->ops;
	unsigned int xreg = ((in->modrm >> 3) & 7) | (in->rex & REX_R ? 8 : 0);
	unsigned int rm = (in->modrm & 7) | (in->rex & REX_B ? 8 : 0);
	enum vireo_emu_result r;
	u8 buf[16] = { 0 };
	struct opnd op;
	unsigned int size;
	bool aligned, gpr;
	enum sse_kind kind;
	u64 v;

	kind = sse_decode(in, &size, &aligned, &gpr);
	if (kind == SSE_NONE || !ops->read_xmm || !ops->write_xmm)
		return VIREO_EMU_UNHANDLED;
	if (in->lock)
		return vireo_emu_set_fault(e->c, VIREO_EMU_UD, false, 0, 0);
	/*
	 * #UD and #NM come before any fault of the memory operand, and
	 * before MMIO is touched: ask for the register first.
	 */
	r = ops->read_xmm(e->c, xreg, buf);
	if (r)
		return r;
	r = rm_opnd(e, size, &op);
	if (r)
		return r;
	if (op.mem && aligned && (op.la & 15))
		return vireo_emu_set_fault(e->c, VIREO_EMU_GP, true, 0, 0);

	if (kind == SSE_LOAD) {
		__builtin_memset(buf, 0, sizeof(buf));
		if (op.mem) {
			r = ops->read(e->c, op.la, buf, size);
		} else if (gpr) {
			v = reg_get(e, rm, false, size);
			__builtin_memcpy(buf, &v, size);
		} else {
			r = ops->read_xmm(e->c, rm, buf);
			if (!r && size < 16)
				__builtin_memset(buf + size, 0, 16 - size);
		}
		if (r)
			return r;
		return ops->write_xmm(e->c, xreg, buf);
	}

	/* stores: the source is always ModRM.reg, read above */
	if (op.mem)
		return ops->write(e->c, op.la, buf, size);
	if (gpr) {
		__builtin_memcpy(&v, buf, sizeof(v));
		reg_set(e, rm, false, size, v & size_mask(size));
		return VIREO_EMU_OK;
	}
	/* a register destination: MOVQ (D6) zeroes the upper half */
	if (size < 16)
		__builtin_memset(buf + size, 0, 16 - size);
	return ops->write_xmm(e->c, rm, buf);
}

/*
 * BT, BTS, BTR, BTC (@op 0-3).  A register bit offset into memory is
 * signed and may reach beyond the operand: it selects the operand-sized
 * unit at (offset >> log2(bits)) units from the address, and the bit
 * within it.  An immediate offset and a register destination use only
 * the offset modulo the operand width.  CF is the bit; ZF is left alone,
 * OF, SF, AF and PF are undefined and left alone too.
 */
static enum vireo_emu_result op_bt(struct emu *e, unsigned int op, bool imm)
{
	const struct vireo_insn *in = e->in;
	unsigned int size = in->op_size, bits = 8 * size;
	struct opnd dst, src;
	enum vireo_emu_result r;
	u64 off, a, res, bit;

	if (imm) {
		off = in->raw_imm;
	} else {
		modrm_reg_opnd(e, size, &src);
		opnd_read(e, &src, &off);
	}
	if (!imm && in->mem_operand) {
		s64 soff = (s64)sign_extend(off, size);
		unsigned int shift = size == 2 ? 4 : size == 4 ? 5 : 6;
		u64 ea = eff_addr(e) + (u64)(soff >> shift) * size;

		dst.mem = true;
		dst.size = size;
		r = linear(e, in->seg, ea & size_mask(in->addr_size), size,
			   &dst.la);
	} else {
		r = rm_opnd(e, size, &dst);
	}
	if (r)
		return r;
	bit = 1ULL << (off & (bits - 1));
	r = opnd_read(e, &dst, &a);
	if (r)
		return r;
	set_flags(e, VIREO_FL_CF, a & bit ? VIREO_FL_CF : 0);
	switch (op) {
	case 0:
		return VIREO_EMU_OK;
	case 1:
		res = a | bit;
		break;
	case 2:
		res = a & ~bit;
		break;
	default:
		res = a ^ bit;
		break;
	}
	return opnd_store(e, &dst, a, res, in->lock);
}

/* the next element of seg:rSI or ES:rDI, and the register moved past it */
static enum vireo_emu_result str_addr(struct emu *e, enum vireo_seg seg,
				      u8 reg, unsigned int size, u64 *la)
{
	u64 off = e->regs[reg] & size_mask(e->in->addr_size);

	return linear(e, seg, off, size, la);
}

static void str_advance(struct emu *e, u8 reg, unsigned int size)
{
	u64 delta = e->rflags & VIREO_FL_DF ? -(u64)size : size;

	reg_set(e, reg, false, e->in->addr_size, e->regs[reg] + delta);
}

/*
 * One iteration of MOVS (A4), CMPS (A6), STOS (AA), LODS (AC) or SCAS
 * (AE).  The source is seg:rSI, the segment overridable; the destination
 * is always ES:rDI.  CMPS subtracts the destination from the source, SCAS
 * memory from the accumulator.
 */
static enum vireo_emu_result str_step(struct emu *e, u8 kind,
				      unsigned int size)
{
	enum vireo_seg seg = e->in->seg;
	enum vireo_emu_result r = VIREO_EMU_OK;
	u64 sla = 0, dla = 0, a = 0, b = 0;
	bool src = kind == 0xa4 || kind == 0xa6 || kind == 0xac;
	bool dst = kind != 0xac;

	if (src) {
		r = str_addr(e, seg, R_SI, size, &sla);
		if (!r)
			r = mem_read(e, sla, size, &a);
	}
	if (!r && dst)
		r = str_addr(e, VIREO_SEG_ES, R_DI, size, &dla);
	if (r)
		return r;

	switch (kind) {
	case 0xa4:	/* MOVS */
		r = mem_write(e, dla, size, a);
		break;
	case 0xa6:	/* CMPS */
		r = mem_read(e, dla, size, &b);
		if (!r)
			do_sub(e, a, b, 0, size, VIREO_FL_ARITH);
		break;
	case 0xaa:	/* STOS */
		r = mem_write(e, dla, size, reg_get(e, R_AX, false, size));
		break;
	case 0xac:	/* LODS */
		reg_set(e, R_AX, false, size, a);
		break;
	default:	/* SCAS */
		r = mem_read(e, dla, size, &b);
		if (!r)
			do_sub(e, reg_get(e, R_AX, false, size), b, 0, size,
			       VIREO_FL_ARITH);
		break;
	}
	if (r)
		return r;
	if (src)
		str_advance(e, R_SI, size);
	if (dst)
		str_advance(e, R_DI, size);
	return VIREO_EMU_OK;
}

/* REPE (F3) goes on while the elements are equal, REPNE (F2) while not */
static bool rep_cond_ends(const struct emu *e)
{
	bool zf = e->rflags & VIREO_FL_ZF;

	return e->in->rep_prefix == 0xf3 ? !zf : zf;
}

/*
 * With a REP prefix the count is rCX in the address size.  Each iteration
 * is committed as it completes, as on the CPU, so that a fault or the end
 * of a batch leaves a state from which the instruction simply resumes.
 * CMPS and SCAS also stop when ZF says so: REPE (F3) while equal, REPNE
 * (F2) while not; for the others F2 acts as F3.
 */
static enum vireo_emu_result op_string(struct emu *e)
{
	const struct vireo_insn *in = e->in;
	unsigned int size = in->opcode & 1 ? in->op_size : 1;
	u64 cmask = size_mask(in->addr_size);
	u8 kind = in->opcode & ~1;
	bool cond = kind == 0xa6 || kind == 0xae;
	enum vireo_emu_result r;
	unsigned int n;

	if (!in->rep_prefix)
		return str_step(e, kind, size);
	for (n = 0; e->regs[R_CX] & cmask; n++) {
		if (n == VIREO_EMU_REP_BATCH) {
			e->keep_rip = true;
			return VIREO_EMU_OK;
		}
		r = str_step(e, kind, size);
		if (r)
			return r;
		reg_set(e, R_CX, false, in->addr_size, e->regs[R_CX] - 1);
		commit(e);
		e->c->iterations++;
		if (cond && rep_cond_ends(e))
			break;
	}
	return VIREO_EMU_OK;
}

/*
 * LOCK is allowed only on read-modify-write instructions with a memory
 * destination; anywhere else it is a #UD.  (The decoder already refused
 * it on MOV and on register destinations.)
 */
static bool lockable(const struct vireo_insn *in)
{
	u8 opc = in->opcode, ext = (in->modrm >> 3) & 7;

	if (!in->mem_operand || !in->has_modrm)
		return false;
	if (in->map == VIREO_MAP_0F)
		return opc == 0xab || opc == 0xb3 || opc == 0xbb ||
		       (opc == 0xba && ext >= 5);
	if (in->map != VIREO_MAP_ONE)
		return false;
	if (opc < 0x40)
		return (opc & 7) <= 1 && (opc >> 3) != ALU_CMP;
	switch (opc) {
	case 0x80:
	case 0x81:
	case 0x83:
		return ext != ALU_CMP;
	case 0x86:
	case 0x87:
		return true;
	case 0xf6:
	case 0xf7:
		return ext == 2 || ext == 3;
	case 0xfe:
	case 0xff:
		return ext <= 1;
	}
	return false;
}

static enum vireo_emu_result dispatch_0f(struct emu *e)
{
	const struct vireo_insn *in = e->in;
	unsigned int ext = (in->modrm >> 3) & 7;

	switch (in->opcode) {
	case 0xa3:
		return op_bt(e, 0, false);
	case 0xab:
		return op_bt(e, 1, false);
	case 0xb3:
		return op_bt(e, 2, false);
	case 0xbb:
		return op_bt(e, 3, false);
	case 0xba:
		if (ext < 4)
			return vireo_emu_set_fault(e->c, VIREO_EMU_UD, false,
						   0, 0);
		return op_bt(e, ext - 4, true);
	case 0xb6:
	case 0xb7:
		return op_movx(e, in->opcode == 0xb6 ? 1 : 2, false);
	case 0xbe:
	case 0xbf:
		return op_movx(e, in->opcode == 0xbe ? 1 : 2, true);
	case 0xc3:
		return op_movnti(e);
	case 0x10:
	case 0x11:
	case 0x28:
	case 0x29:
	case 0x2b:
	case 0x6e:
	case 0x6f:
	case 0x7e:
	case 0x7f:
	case 0xd6:
	case 0xe7:
		return op_sse_mov(e);
	}
	return VIREO_EMU_UNHANDLED;
}

static enum vireo_emu_result dispatch(struct emu *e)
{
	const struct vireo_insn *in = e->in;
	u8 opc = in->opcode, ext = (in->modrm >> 3) & 7;

	if (in->lock && !lockable(in))
		return vireo_emu_set_fault(e->c, VIREO_EMU_UD, false, 0, 0);
	if (in->map == VIREO_MAP_0F)
		return dispatch_0f(e);
	if (in->map != VIREO_MAP_ONE)
		return VIREO_EMU_UNHANDLED;
	if (opc < 0x40 && (opc & 7) < 6)
		return op_alu(e);
	if (opc >= 0xb0 && opc <= 0xbf)
		return op_mov_imm_reg(e);

	switch (opc) {
	case 0x63:	/* MOVSXD; ARPL outside 64-bit mode */
		if (e->c->mode != VIREO_MODE_64)
			return VIREO_EMU_UNHANDLED;
		return op_movx(e, in->op_size == 2 ? 2 : 4, true);
	case 0x80:
	case 0x81:
	case 0x83:
		return op_alu_imm(e);
	case 0x84:
	case 0x85:
		return op_test(e);
	case 0x86:
	case 0x87:
		return op_xchg(e);
	case 0x88 ... 0x8b:
	case 0xa0 ... 0xa3:
	case 0xc6:
	case 0xc7:
		return op_mov(e);
	case 0x8f:
		return op_pop(e);
	case 0xa4 ... 0xa7:
	case 0xaa ... 0xaf:
		return op_string(e);
	case 0xa8:
	case 0xa9:
		return op_test_acc(e);
	case 0xf6:
	case 0xf7:
		return op_grp3(e);
	case 0xfe:
		return op_incdec(e, ext == 1);
	case 0xff:
		if (ext <= 1)
			return op_incdec(e, ext == 1);
		if (ext == 6)
			return op_push(e);
		break;
	}
	return VIREO_EMU_UNHANDLED;
}

enum vireo_emu_result vireo_emulate_insn(struct vireo_emu_ctxt *ctxt,
					 const struct vireo_insn *insn)
{
	enum vireo_emu_result r;
	struct emu e = { .c = ctxt, .in = insn };
	unsigned int i;

	if (!ctxt || !insn || !ctxt->ops || !ctxt->ops->read ||
	    !ctxt->ops->write)
		return VIREO_EMU_UNHANDLED;
	switch (ctxt->mode) {
	case VIREO_MODE_64:
		e.next_rip = ctxt->rip + insn->len;
		break;
	case VIREO_MODE_32:
		e.next_rip = (ctxt->rip + insn->len) & 0xffffffffULL;
		break;
	case VIREO_MODE_16:
		e.next_rip = (ctxt->rip + insn->len) & 0xffff;
		break;
	default:
		return VIREO_EMU_UNHANDLED;
	}
	for (i = 0; i < 16; i++)
		e.regs[i] = ctxt->regs[i];
	e.rflags = ctxt->rflags;
	ctxt->iterations = 0;

	r = dispatch(&e);
	if (r)
		return r;
	commit(&e);
	if (!e.keep_rip)
		ctxt->rip = e.next_rip;
	return VIREO_EMU_OK;
}

enum vireo_emu_result vireo_emulate(struct vireo_emu_ctxt *ctxt,
				    const u8 *bytes, unsigned int len)
{
	struct vireo_insn insn;

	if (!ctxt || vireo_decode(bytes, len, ctxt->mode, &insn))
		return VIREO_EMU_UNHANDLED;
	return vireo_emulate_insn(ctxt, &insn);
}
