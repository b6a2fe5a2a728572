// SPDX-License-Identifier: GPL-2.0-only
/*
 * A small x86 instruction decoder for the exits the hardware does not
 * fully describe: MMIO loads and stores, port I/O, HLT and CPUID.  The
 * bytes come from guest memory, so they are hostile: every read is checked
 * against the buffer, the decoder never looks at more than
 * VIREO_INSN_MAX_LEN bytes, and every loop is bounded by that.
 *
 * Besides the instructions it understands, it computes the length of most
 * of the one- and two-byte opcode maps (VIREO_OP_OTHER), so a caller can at
 * least tell where the next instruction starts.  VEX, EVEX and XOP
 * encodings are not decoded.
 *
 * This file is built into vireo.ko and, unchanged, into the userspace unit
 * test in selftests/unit/: it may use nothing but <vireo/insn.h>.
 */
#include <vireo/insn.h>

/* Attributes of an opcode, as much as its length needs. */
#define A_MODRM		0x0001	/* ModRM (and SIB, displacement) follows */
#define A_MODRM_REG	0x0002	/* ModRM whose mod field is ignored */
#define A_IB		0x0004	/* 8-bit immediate or rel8 */
#define A_IW		0x0008	/* 16-bit immediate */
#define A_IZ		0x0010	/* 16- or 32-bit immediate, by operand size */
#define A_IV		0x0020	/* 16-, 32- or 64-bit immediate */
#define A_JZ		0x0040	/* rel16 or rel32; always rel32 in 64-bit mode */
#define A_MOFFS		0x0080	/* memory offset of the address size */
#define A_AP		0x0100	/* far pointer: offset16/32 then selector */
#define A_I64		0x0200	/* invalid in 64-bit mode */
#define A_BAD		0x0400	/* undefined, or not decoded here */
#define A_GRP3		0x0800	/* F6/F7: immediate only for /0 and /1 */

#define M		A_MODRM

/* The one-byte opcode map.  Prefixes never get here: they are A_BAD. */
static const u16 one_byte_map[256] = {
	[0x00 ... 0x03] = M, [0x04] = A_IB, [0x05] = A_IZ,
	[0x06 ... 0x07] = A_I64,
	[0x08 ... 0x0b] = M, [0x0c] = A_IB, [0x0d] = A_IZ,
	[0x0e] = A_I64, [0x0f] = A_BAD,
	[0x10 ... 0x13] = M, [0x14] = A_IB, [0x15] = A_IZ,
	[0x16 ... 0x17] = A_I64,
	[0x18 ... 0x1b] = M, [0x1c] = A_IB, [0x1d] = A_IZ,
	[0x1e ... 0x1f] = A_I64,
	[0x20 ... 0x23] = M, [0x24] = A_IB, [0x25] = A_IZ,
	[0x26] = A_BAD, [0x27] = A_I64,
	[0x28 ... 0x2b] = M, [0x2c] = A_IB, [0x2d] = A_IZ,
	[0x2e] = A_BAD, [0x2f] = A_I64,
	[0x30 ... 0x33] = M, [0x34] = A_IB, [0x35] = A_IZ,
	[0x36] = A_BAD, [0x37] = A_I64,
	[0x38 ... 0x3b] = M, [0x3c] = A_IB, [0x3d] = A_IZ,
	[0x3e] = A_BAD, [0x3f] = A_I64,
	/* 40-4f INC/DEC (REX in 64-bit mode), 50-5f PUSH/POP: no operands */
	[0x60 ... 0x61] = A_I64, [0x62] = M | A_I64, [0x63] = M,
	[0x64 ... 0x67] = A_BAD,
	[0x68] = A_IZ, [0x69] = M | A_IZ, [0x6a] = A_IB, [0x6b] = M | A_IB,
	/* 6c-6f INS/OUTS */
	[0x70 ... 0x7f] = A_IB,
	[0x80] = M | A_IB, [0x81] = M | A_IZ, [0x82] = M | A_IB | A_I64,
	[0x83] = M | A_IB,
	[0x84 ... 0x8f] = M,
	/* 90-99 XCHG/NOP, CBW, CWD */
	[0x9a] = A_AP | A_I64,
	/* 9b-9f FWAIT, PUSHF, POPF, SAHF, LAHF */
	[0xa0 ... 0xa3] = A_MOFFS,
	/* a4-a7 MOVS, CMPS */
	[0xa8] = A_IB, [0xa9] = A_IZ,
	/* aa-af STOS, LODS, SCAS */
	[0xb0 ... 0xb7] = A_IB, [0xb8 ... 0xbf] = A_IV,
	[0xc0 ... 0xc1] = M | A_IB, [0xc2] = A_IW,
	[0xc4 ... 0xc5] = M | A_I64, [0xc6] = M | A_IB, [0xc7] = M | A_IZ,
	[0xc8] = A_IW | A_IB, [0xca] = A_IW, [0xcd] = A_IB, [0xce] = A_I64,
	[0xd0 ... 0xd3] = M, [0xd4 ... 0xd5] = A_IB | A_I64, [0xd6] = A_BAD,
	[0xd8 ... 0xdf] = M,
	[0xe0 ... 0xe7] = A_IB, [0xe8 ... 0xe9] = A_JZ, [0xea] = A_AP | A_I64,
	[0xeb] = A_IB,
	/* ec-ef IN/OUT with DX */
	[0xf0] = A_BAD, [0xf2 ... 0xf3] = A_BAD,
	[0xf6] = M | A_IB | A_GRP3, [0xf7] = M | A_IZ | A_GRP3,
	[0xfe ... 0xff] = M,
};

/* The two-byte map, after 0F.  0F 38 and 0F 3A are handled in the code. */
static const u16 two_byte_map[256] = {
	[0x00 ... 0x03] = M, [0x04] = A_BAD, [0x0a] = A_BAD, [0x0c] = A_BAD,
	[0x0d] = M, [0x0f] = M | A_IB,
	[0x10 ... 0x1f] = M,
	[0x20 ... 0x23] = A_MODRM_REG, [0x24 ... 0x27] = A_BAD,
	[0x28 ... 0x2f] = M,
	[0x36] = A_BAD, [0x38 ... 0x3f] = A_BAD,
	[0x40 ... 0x6f] = M,
	[0x70 ... 0x73] = M | A_IB, [0x74 ... 0x76] = M, [0x78 ... 0x79] = M,
	[0x7a ... 0x7b] = A_BAD, [0x7c ... 0x7f] = M,
	[0x80 ... 0x8f] = A_JZ,
	[0x90 ... 0x9f] = M,
	[0xa3] = M, [0xa4] = M | A_IB, [0xa5] = M, [0xa6 ... 0xa7] = A_BAD,
	[0xab] = M, [0xac] = M | A_IB, [0xad ... 0xaf] = M,
	[0xb0 ... 0xb9] = M, [0xba] = M | A_IB, [0xbb ... 0xbf] = M,
	[0xc0 ... 0xc1] = M, [0xc2] = M | A_IB, [0xc3] = M,
	[0xc4 ... 0xc6] = M | A_IB, [0xc7] = M,
	[0xd0 ... 0xff] = M,
};

#undef M

#define REX_B		0x01
#define REX_X		0x02
#define REX_R		0x04
#define REX_W		0x08

/* Which opcode map the opcode byte belongs to (enum vireo_opmap). */
#define MAP_ONE		VIREO_MAP_ONE
#define MAP_0F		VIREO_MAP_0F
#define MAP_0F38	VIREO_MAP_0F38
#define MAP_0F3A	VIREO_MAP_0F3A

struct decoder {
	const u8 *buf;
	unsigned int lim;	/* bytes we may read: min(len, 15) */
	unsigned int pos;	/* next byte to read, always <= lim */
	bool mode64;
	u8 rex;
};

/* Read @n (<= 8) bytes little-endian; -1 when they are not there. */
static int fetch(struct decoder *d, unsigned int n, u64 *val)
{
	unsigned int i;
	u64 v = 0;

	if (n > d->lim - d->pos)
		return -1;
	for (i = 0; i < n; i++)
		v |= (u64)d->buf[d->pos + i] << (8 * i);
	d->pos += n;
	*val = v;
	return 0;
}

static s64 sign_extend(u64 v, unsigned int bytes)
{
	unsigned int shift = 64 - 8 * bytes;

	return (s64)(v << shift) >> shift;
}

static u64 size_mask(unsigned int bytes)
{
	return bytes >= 8 ? ~0ULL : (1ULL << (8 * bytes)) - 1;
}

/* 16-bit forms: [BX+SI], [BX+DI], [BP+SI], [BP+DI], [SI], [DI], [BP], [BX] */
static const signed char base16[8] = { 3, 3, 5, 5, 6, 7, 5, 3 };
static const signed char index16[8] = { 6, 7, 6, 7, -1, -1, -1, -1 };

static int decode_mem16(struct decoder *d, struct vireo_insn *insn,
			u8 mod, u8 rm)
{
	unsigned int disp_size = mod == 1 ? 1 : mod == 2 ? 2 : 0;
	u64 v;

	if (mod == 0 && rm == 6) {
		disp_size = 2;	/* [disp16] */
	} else {
		insn->base_reg = base16[rm];
		insn->index_reg = index16[rm];
	}
	if (disp_size) {
		if (fetch(d, disp_size, &v))
			return -1;
		insn->disp = sign_extend(v, disp_size);
	}
	return 0;
}

static int decode_mem32(struct decoder *d, struct vireo_insn *insn,
			u8 mod, u8 rm)
{
	unsigned int disp_size = mod == 1 ? 1 : mod == 2 ? 4 : 0;
	u8 rex = d->rex;
	u64 v;

	if (rm == 4) {
		u8 sib, index, base;

		if (fetch(d, 1, &v))
			return -1;
		sib = v;
		index = ((sib >> 3) & 7) | (rex & REX_X ? 8 : 0);
		base = sib & 7;
		/* index 100 without REX.X: no index */
		if (index != 4) {
			insn->index_reg = index;
			insn->scale = 1 << (sib >> 6);
		}
		if (base == 5 && mod == 0)
			disp_size = 4;	/* no base, disp32 */
		else
			insn->base_reg = base | (rex & REX_B ? 8 : 0);
	} else if (rm == 5 && mod == 0) {
		/* disp32 alone; RIP-relative in 64-bit mode */
		disp_size = 4;
		insn->rip_relative = d->mode64;
	} else {
		insn->base_reg = rm | (rex & REX_B ? 8 : 0);
	}
	if (disp_size) {
		if (fetch(d, disp_size, &v))
			return -1;
		insn->disp = sign_extend(v, disp_size);
	}
	return 0;
}

/* Returns the ModRM byte, or -1. */
static int decode_modrm(struct decoder *d, struct vireo_insn *insn,
			bool regs_only)
{
	u8 modrm, mod, rm;
	u64 v;

	if (fetch(d, 1, &v))
		return -1;
	modrm = v;
	mod = modrm >> 6;
	rm = modrm & 7;
	insn->has_modrm = true;
	insn->reg = ((modrm >> 3) & 7) | (d->rex & REX_R ? 8 : 0);
	if (mod == 3 || regs_only)
		return modrm;
	insn->mem_operand = true;
	if (insn->addr_size == 2) {
		if (decode_mem16(d, insn, mod, rm))
			return -1;
	} else {
		if (decode_mem32(d, insn, mod, rm))
			return -1;
	}
	return modrm;
}

/* Bytes of the immediates of an opcode with attributes @attr. */
static unsigned int imm_size(u16 attr, const struct vireo_insn *insn,
			     bool mode64, int modrm)
{
	unsigned int n = 0;
	unsigned int z = insn->op_size == 2 ? 2 : 4;

	if ((attr & A_GRP3) && ((modrm >> 3) & 7) > 1)
		return 0;	/* F6/F7 /2-/7: no immediate */
	if (attr & A_IB)
		n += 1;
	if (attr & A_IW)
		n += 2;
	if (attr & A_IZ)
		n += z;
	if (attr & A_IV)
		n += insn->op_size;
	if (attr & A_JZ)
		n += mode64 ? 4 : z;
	if (attr & A_AP)
		n += 2 + z;
	return n;
}

/*
 * Opcode-specific checks for encodings that are undefined (#UD) or that
 * are not decoded here (VEX, EVEX, XOP).  @modrm is -1 without one.
 */
static bool invalid_encoding(int map, u8 opc, int modrm, u8 last_rep,
			     bool p66)
{
	u8 mod = (u8)modrm >> 6, ext = ((u8)modrm >> 3) & 7;

	if (map == MAP_0F) {
		switch (opc) {
		case 0x78:		/* VMREAD; 66/F2: SSE4a EXTRQ/INSERTQ */
		case 0x79:
			return p66 || last_rep == 0xf2;
		case 0xb8:		/* POPCNT needs F3; JMPE is gone */
			return last_rep != 0xf3;
		}
		return false;
	}
	if (map != MAP_ONE)
		return false;
	switch (opc) {
	case 0x62:	/* BOUND; EVEX when mod == 3 */
	case 0xc4:	/* LES; VEX when mod == 3 */
	case 0xc5:	/* LDS; VEX when mod == 3 */
	case 0x8d:	/* LEA needs memory */
		return mod == 3;
	case 0x8f:	/* POP /0; XOP otherwise */
		return ext != 0;
	case 0xc6:	/* MOV /0, XABORT C6 F8 */
	case 0xc7:	/* MOV /0, XBEGIN C7 F8 */
		return ext != 0 && modrm != 0xf8;
	case 0xfe:	/* INC/DEC only */
		return ext > 1;
	case 0xff:	/* /3 and /5 far CALL/JMP need memory; /7 undefined */
		return ext == 7 || ((ext == 3 || ext == 5) && mod == 3);
	}
	return false;
}

/* Fill in the instructions we understand; the rest stay VIREO_OP_OTHER. */
static void classify(struct vireo_insn *insn, int map, u8 opc, int modrm,
		     u64 imm, bool mode64)
{
	u8 ext = ((u8)modrm >> 3) & 7;
	u8 io_size = insn->op_size == 2 ? 2 : 4;

	insn->op = VIREO_OP_OTHER;
	if (map == MAP_0F) {
		switch (opc) {
		case 0xa2:
			insn->op = VIREO_OP_CPUID;
			break;
		case 0xb6:
		case 0xb7:
			insn->op = VIREO_OP_LOAD_ZX;
			insn->mem_size = opc == 0xb6 ? 1 : 2;
			break;
		case 0xbe:
		case 0xbf:
			insn->op = VIREO_OP_LOAD_SX;
			insn->mem_size = opc == 0xbe ? 1 : 2;
			break;
		}
		return;
	}
	if (map != MAP_ONE)
		return;

	switch (opc) {
	case 0x88:
	case 0x8a:
		insn->op = opc == 0x88 ? VIREO_OP_STORE : VIREO_OP_LOAD;
		insn->op_size = 1;
		insn->mem_size = 1;
		break;
	case 0x89:
	case 0x8b:
		insn->op = opc == 0x89 ? VIREO_OP_STORE : VIREO_OP_LOAD;
		insn->mem_size = insn->op_size;
		break;
	case 0xc6:
	case 0xc7:
		if (ext != 0)
			break;		/* XABORT / XBEGIN */
		insn->op = VIREO_OP_STORE_IMM;
		insn->reg = 0;
		if (opc == 0xc6) {
			insn->op_size = 1;
			insn->imm = imm & 0xff;
		} else {
			unsigned int isz = insn->op_size == 2 ? 2 : 4;

			insn->imm = (u64)sign_extend(imm, isz) &
				    size_mask(insn->op_size);
		}
		insn->mem_size = insn->op_size;
		break;
	case 0xa0:
	case 0xa1:
	case 0xa2:
	case 0xa3:
		insn->op = opc & 2 ? VIREO_OP_STORE : VIREO_OP_LOAD;
		if (!(opc & 1))
			insn->op_size = 1;
		insn->mem_size = insn->op_size;
		insn->reg = 0;
		break;
	case 0x63:
		if (!mode64)
			break;		/* ARPL */
		insn->op = VIREO_OP_LOAD_SX;
		insn->mem_size = insn->op_size == 2 ? 2 : 4;
		break;
	case 0xe4:
	case 0xe5:
	case 0xe6:
	case 0xe7:
	case 0xec:
	case 0xed:
	case 0xee:
	case 0xef:
		insn->op = opc & 2 ? VIREO_OP_OUT : VIREO_OP_IN;
		insn->op_size = opc & 1 ? io_size : 1;
		insn->mem_size = insn->op_size;
		insn->reg = 0;
		if (opc & 8)
			insn->port_in_dx = true;
		else
			insn->port = imm & 0xff;
		break;
	case 0x6c:
	case 0x6d:
	case 0x6e:
	case 0x6f:
		insn->op = opc & 2 ? VIREO_OP_OUTS : VIREO_OP_INS;
		insn->op_size = opc & 1 ? io_size : 1;
		insn->mem_size = insn->op_size;
		insn->port_in_dx = true;
		insn->mem_operand = true;
		/* INS writes ES:[rDI], OUTS reads seg:[rSI] */
		insn->base_reg = opc & 2 ? 6 : 7;
		break;
	case 0xf4:
		insn->op = VIREO_OP_HLT;
		break;
	}
}

struct prefixes {
	bool p66, p67, lock;
	u8 last_rep;		/* F2 or F3, the last one seen */
	int seg;		/* segment override, or -1 */
};

/* Note a legacy prefix; false when @b is not one. */
static bool take_prefix(struct prefixes *p, u8 b, bool mode64)
{
	switch (b) {
	case 0x66:
		p->p66 = true;
		break;
	case 0x67:
		p->p67 = true;
		break;
	case 0xf0:
		p->lock = true;
		break;
	case 0xf2:
	case 0xf3:
		p->last_rep = b;
		break;
	case 0x26:
	case 0x2e:
	case 0x36:
	case 0x3e:
		/* ES, CS, SS, DS: 64-bit mode ignores them */
		if (!mode64)
			p->seg = (b >> 3) & 3;
		break;
	case 0x64:
	case 0x65:
		p->seg = VIREO_SEG_FS + (b & 1);
		break;
	default:
		return false;
	}
	return true;
}

int vireo_decode(const u8 *buf, unsigned int len, enum vireo_cpu_mode mode,
		 struct vireo_insn *insn)
{
	struct decoder d = {
		.buf = buf,
		.lim = len < VIREO_INSN_MAX_LEN ? len : VIREO_INSN_MAX_LEN,
		.mode64 = mode == VIREO_MODE_64,
	};
	struct prefixes p = { .seg = -1 };
	int map = MAP_ONE;
	int modrm = -1;
	u64 v, imm = 0;
	unsigned int n;
	u16 attr;
	u8 opc;

	if (!buf || !insn ||
	    (mode != VIREO_MODE_16 && mode != VIREO_MODE_32 && !d.mode64))
		return -1;

	*insn = (struct vireo_insn) {
		.base_reg = -1,
		.index_reg = -1,
		.scale = 1,
		.seg = VIREO_SEG_DS,
	};

	/*
	 * Prefixes.  Each one consumes a byte, and fetch() stops at 15 bytes,
	 * so this loop is bounded.  A REX counts only right before the
	 * opcode: a legacy prefix after it cancels it.
	 */
	for (;;) {
		if (fetch(&d, 1, &v))
			return -1;
		opc = v;
		if (d.mode64 && (opc & 0xf0) == 0x40) {
			d.rex = opc;
			continue;
		}
		if (!take_prefix(&p, opc, d.mode64))
			break;
		d.rex = 0;
	}

	if (d.mode64 && (d.rex & REX_W))
		insn->op_size = 8;
	else if (mode == VIREO_MODE_16)
		insn->op_size = p.p66 ? 4 : 2;
	else
		insn->op_size = p.p66 ? 2 : 4;
	if (d.mode64)
		insn->addr_size = p.p67 ? 4 : 8;
	else if (mode == VIREO_MODE_16)
		insn->addr_size = p.p67 ? 4 : 2;
	else
		insn->addr_size = p.p67 ? 2 : 4;
	insn->rep = p.last_rep != 0;

	if (opc == 0x0f) {
		if (fetch(&d, 1, &v))
			return -1;
		opc = v;
		map = MAP_0F;
		attr = two_byte_map[opc];
		if (opc == 0x38 || opc == 0x3a) {
			map = opc == 0x38 ? MAP_0F38 : MAP_0F3A;
			attr = opc == 0x38 ? A_MODRM : A_MODRM | A_IB;
			if (fetch(&d, 1, &v))
				return -1;
			opc = v;
		}
	} else {
		attr = one_byte_map[opc];
	}
	if (attr & A_BAD)
		return -1;
	if (d.mode64 && (attr & A_I64))
		return -1;

	if (attr & (A_MODRM | A_MODRM_REG)) {
		modrm = decode_modrm(&d, insn, attr & A_MODRM_REG);
		if (modrm < 0)
			return -1;
	}
	if (invalid_encoding(map, opc, modrm, p.last_rep, p.p66))
		return -1;

	if (attr & A_MOFFS) {
		if (fetch(&d, insn->addr_size, &v))
			return -1;
		insn->mem_operand = true;
		insn->disp = (s64)v;
	}
	/* at most 8 bytes (MOV r64, imm64); ENTER's two make 3 */
	n = imm_size(attr, insn, d.mode64, modrm);
	if (n && fetch(&d, n, &imm))
		return -1;
	insn->len = d.pos;
	insn->map = map;
	insn->opcode = opc;
	insn->modrm = modrm >= 0 ? modrm : 0;
	insn->rex = d.rex;
	insn->rep_prefix = p.last_rep;
	insn->lock = p.lock;
	insn->opsize_prefix = p.p66;
	insn->imm_len = n;
	insn->raw_imm = imm;

	classify(insn, map, opc, modrm, imm, d.mode64);

	/*
	 * LOCK needs a memory destination, which none of the instructions
	 * classified above has.  AMD's LOCK MOV CR0 (MOV CR8) is fine.
	 */
	if (p.lock && (insn->op != VIREO_OP_OTHER || !insn->mem_operand) &&
	    !(map == MAP_0F && (opc == 0x20 || opc == 0x22)))
		return -1;

	/*
	 * 8-bit register operand 4-7 without any REX: AH, CH, DH, BH, that
	 * is bits 15:8 of register reg - 4.  With a REX it is SPL..DIL.
	 */
	if (insn->op_size == 1 && insn->has_modrm && !d.rex &&
	    insn->reg >= 4 && insn->reg <= 7 &&
	    (insn->op == VIREO_OP_STORE || insn->op == VIREO_OP_LOAD))
		insn->high_byte = true;

	if (insn->op == VIREO_OP_INS)
		insn->seg = VIREO_SEG_ES;	/* cannot be overridden */
	else if (p.seg >= 0)
		insn->seg = p.seg;
	else if (insn->base_reg == 4 || insn->base_reg == 5)
		insn->seg = VIREO_SEG_SS;	/* rSP, rBP or BP based */
	return 0;
}
