// SPDX-License-Identifier: GPL-2.0-only
/*
 * The instruction emulator behind MMIO.  A guest instruction whose
 * memory operand is a guest-physical address without a memslot exits to
 * userspace as KVM_EXIT_MMIO, and the hypervisor must carry it out just
 * as the CPU does on RAM.  The test is differential: every instruction
 * runs twice from the same registers, flags and memory contents, once
 * with its operand in a RAM buffer and once in an MMIO window that the
 * host backs with a byte array, and the two runs must end with the same
 * registers, arithmetic flags and memory.
 *
 * 64-bit long mode, a C guest (lib/x86.h): each case is an assembly stub
 * that loads all the GPRs and RFLAGS from emu_st, executes the
 * instruction and stores them back.  Pointer registers point into the
 * RAM buffer or into the window (and are compared relative to it); the
 * other registers and the memory hold xorshift values (the seed is in a
 * diagnostic), boundary values or one value everywhere, so that carries,
 * overflow, zero and sign all occur.  The host loads the window and
 * compares it with the RAM run's buffer at a ucall after each pair of
 * runs; the guest compares the registers and reports a difference with
 * a ucall.  Classes: MOV (88-8B, C6/C7, A0-A3, RIP-relative, FS and GS),
 * MOVZX/MOVSX/MOVSXD, the ALU group and TEST, INC/DEC/NEG/NOT, XCHG and
 * LOCK, the bit tests (immediate and register offsets, beyond the operand
 * too), the string instructions (REP, REPE, REPNE, both directions,
 * counts 0, 1 and past the emulator's batch), PUSH and POP of memory, and
 * MOVNTI: what arch/x86/emulate.c executes but the SSE moves, which are
 * not tested here yet (it has no XADD or CMPXCHG).
 *
 * 32-bit protected mode and real mode: assembly guests run a fixed list
 * of steps twice, with the target in EBX (flat segments) or in ES and FS
 * (real mode) at RAM and then at the window, and store their registers
 * and flags after every step; the host compares the two runs and the
 * memory, a few rounds with other inputs.
 *
 * Every MMIO access must be of 1, 2, 4 or 8 bytes inside the window, and
 * any other exit fails the case or step it happened in (with the
 * suberror and data of an emulation failure); the next VM goes on after
 * it.  Flags the manuals leave undefined are not compared: AF after AND,
 * OR, XOR and TEST, all but CF and ZF after the bit tests.
 *
 * The cases and steps are tables that assembler macros build (CASE,
 * P32, S16, ...), so that each instruction is written once.
 *
 * Usage: emulator [device] [seed]
 */
#include <assert.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lib/guest.h"
#include "lib/tap.h"
#include "lib/vm.h"
#include "lib/x86.h"

#define STR(x)		#x
#define XSTR(x)		STR(x)

#define MMIO_BASE	0x10000000	/* no memslot: MMIO */
#define WIN		0x800		/* the window, and its twin in RAM */
#define ITERS		16		/* values per case, unless it says */
#define FS_BASE		0x100
#define GS_BASE		0x80
#define SEED		0x5eed0f5eedULL
#define TIMEOUT_S	60		/* for one VM: a hang, not slowness */
#define MAX_EXITS	1000000
#define MAX_DIAGS	6		/* differences shown per class */
#define MAX_VMS		16		/* per class, each after a dead one */
#define EXIT_NONE	0xfffffffu	/* exit_reason before KVM_RUN */

/* RFLAGS; plain numbers, for the assembler too */
#define F_CF		0x001
#define F_PF		0x004
#define F_AF		0x010
#define F_ZF		0x040
#define F_SF		0x080
#define F_DF		0x400
#define F_OF		0x800
#define F_ARITH		(F_CF | F_PF | F_AF | F_ZF | F_SF | F_OF)
#define F_LOGIC		(F_ARITH & ~F_AF)	/* AND, OR, XOR, TEST */
#define F_BT		(F_CF | F_ZF)		/* BT, BTS, BTR, BTC */
#define FILL_5A		0x5a5a5a5a5a5a5a5aULL

enum {
	G_RAX, G_RCX, G_RDX, G_RBX, G_RSP, G_RBP, G_RSI, G_RDI,
	G_R8, G_R9, G_R10, G_R11, G_R12, G_R13, G_R14, G_R15,
};

/* what a pointer register points at: the target (RAM or MMIO) or RAM */
#define AREA_T		1
#define AREA_A		2

/* memory for REPE/REPNE CMPS and SCAS, so that they go on for a while */
#define INIT_EQ1	1	/* target = aux but one byte */
#define INIT_NE1	2	/* target = ~aux but one aligned qword */
#define INIT_F5A	3	/* target = 0x5a but one byte */
#define INIT_N5A	4	/* target without 0x5a but one aligned qword */

enum { SYNC_STEP = 1, SYNC_FAIL };
enum { FAIL_REG = 1, FAIL_FLAGS, FAIL_AUX };

/* A 64-bit case, as EMU_REC lays it out. */
struct ecase {
	const char *text;
	void (*stub)(void);
	void (*stub_mmio)(void);	/* NULL: the same stub */
	uint64_t fval[2];		/* values of the fixed registers */
	uint16_t mask;			/* flags compared; 0: F_ARITH */
	int16_t off[2];			/* pointer registers: area + off */
	int16_t lo, hi;			/* bit offset register: lo..hi */
	uint8_t preg[2], area[2];	/* register + 1 (0: none), AREA_* */
	uint8_t freg[2];		/* fixed registers + 1 */
	uint8_t rreg, rsize;		/* bit offset register + 1, size */
	uint8_t df;			/* RFLAGS.DF going in */
	uint8_t iters;			/* 0: ITERS */
	uint8_t init, esize;		/* INIT_*, string element size */
	uint8_t none;			/* touches no MMIO: REP, count 0 */
	uint8_t pad;
};

static_assert(sizeof(struct ecase) == 64, "EMU_REC's layout");
static_assert(offsetof(struct ecase, preg) == 50, "EMU_REC's layout");

/*
 * The 64-bit cases.  The stub of "CASE name, instruction" loads emu_st,
 * executes the instruction, stores emu_st; its record goes to the table
 * of the current CLASS.  CASEQ takes a quoted instruction (a sequence,
 * with ';'), CASE2 a quoted one for RAM and one for MMIO (absolute and
 * RIP-relative forms: RIPM after an instruction with a 0(%rip) operand
 * makes it address the window + off, tail being the immediate's length).
 * Before a CASE, these set up its record, which starts out with RBX at
 * target + 0x400, F_ARITH compared and ITERS values:
 *   ON reg[, off]		the pointer register instead of RBX
 *   STRS si, di, off[, down]	RSI and RDI at T(arget), A(ux) or N(one)
 *   FIX reg, value; COUNT n	a fixed register; RCX = n
 *   RANGE reg, size, lo, hi	a bit offset, garbage above size bytes
 *   MASK flags; ITERS n; NONE; SCAN init, element size
 */
asm(".pushsection .text\n"
	".set EMU_MMIO, " XSTR(MMIO_BASE) "\n"
	".set AREA_T, " XSTR(AREA_T) "; .set AREA_A, " XSTR(AREA_A) "\n"
	".set F_LOGIC, " XSTR(F_LOGIC) "; .set F_BT, " XSTR(F_BT) "\n"
	".set INIT_EQ1, " XSTR(INIT_EQ1) "; .set INIT_NE1, " XSTR(INIT_NE1) "\n"
	".set INIT_F5A, " XSTR(INIT_F5A) "; .set INIT_N5A, " XSTR(INIT_N5A) "\n"
	".set R_rax, 0; .set R_rcx, 1; .set R_rdx, 2; .set R_rbx, 3\n"
	".set R_rsp, 4; .set R_rbp, 5; .set R_rsi, 6; .set R_rdi, 7\n"
	".set R_r8, 8; .set R_r9, 9; .set R_r10, 10; .set R_r11, 11\n"
	".set R_r12, 12; .set R_r13, 13; .set R_r14, 14; .set R_r15, 15\n"

	".macro EMU_LOAD\n"
	"\tpush %rbx; push %rbp; push %r12; push %r13; push %r14; push %r15\n"
	"\tmov emu_st+0(%rip), %rax; mov emu_st+8(%rip), %rcx\n"
	"\tmov emu_st+16(%rip), %rdx; mov emu_st+24(%rip), %rbx\n"
	"\tmov emu_st+40(%rip), %rbp; mov emu_st+48(%rip), %rsi\n"
	"\tmov emu_st+56(%rip), %rdi; mov emu_st+64(%rip), %r8\n"
	"\tmov emu_st+72(%rip), %r9; mov emu_st+80(%rip), %r10\n"
	"\tmov emu_st+88(%rip), %r11; mov emu_st+96(%rip), %r12\n"
	"\tmov emu_st+104(%rip), %r13; mov emu_st+112(%rip), %r14\n"
	"\tmov emu_st+120(%rip), %r15\n"
	"\tpushq emu_st+128(%rip); popfq\n"
	".endm\n"
	".macro EMU_SAVE\n"
	"\tpushfq; popq emu_st+128(%rip)\n"
	"\tmov %rax, emu_st+0(%rip); mov %rcx, emu_st+8(%rip)\n"
	"\tmov %rdx, emu_st+16(%rip); mov %rbx, emu_st+24(%rip)\n"
	"\tmov %rsp, emu_st+32(%rip); mov %rbp, emu_st+40(%rip)\n"
	"\tmov %rsi, emu_st+48(%rip); mov %rdi, emu_st+56(%rip)\n"
	"\tmov %r8, emu_st+64(%rip); mov %r9, emu_st+72(%rip)\n"
	"\tmov %r10, emu_st+80(%rip); mov %r11, emu_st+88(%rip)\n"
	"\tmov %r12, emu_st+96(%rip); mov %r13, emu_st+104(%rip)\n"
	"\tmov %r14, emu_st+112(%rip); mov %r15, emu_st+120(%rip)\n"
	"\tcld\n"
	"\tpop %r15; pop %r14; pop %r13; pop %r12; pop %rbp; pop %rbx\n"
	"\tret\n"
	".endm\n"
	".macro RIPM off, tail=0\n"
	"1:\t.reloc 1b - 4 - \\tail, R_X86_64_PC32, EMU_MMIO + \\off - 4 - \\tail\n"
	".endm\n"

	".macro EMU_RESET\n"
	"\t.set e_p0, R_rbx + 1; .set e_a0, AREA_T; .set e_o0, 0x400\n"
	"\t.set e_p1, 0; .set e_a1, 0; .set e_o1, 0; .set e_nf, 0\n"
	"\t.set e_f0, 0; .set e_v0, 0; .set e_f1, 0; .set e_v1, 0\n"
	"\t.set e_r, 0; .set e_rs, 0; .set e_lo, 0; .set e_hi, 0\n"
	"\t.set e_mask, 0; .set e_df, 0; .set e_it, 0; .set e_init, 0\n"
	"\t.set e_es, 0; .set e_none, 0\n"
	".endm\n"
	".macro ON reg, off=0x400\n"
	"\t.set e_p0, R_\\reg + 1; .set e_o0, \\off\n"
	".endm\n"
	".macro STRS si, di, off, down=0\n"
	"\t.set e_p0, 0; .set e_p1, 0; .set e_df, \\down\n"
	"\t.ifnc \\si, N\n"
	"\t.set e_p0, R_rsi + 1; .set e_a0, AREA_\\si; .set e_o0, \\off\n"
	"\t.endif\n"
	"\t.ifnc \\di, N\n"
	"\t.set e_p1, R_rdi + 1; .set e_a1, AREA_\\di; .set e_o1, \\off\n"
	"\t.endif\n"
	".endm\n"
	".macro FIX reg, val\n"
	"\t.if e_nf\n"
	"\t.set e_f1, R_\\reg + 1; .set e_v1, \\val\n"
	"\t.else\n"
	"\t.set e_f0, R_\\reg + 1; .set e_v0, \\val\n"
	"\t.endif\n"
	"\t.set e_nf, e_nf + 1\n"
	".endm\n"
	".macro COUNT cnt\n"
	"\tFIX rcx, \\cnt\n"
	".endm\n"
	".macro RANGE reg, size, lo, hi\n"
	"\t.set e_r, R_\\reg + 1; .set e_rs, \\size\n"
	"\t.set e_lo, \\lo; .set e_hi, \\hi\n"
	".endm\n"
	".macro MASK m\n"
	"\t.set e_mask, \\m\n"
	".endm\n"
	".macro ITERS cnt\n"
	"\t.set e_it, \\cnt\n"
	".endm\n"
	".macro NONE\n"
	"\t.set e_none, 1\n"
	".endm\n"
	".macro SCAN init, es\n"
	"\t.set e_init, \\init; .set e_es, \\es\n"
	".endm\n"

	".macro EMU_REC text, stub, stubm\n"
	"\t.pushsection .data.rel.ro.emu_cases, \"aw\"\n"
	"\t.quad \\text, \\stub, \\stubm, e_v0, e_v1\n"
	"\t.short e_mask, e_o0, e_o1, e_lo, e_hi\n"
	"\t.byte e_p0, e_p1, e_a0, e_a1, e_f0, e_f1, e_r, e_rs\n"
	"\t.byte e_df, e_it, e_init, e_es, e_none, 0\n"
	"\t.popsection\n"
	"\tEMU_RESET\n"
	".endm\n"
	".macro EMU_TEXT name, insn\n"
	"\t.pushsection .rodata.emu_text, \"a\"\n"
	"emu_\\name\\()_t:\n"
	"\t.asciz \"\\insn\"\n"
	"\t.popsection\n"
	".endm\n"
	".macro CASE name, insn:vararg\n"
	"emu_\\name:\n"
	"\tEMU_LOAD\n"
	"\t\\insn\n"
	"\tEMU_SAVE\n"
	"\tEMU_TEXT \\name, \"\\insn\"\n"
	"\tEMU_REC emu_\\name\\()_t, emu_\\name, 0\n"
	".endm\n"
	".macro CASEQ name, insn\n"
	"emu_\\name:\n"
	"\tEMU_LOAD\n"
	"\t\\insn\n"
	"\tEMU_SAVE\n"
	"\tEMU_TEXT \\name, \"\\insn\"\n"
	"\tEMU_REC emu_\\name\\()_t, emu_\\name, 0\n"
	".endm\n"
	".macro CASE2 name, ram, mmio\n"
	"emu_\\name:\n"
	"\tEMU_LOAD\n"
	"\t\\ram\n"
	"\tEMU_SAVE\n"
	"emu_\\name\\()_m:\n"
	"\tEMU_LOAD\n"
	"\t\\mmio\n"
	"\tEMU_SAVE\n"
	"\tEMU_TEXT \\name, \"\\ram\"\n"
	"\tEMU_REC emu_\\name\\()_t, emu_\\name, emu_\\name\\()_m\n"
	".endm\n"
	".macro CLASS name\n"
	"\t.pushsection .data.rel.ro.emu_cases, \"aw\"\n"
	"\t.balign 8\n"
	"\t.globl emu_class_\\name\n"
	"emu_class_\\name:\n"
	"\t.popsection\n"
	".endm\n"
	/* every form of an operation with a memory operand, all sizes */
	".macro ALU op, m\n"
	"\tMASK \\m; CASE \\op\\()_mr8, \\op\\()b %cl, 0x10(%rbx)\n"
	"\tMASK \\m; CASE \\op\\()_mr16, \\op\\()w %dx, 0x12(%rbx)\n"
	"\tMASK \\m; CASE \\op\\()_mr32, \\op\\()l %esi, 0x14(%rbx)\n"
	"\tMASK \\m; CASE \\op\\()_mr64, \\op\\()q %r9, 0x18(%rbx)\n"
	"\tMASK \\m; CASE \\op\\()_rm8, \\op\\()b 0x20(%rbx), %ah\n"
	"\tMASK \\m; CASE \\op\\()_rm16, \\op\\()w 0x22(%rbx), %cx\n"
	"\tMASK \\m; CASE \\op\\()_rm32, \\op\\()l 0x24(%rbx), %r10d\n"
	"\tMASK \\m; CASE \\op\\()_rm64, \\op\\()q 0x28(%rbx), %rdx\n"
	"\tMASK \\m; CASE \\op\\()_i8, \\op\\()b $0x5a, 0x30(%rbx)\n"
	"\tMASK \\m; CASE \\op\\()_i16, \\op\\()w $0x1234, 0x32(%rbx)\n"
	"\tMASK \\m; CASE \\op\\()_i32, \\op\\()l $0x89abcdef, 0x34(%rbx)\n"
	"\tMASK \\m; CASE \\op\\()_i64, \\op\\()q $-0x789abcd, 0x38(%rbx)\n"
	"\tMASK \\m; CASE \\op\\()_s8w, \\op\\()w $-0x80, -0x10(%rbx)\n"
	"\tMASK \\m; CASE \\op\\()_s8q, \\op\\()q $0x7f, 0x40(%rbx)\n"
	".endm\n"
	"\tEMU_RESET\n"

	"\tCLASS mov\n"
	"\tCASE mov_st8, mov %al, 0x10(%rbx)\n"
	"\tCASE mov_st16, mov %cx, 0x12(%rbx)\n"
	"\tCASE mov_st32, mov %edx, 0x14(%rbx)\n"
	"\tCASE mov_st64, mov %rsi, 0x18(%rbx)\n"
	"\tCASE mov_st8ah, mov %ah, 0x21(%rbx)\n"
	"\tON rbp; CASE mov_st8bh, mov %bh, -0x22(%rbp)\n"
	"\tCASE mov_st8sil, mov %sil, 0x23(%rbx)\n"
	"\tCASE mov_st8r9, mov %r9b, -0x20(%rbx)\n"
	"\tON r8; CASE mov_st16r15, mov %r15w, -0x7e(%r8)\n"
	"\tON r12; CASE mov_st64r12, mov %r11, (%r12)\n"
	"\tON r13; FIX r14, 3; CASE mov_st32sib, mov %r10d, 0x30(%r13,%r14,4)\n"
	"\tCASE mov_ld8, mov 0x40(%rbx), %al\n"
	"\tCASE mov_ld16, mov 0x42(%rbx), %dx\n"
	"\tCASE mov_ld32, mov 0x44(%rbx), %ecx\n"
	"\tCASE mov_ld64, mov 0x48(%rbx), %r15\n"
	"\tCASE mov_ld8ch, mov 0x50(%rbx), %ch\n"
	"\tON rsi; CASE mov_ld8bh, mov 0x51(%rsi), %bh\n"
	"\tCASE mov_ld8dil, mov 0x52(%rbx), %dil\n"
	"\tCASE mov_ld8r8, mov -0x10(%rbx), %r8b\n"
	"\tON r13; CASE mov_ld64r13, mov 0x8(%r13), %r9\n"
	"\tON r9; FIX r10, 5; CASE mov_ld32sib, mov -0x40(%r9,%r10,8), %eax\n"
	"\tCASE mov_imm8, movb $0x5a, 0x60(%rbx)\n"
	"\tCASE mov_imm16, movw $0x8001, 0x62(%rbx)\n"
	"\tCASE mov_imm32, movl $0x89abcdef, 0x64(%rbx)\n"
	"\tCASE mov_imm64, movq $-2, 0x68(%rbx)\n"
	"\tCASE mov_imm64p, movq $0x7fffffff, 0x70(%rbx)\n"
	"\tCASE mov_fs, mov %fs:0x10(%rbx), %eax\n"
	"\tCASE mov_gs, mov %rcx, %gs:-0x20(%rbx)\n"
	"\tCASE mov_gsimm, movw $0x1234, %gs:0x30(%rbx)\n"
	"\tCASE2 moffs_ld8, \"movabs emu_tram+0x410, %al\", "
	"\"movabs EMU_MMIO+0x410, %al\"\n"
	"\tCASE2 moffs_ld16, \"movabs emu_tram+0x412, %ax\", "
	"\"movabs EMU_MMIO+0x412, %ax\"\n"
	"\tCASE2 moffs_ld32, \"movabs emu_tram+0x414, %eax\", "
	"\"movabs EMU_MMIO+0x414, %eax\"\n"
	"\tCASE2 moffs_ld64, \"movabs emu_tram+0x418, %rax\", "
	"\"movabs EMU_MMIO+0x418, %rax\"\n"
	"\tCASE2 moffs_st8, \"movabs %al, emu_tram+0x420\", "
	"\"movabs %al, EMU_MMIO+0x420\"\n"
	"\tCASE2 moffs_st16, \"movabs %ax, emu_tram+0x422\", "
	"\"movabs %ax, EMU_MMIO+0x422\"\n"
	"\tCASE2 moffs_st32, \"movabs %eax, emu_tram+0x424\", "
	"\"movabs %eax, EMU_MMIO+0x424\"\n"
	"\tCASE2 moffs_st64, \"movabs %rax, emu_tram+0x428\", "
	"\"movabs %rax, EMU_MMIO+0x428\"\n"
	"\tCASE2 rip_ld32, \"mov emu_tram+0x430(%rip), %ecx\", "
	"\"mov 0(%rip), %ecx; RIPM 0x430\"\n"
	"\tCASE2 rip_ld8dh, \"mov emu_tram+0x431(%rip), %dh\", "
	"\"mov 0(%rip), %dh; RIPM 0x431\"\n"
	"\tCASE2 rip_st64, \"mov %rdx, emu_tram+0x438(%rip)\", "
	"\"mov %rdx, 0(%rip); RIPM 0x438\"\n"
	"\tCASE2 rip_imm8, \"movb $0x7f, emu_tram+0x440(%rip)\", "
	"\"movb $0x7f, 0(%rip); RIPM 0x440, 1\"\n"
	"\tCASE2 rip_imm32, \"movl $0x12345678, emu_tram+0x444(%rip)\", "
	"\"movl $0x12345678, 0(%rip); RIPM 0x444, 4\"\n"

	"\tCLASS movx\n"
	"\tCASE movzb32, movzbl 0x10(%rbx), %eax\n"
	"\tCASE movzb16, movzbw 0x11(%rbx), %cx\n"
	"\tCASE movzb64, movzbq 0x12(%rbx), %r8\n"
	"\tON r12; CASE movzb32r12, movzbl (%r12), %r9d\n"
	"\tCASE movzw32, movzwl 0x14(%rbx), %esi\n"
	"\tCASE movzw64, movzwq 0x16(%rbx), %rdx\n"
	"\tCASE movsb32, movsbl 0x18(%rbx), %eax\n"
	"\tCASE movsb16, movsbw 0x19(%rbx), %dx\n"
	"\tCASE movsb64, movsbq 0x1a(%rbx), %r10\n"
	"\tCASE movsw32, movswl 0x1c(%rbx), %ecx\n"
	"\tCASE movsw64, movswq 0x1e(%rbx), %r11\n"
	"\tON r9; CASE movsw32r9, movswl -0x2(%r9), %r13d\n"
	"\tCASE movsxd64, movslq 0x20(%rbx), %rax\n"
	"\tON r9; CASE movsxd64r9, movslq -0x24(%r9), %r13\n"
	"\tCASE movsxd32, movsxd 0x28(%rbx), %ecx\n"
	"\tCASE movsxd16, movsxd 0x2c(%rbx), %dx\n"

	"\tCLASS alu\n"
	"\tALU add, 0; ALU or, F_LOGIC; ALU adc, 0; ALU sbb, 0\n"
	"\tALU and, F_LOGIC; ALU sub, 0; ALU xor, F_LOGIC; ALU cmp, 0\n"
	"\tMASK F_LOGIC; CASE test_mr8, testb %cl, 0x10(%rbx)\n"
	"\tMASK F_LOGIC; CASE test_mr8ah, testb %ah, 0x11(%rbx)\n"
	"\tMASK F_LOGIC; CASE test_mr16, testw %dx, 0x12(%rbx)\n"
	"\tMASK F_LOGIC; CASE test_mr32, testl %r8d, 0x14(%rbx)\n"
	"\tMASK F_LOGIC; CASE test_mr64, testq %rsi, 0x18(%rbx)\n"
	"\tMASK F_LOGIC; CASE test_i8, testb $0x81, 0x20(%rbx)\n"
	"\tMASK F_LOGIC; CASE test_i16, testw $0x8001, 0x22(%rbx)\n"
	"\tMASK F_LOGIC; CASE test_i32, testl $0x80000001, 0x24(%rbx)\n"
	"\tMASK F_LOGIC; CASE test_i64, testq $-0x10, 0x28(%rbx)\n"
	"\tCASE2 rip_add32, \"addl $0x12345678, emu_tram+0x440(%rip)\", "
	"\"addl $0x12345678, 0(%rip); RIPM 0x440, 4\"\n"
	"\tCASE2 rip_sub8, \"subb %cl, emu_tram+0x448(%rip)\", "
	"\"subb %cl, 0(%rip); RIPM 0x448\"\n"
	"\tCASE2 rip_cmp16, \"cmpw $0x1234, emu_tram+0x44a(%rip)\", "
	"\"cmpw $0x1234, 0(%rip); RIPM 0x44a, 2\"\n"
	"\tMASK F_LOGIC; CASE2 rip_xor64, \"xorq emu_tram+0x450(%rip), %r12\", "
	"\"xorq 0(%rip), %r12; RIPM 0x450\"\n"

	"\tCLASS unary\n"
	"\tCASE incb, incb 0x10(%rbx)\n"
	"\tCASE incw, incw 0x12(%rbx)\n"
	"\tCASE incl, incl 0x14(%rbx)\n"
	"\tCASE incq, incq 0x18(%rbx)\n"
	"\tON r9; CASE decb, decb -0x1(%r9)\n"
	"\tON r9; CASE decw, decw -0x2(%r9)\n"
	"\tON r9; CASE decl, decl -0x8(%r9)\n"
	"\tON r9; CASE decq, decq -0x10(%r9)\n"
	"\tCASE negb, negb 0x20(%rbx)\n"
	"\tCASE negw, negw 0x22(%rbx)\n"
	"\tCASE negl, negl 0x24(%rbx)\n"
	"\tCASE negq, negq 0x28(%rbx)\n"
	"\tON r14; CASE notb, notb 0x30(%r14)\n"
	"\tON r14; CASE notw, notw 0x32(%r14)\n"
	"\tON r14; CASE notl, notl 0x34(%r14)\n"
	"\tON r14; CASE notq, notq 0x38(%r14)\n"

	"\tCLASS xchg\n"
	"\tCASE xchg8, xchg %cl, 0x10(%rbx)\n"
	"\tCASE xchg8ah, xchg %ah, 0x11(%rbx)\n"
	"\tCASE xchg16, xchg %dx, 0x12(%rbx)\n"
	"\tCASE xchg32, xchg %esi, 0x14(%rbx)\n"
	"\tCASE xchg64, xchg %r11, 0x18(%rbx)\n"
	"\tCASE xchg8r8, xchg 0x20(%rbx), %r8b\n"
	"\tCASE lock_add32, lock addl %ecx, 0x30(%rbx)\n"
	"\tMASK F_LOGIC; CASE lock_or64, lock orq $0x1234, 0x38(%rbx)\n"
	"\tMASK F_LOGIC; CASE lock_and16, lock andw %dx, 0x40(%rbx)\n"
	"\tMASK F_LOGIC; CASE lock_xor8, lock xorb $0x5a, 0x42(%rbx)\n"
	"\tCASE lock_adc64, lock adcq %r9, 0x48(%rbx)\n"
	"\tCASE lock_sbb8, lock sbbb %ah, 0x50(%rbx)\n"
	"\tCASE lock_sub16, lock subw $-5, 0x52(%rbx)\n"
	"\tCASE lock_inc64, lock incq 0x58(%rbx)\n"
	"\tCASE lock_dec8, lock decb 0x60(%rbx)\n"
	"\tCASE lock_neg32, lock negl 0x64(%rbx)\n"
	"\tCASE lock_not16, lock notw 0x68(%rbx)\n"
	"\tMASK F_BT; RANGE rcx, 4, -500, 500\n"
	"\tCASE lock_bts32, lock btsl %ecx, 0x70(%rbx)\n"
	"\tMASK F_BT; RANGE rdx, 2, -500, 500\n"
	"\tCASE lock_btr16, lock btrw %dx, 0x7c(%rbx)\n"
	"\tMASK F_BT; CASE lock_btc64, lock btcq $33, 0x78(%rbx)\n"

	"\tCLASS bt\n"
	"\tMASK F_BT; CASE bt32i, btl $5, 0x10(%rbx)\n"
	"\tMASK F_BT; CASE bt16i, btw $17, 0x12(%rbx)\n"
	"\tMASK F_BT; CASE bt64i, btq $63, 0x18(%rbx)\n"
	"\tMASK F_BT; CASE bts32i, btsl $40, 0x14(%rbx)\n"
	"\tMASK F_BT; CASE bts16i, btsw $3, 0x20(%rbx)\n"
	"\tMASK F_BT; CASE bts64i, btsq $35, 0x28(%rbx)\n"
	"\tMASK F_BT; CASE btr32i, btrl $31, 0x30(%rbx)\n"
	"\tMASK F_BT; CASE btr16i, btrw $15, 0x32(%rbx)\n"
	"\tMASK F_BT; CASE btr64i, btrq $0, 0x38(%rbx)\n"
	"\tMASK F_BT; CASE btc32i, btcl $7, 0x40(%rbx)\n"
	"\tMASK F_BT; CASE btc16i, btcw $9, 0x42(%rbx)\n"
	"\tMASK F_BT; CASE btc64i, btcq $62, 0x48(%rbx)\n"
	"\tMASK F_BT; RANGE rcx, 2, -1000, 1000; CASE bt16r, bt %cx, 0x20(%rbx)\n"
	"\tMASK F_BT; RANGE rdx, 4, -2000, 2000; CASE bt32r, bt %edx, 0x24(%rbx)\n"
	"\tMASK F_BT; RANGE rsi, 8, -2000, 2000; CASE bt64r, bt %rsi, 0x28(%rbx)\n"
	"\tMASK F_BT; RANGE rcx, 4, 0, 31; CASE bt32small, bt %ecx, 0x50(%rbx)\n"
	"\tMASK F_BT; RANGE rax, 2, -2000, 2000\n"
	"\tCASE bts16r, bts %ax, -0x20(%rbx)\n"
	"\tMASK F_BT; RANGE r8, 4, -2000, 2000\n"
	"\tCASE bts32r, bts %r8d, 0x10(%rbx)\n"
	"\tMASK F_BT; RANGE rcx, 8, -2000, 2000; ON r12\n"
	"\tCASE bts64r, bts %rcx, (%r12)\n"
	"\tMASK F_BT; RANGE r9, 8, -64, -1; CASE bts64neg, bts %r9, 0x58(%rbx)\n"
	"\tMASK F_BT; RANGE rdx, 2, -2000, 2000\n"
	"\tCASE btr16r, btr %dx, 0x8(%rbx)\n"
	"\tMASK F_BT; RANGE rsi, 4, -2000, 2000\n"
	"\tCASE btr32r, btr %esi, 0x30(%rbx)\n"
	"\tMASK F_BT; RANGE r10, 8, -2000, 2000\n"
	"\tCASE btr64r, btr %r10, -0x8(%rbx)\n"
	"\tMASK F_BT; RANGE r11, 2, -2000, 2000\n"
	"\tCASE btc16r, btc %r11w, 0x40(%rbx)\n"
	"\tMASK F_BT; RANGE rax, 4, -2000, 2000\n"
	"\tCASE btc32r, btc %eax, 0x44(%rbx)\n"
	"\tMASK F_BT; RANGE rdx, 8, -2000, 2000\n"
	"\tCASE btc64r, btc %rdx, 0x48(%rbx)\n"

	/* forwards from +0x100, backwards from +0x7f8 */
	"\tCLASS string\n"
	"\tSTRS A, T, 0x100; ITERS 8; CASE movsb_rm, movsb\n"
	"\tSTRS A, T, 0x100; ITERS 8; CASE movsw_rm, movsw\n"
	"\tSTRS A, T, 0x7f8, 1; ITERS 8; CASE movsl_rm, movsl\n"
	"\tSTRS A, T, 0x100; ITERS 8; CASE movsq_rm, movsq\n"
	"\tSTRS A, T, 0x100; COUNT 0; NONE; ITERS 2\n"
	"\tCASE rep_movsb_rm0, rep movsb\n"
	"\tSTRS A, T, 0x7f8, 1; COUNT 1; ITERS 4; CASE rep_movsw_rm1, rep movsw\n"
	"\tSTRS A, T, 0x100; COUNT 7; ITERS 4; CASE rep_movsl_rm7, rep movsl\n"
	"\tSTRS A, T, 0x100; COUNT 200; ITERS 2\n"
	"\tCASE rep_movsb_rm200, rep movsb\n"
	"\tSTRS A, T, 0x7f8, 1; COUNT 200; ITERS 2\n"
	"\tCASE rep_movsq_rm200, rep movsq\n"
	"\tSTRS A, T, 0x100; COUNT 70; ITERS 2\n"
	"\tCASE a32_rep_movsw_rm, addr32 rep movsw\n"
	"\tSTRS T, A, 0x7f8, 1; ITERS 8; CASE movsb_mr, movsb\n"
	"\tSTRS T, A, 0x100; ITERS 8; CASE movsw_mr, movsw\n"
	"\tSTRS T, A, 0x100; ITERS 8; CASE movsl_mr, movsl\n"
	"\tSTRS T, A, 0x7f8, 1; ITERS 8; CASE movsq_mr, movsq\n"
	"\tSTRS T, A, 0x7f8, 1; COUNT 0; NONE; ITERS 2\n"
	"\tCASE rep_movsq_mr0, rep movsq\n"
	"\tSTRS T, A, 0x100; COUNT 1; ITERS 4; CASE rep_movsl_mr1, rep movsl\n"
	"\tSTRS T, A, 0x7f8, 1; COUNT 130; ITERS 2\n"
	"\tCASE rep_movsw_mr130, rep movsw\n"
	"\tSTRS T, A, 0x100; COUNT 200; ITERS 2\n"
	"\tCASE rep_movsq_mr200, rep movsq\n"
	"\tSTRS T, A, 0x7f8, 1; COUNT 200; ITERS 2\n"
	"\tCASE rep_movsb_mr200, rep movsb\n"
	"\tSTRS T, A, 0x100; COUNT 33; ITERS 2\n"
	"\tCASE fs_rep_movsb_mr, rep movsb %fs:(%rsi), %es:(%rdi)\n"
	"\tSTRS N, T, 0x100; ITERS 8; CASE stosb, stosb\n"
	"\tSTRS N, T, 0x7f8, 1; ITERS 8; CASE stosw, stosw\n"
	"\tSTRS N, T, 0x100; ITERS 8; CASE stosl, stosl\n"
	"\tSTRS N, T, 0x100; ITERS 8; CASE stosq, stosq\n"
	"\tSTRS N, T, 0x100; COUNT 0; NONE; ITERS 2; CASE rep_stosb0, rep stosb\n"
	"\tSTRS N, T, 0x7f8, 1; COUNT 1; ITERS 4; CASE rep_stosq1, rep stosq\n"
	"\tSTRS N, T, 0x100; COUNT 65; ITERS 2; CASE rep_stosl65, rep stosl\n"
	"\tSTRS N, T, 0x100; COUNT 200; ITERS 2; CASE rep_stosb200, rep stosb\n"
	"\tSTRS N, T, 0x7f8, 1; COUNT 200; ITERS 2\n"
	"\tCASE rep_stosw200, rep stosw\n"
	"\tSTRS N, T, 0x7f8, 1; COUNT 200; ITERS 2\n"
	"\tCASE rep_stosq200, rep stosq\n"
	"\tSTRS T, N, 0x100; ITERS 8; CASE lodsb, lodsb\n"
	"\tSTRS T, N, 0x7f8, 1; ITERS 8; CASE lodsw, lodsw\n"
	"\tSTRS T, N, 0x100; ITERS 8; CASE lodsl, lodsl\n"
	"\tSTRS T, N, 0x7f8, 1; ITERS 8; CASE lodsq, lodsq\n"
	"\tSTRS T, N, 0x100; COUNT 0; NONE; ITERS 2; CASE rep_lodsw0, rep lodsw\n"
	"\tSTRS T, N, 0x100; COUNT 70; ITERS 2; CASE rep_lodsb70, rep lodsb\n"
	"\tSTRS T, A, 0x100; ITERS 8; CASE cmpsb_ms, cmpsb\n"
	"\tSTRS T, A, 0x7f8, 1; ITERS 8; CASE cmpsw_ms, cmpsw\n"
	"\tSTRS T, A, 0x100; ITERS 8; CASE cmpsl_ms, cmpsl\n"
	"\tSTRS T, A, 0x100; ITERS 8; CASE cmpsq_ms, cmpsq\n"
	"\tSTRS T, A, 0x100; COUNT 200; SCAN INIT_EQ1, 1; ITERS 4\n"
	"\tCASE repe_cmpsb_ms, repe cmpsb\n"
	"\tSTRS T, A, 0x7f8, 1; COUNT 150; SCAN INIT_EQ1, 8; ITERS 3\n"
	"\tCASE repe_cmpsq_ms, repe cmpsq\n"
	"\tSTRS T, A, 0x100; COUNT 100; SCAN INIT_NE1, 2; ITERS 3\n"
	"\tCASE repne_cmpsw_ms, repne cmpsw\n"
	"\tSTRS T, A, 0x100; COUNT 0; NONE; ITERS 2; CASE repe_cmpsl0_ms, repe cmpsl\n"
	"\tSTRS A, T, 0x100; ITERS 8; CASE cmpsb_md, cmpsb\n"
	"\tSTRS A, T, 0x7f8, 1; ITERS 8; CASE cmpsq_md, cmpsq\n"
	"\tSTRS A, T, 0x100; COUNT 200; SCAN INIT_EQ1, 2; ITERS 3\n"
	"\tCASE repe_cmpsw_md, repe cmpsw\n"
	"\tSTRS A, T, 0x7f8, 1; COUNT 200; SCAN INIT_NE1, 1; ITERS 3\n"
	"\tCASE repne_cmpsb_md, repne cmpsb\n"
	"\tSTRS A, T, 0x100; COUNT 1; ITERS 4; CASE repe_cmpsl1_md, repe cmpsl\n"
	"\tSTRS N, T, 0x100; ITERS 8; CASE scasb, scasb\n"
	"\tSTRS N, T, 0x100; ITERS 8; CASE scasw, scasw\n"
	"\tSTRS N, T, 0x7f8, 1; ITERS 8; CASE scasl, scasl\n"
	"\tSTRS N, T, 0x100; ITERS 8; CASE scasq, scasq\n"
	"\tSTRS N, T, 0x100; COUNT 200; FIX rax, " XSTR(FILL_5A) "\n"
	"\tSCAN INIT_F5A, 1; ITERS 3; CASE repe_scasb, repe scasb\n"
	"\tSTRS N, T, 0x7f8, 1; COUNT 200; FIX rax, " XSTR(FILL_5A) "\n"
	"\tSCAN INIT_N5A, 1; ITERS 3; CASE repne_scasb, repne scasb\n"
	"\tSTRS N, T, 0x7f8, 1; COUNT 100; FIX rax, " XSTR(FILL_5A) "\n"
	"\tSCAN INIT_F5A, 8; ITERS 3; CASE repe_scasq, repe scasq\n"
	"\tSTRS N, T, 0x100; COUNT 150; FIX rax, " XSTR(FILL_5A) "\n"
	"\tSCAN INIT_N5A, 2; ITERS 3; CASE repne_scasw, repne scasw\n"
	"\tSTRS N, T, 0x100; COUNT 0; FIX rax, " XSTR(FILL_5A) "\n"
	"\tNONE; ITERS 2; CASE repne_scasl0, repne scasl\n"

	"\tCLASS stack\n"
	"\tCASEQ push64, \"pushq 0x10(%rbx); popq %rax\"\n"
	"\tCASEQ push16, \"pushw 0x12(%rbx); popw %cx\"\n"
	"\tON r12; CASEQ push64r12, \"pushq (%r12); popq %r10\"\n"
	"\tFIX r14, 2; CASEQ push64sib, \"pushq 0x8(%rbx,%r14,8); popq %r15\"\n"
	"\tCASEQ pop64, \"pushq %rdx; popq 0x18(%rbx)\"\n"
	"\tCASEQ pop16, \"pushw %si; popw 0x20(%rbx)\"\n"
	"\tON r13; CASEQ pop64r13, \"pushq %r11; popq -0x8(%r13)\"\n"
	"\tCASE2 push_rip, \"pushq emu_tram+0x450(%rip); popq %rcx\", "
	"\"pushq 0(%rip); RIPM 0x450; popq %rcx\"\n"
	"\tCASE2 pop_rip, \"pushq %rdx; popq emu_tram+0x458(%rip)\", "
	"\"pushq %rdx; popq 0(%rip); RIPM 0x458\"\n"

	"\tCLASS movnti\n"
	"\tCASE movnti32, movnti %ecx, 0x10(%rbx)\n"
	"\tCASE movnti64, movnti %r9, 0x18(%rbx)\n"
	"\tCASE movnti32n, movnti %r10d, -0x4(%rbx)\n"
	"\tON r12; FIX r14, 3; CASE movnti64sib, movnti %rdx, (%r12,%r14,8)\n"

	"\tCLASS end\n"
	".popsection\n");

extern const struct ecase emu_class_mov[], emu_class_movx[], emu_class_alu[];
extern const struct ecase emu_class_unary[], emu_class_xchg[], emu_class_bt[];
extern const struct ecase emu_class_string[], emu_class_stack[];
extern const struct ecase emu_class_movnti[], emu_class_end[];

struct eclass {
	const char *name;
	const struct ecase *start, *end;
};

static const struct eclass classes64[] = {
	{ "MOV: 88-8B, C6/C7, A0-A3 moffs, RIP-relative, FS/GS",
	  emu_class_mov, emu_class_movx },
	{ "MOVZX, MOVSX, MOVSXD", emu_class_movx, emu_class_alu },
	{ "ADD OR ADC SBB AND SUB XOR CMP (00-3B, 80/81/83), TEST",
	  emu_class_alu, emu_class_unary },
	{ "INC DEC NEG NOT", emu_class_unary, emu_class_xchg },
	{ "XCHG; LOCK ADD OR ADC SBB AND SUB XOR INC DEC NEG NOT BTS BTR BTC",
	  emu_class_xchg, emu_class_bt },
	{ "BT BTS BTR BTC, immediate and register bit offsets",
	  emu_class_bt, emu_class_string },
	{ "MOVS STOS LODS CMPS SCAS, REP/REPE/REPNE, DF 0 and 1",
	  emu_class_string, emu_class_stack },
	{ "PUSH m, POP m", emu_class_stack, emu_class_movnti },
	{ "MOVNTI", emu_class_movnti, emu_class_end },
};

/* ---- the 64-bit guest ---- */

/* what the stubs load and store; RSP is only stored */
struct emu_state {
	uint64_t r[16];
	uint64_t fl;
};

/* one iteration's inputs: the registers first, as in emu_state */
struct emu_input {
	uint64_t r[16];
	uint64_t fl;
	uint8_t t[WIN] __attribute__((aligned(8)));
	uint8_t a[WIN] __attribute__((aligned(8)));
};

struct emu_state emu_st;
uint8_t emu_tram[WIN] __attribute__((aligned(4096)));	/* the RAM target */
static uint8_t g_aux[WIN] __attribute__((aligned(4096)));	/* RAM, always */
static uint8_t g_snap_t[WIN] __attribute__((aligned(64)));
static uint8_t g_snap_a[WIN] __attribute__((aligned(64)));
static struct emu_input g_in[2];	/* current and next */
static struct emu_state g_out[2];	/* RAM run, MMIO run */
static uint64_t g_seed;			/* set by the host */
static uint64_t g_rng;

/* guest -> host, read at each ucall */
static volatile struct {
	uint32_t idx, iter, cur;	/* case, iteration, g_in[cur] */
	uint32_t fill, check;		/* for SYNC_STEP */
	uint32_t what, reg;		/* for SYNC_FAIL */
	uint64_t ram, mmio, off;
} g_ctl;

static const uint64_t g_special[16] = {
	0, 1, 2, ~0ULL, ~0ULL - 1, 0x80, 0x7f, 0xff, 0x8000, 0x7fff,
	0x80000000, 0x7fffffff, 0xffffffff, 0x8000000000000000ULL,
	0x7fffffffffffffffULL, 0x0101010101010101ULL,
};

static GUEST_CODE uint64_t g_rand(void)
{
	uint64_t x = g_rng;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	g_rng = x;
	return x;
}

/* RAM to RAM in qwords, without a call the compiler may make up */
static GUEST_CODE void g_copy(void *dst, const void *src, uint64_t bytes)
{
	uint64_t n = bytes / 8;

	asm volatile("rep movsq"
		     : "+D" (dst), "+S" (src), "+c" (n) : : "memory");
}

static GUEST_CODE void g_fill(void *dst, uint64_t val, uint64_t bytes)
{
	uint64_t n = bytes / 8;

	asm volatile("rep stosq"
		     : "+D" (dst), "+c" (n) : "a" (val) : "memory");
}

/* iteration i % 4: 0, 2 random, 1 boundary values, 3 one value */
static GUEST_CODE uint64_t gen_val(unsigned int mode, uint64_t same)
{
	switch (mode) {
	case 1:
		return g_special[g_rand() & 15];
	case 3:
		return same;
	default:
		return g_rand();
	}
}

/* a bit offset in lo..hi, sign-extended from size bytes */
static GUEST_CODE uint64_t range_val(const struct ecase *c)
{
	uint64_t span = (uint64_t)(c->hi - c->lo + 1), mask;
	int64_t v = c->lo + (int64_t)(g_rand() % span);

	if (c->rsize >= 8)
		return (uint64_t)v;
	mask = (1ULL << (8 * c->rsize)) - 1;
	return (g_rand() & ~mask) | ((uint64_t)v & mask);
}

/* Where REPE/REPNE CMPS or SCAS stop: somewhere in or past the run. */
static GUEST_CODE void init_string(const struct ecase *c,
				   struct emu_input *in)
{
	uint64_t *t = (uint64_t *)in->t, *a = (uint64_t *)in->a;
	int64_t off = 0, cnt = 1, es = c->esize, lo, hi, ext;
	uint64_t pos;
	unsigned int k;

	for (k = 0; k < 2; k++) {
		if (c->preg[k] && c->area[k] == AREA_T)
			off = c->off[k];
		if (c->freg[k] == G_RCX + 1)
			cnt = (int64_t)c->fval[k];
	}
	if (c->df) {
		lo = off - (cnt - 1) * es;
		hi = off + es;
	} else {
		lo = off;
		hi = off + cnt * es;
	}
	ext = (hi - lo) / 8 + 1;
	lo = lo - ext < 0 ? 0 : lo - ext;
	hi = hi + ext > WIN ? WIN : hi + ext;
	pos = lo + g_rand() % (uint64_t)(hi - lo);

	switch (c->init) {
	case INIT_EQ1:
		g_copy(t, a, WIN);
		in->t[pos] ^= 1 + g_rand() % 255;
		break;
	case INIT_NE1:
		for (k = 0; k < WIN / 8; k++)
			t[k] = ~a[k];
		t[pos / 8] = a[pos / 8];
		break;
	case INIT_F5A:
		g_fill(t, FILL_5A, WIN);
		in->t[pos] ^= 1 + g_rand() % 255;
		break;
	case INIT_N5A:
		for (k = 0; k < WIN; k++)
			if (in->t[k] == 0x5a)
				in->t[k] = 0xa5;
		t[pos / 8] = FILL_5A;
		break;
	}
}

static GUEST_CODE void gen(const struct ecase *c, unsigned int i,
			   struct emu_input *in)
{
	uint64_t *t = (uint64_t *)in->t, *a = (uint64_t *)in->a;
	uint64_t same = i & 4 ? g_rand() : g_special[g_rand() & 15];
	unsigned int mode = i & 3, k;

	for (k = 0; k < 16; k++)
		in->r[k] = gen_val(mode, same);
	in->r[G_RSP] = 0;
	in->fl = 2 | (g_rand() & F_ARITH) | (c->df ? F_DF : 0);
	for (k = 0; k < WIN / 8; k++) {
		t[k] = gen_val(mode, same);
		a[k] = gen_val(mode, same);
	}
	for (k = 0; k < 2; k++)
		if (c->freg[k])
			in->r[c->freg[k] - 1] = c->fval[k];
	if (c->rreg)
		in->r[c->rreg - 1] = range_val(c);
	if (c->init)
		init_string(c, in);
}

static GUEST_CODE uint64_t area_base(unsigned int area, unsigned int mmio)
{
	if (area == AREA_A)
		return (uintptr_t)g_aux;
	return mmio ? MMIO_BASE : (uintptr_t)emu_tram;
}

static GUEST_CODE void run_one(const struct ecase *c,
			       const struct emu_input *in, unsigned int mmio)
{
	void (*fn)(void) = mmio && c->stub_mmio ? c->stub_mmio : c->stub;
	unsigned int k;

	g_copy(g_aux, in->a, WIN);
	if (!mmio)
		g_copy(emu_tram, in->t, WIN);
	g_copy(&emu_st, in, sizeof(emu_st));
	for (k = 0; k < 2; k++)
		if (c->preg[k])
			emu_st.r[c->preg[k] - 1] =
				area_base(c->area[k], mmio) + c->off[k];
	fn();
	g_copy(&g_out[mmio], &emu_st, sizeof(emu_st));
}

static GUEST_CODE void report(uint32_t what, uint32_t reg, uint64_t ram,
			      uint64_t mmio, uint64_t off)
{
	g_ctl.what = what;
	g_ctl.reg = reg;
	g_ctl.ram = ram;
	g_ctl.mmio = mmio;
	g_ctl.off = off;
	GUEST_SYNC(SYNC_FAIL);
}

static GUEST_CODE bool is_tptr(const struct ecase *c, unsigned int reg)
{
	return (c->preg[0] == reg + 1 && c->area[0] == AREA_T) ||
	       (c->preg[1] == reg + 1 && c->area[1] == AREA_T);
}

/* Registers and flags of the two runs, and the RAM they share. */
static GUEST_CODE void compare(const struct ecase *c)
{
	const uint64_t *x = (const uint64_t *)g_aux;
	const uint64_t *y = (const uint64_t *)g_snap_a;
	uint64_t mask = (c->mask ? c->mask : F_ARITH) | F_DF, v0, v1;
	unsigned int k;

	for (k = 0; k < 16; k++) {
		v0 = g_out[0].r[k];
		v1 = g_out[1].r[k];
		if (is_tptr(c, k)) {
			v0 -= (uintptr_t)emu_tram;
			v1 -= MMIO_BASE;
		}
		if (v0 != v1) {
			report(FAIL_REG, k, v0, v1, 0);
			return;
		}
	}
	if ((g_out[0].fl ^ g_out[1].fl) & mask) {
		report(FAIL_FLAGS, 0, g_out[0].fl, g_out[1].fl, mask);
		return;
	}
	for (k = 0; k < WIN / 8; k++) {
		if (x[k] != y[k]) {
			report(FAIL_AUX, 0, y[k], x[k], k * 8);
			return;
		}
	}
}

/*
 * Each SYNC_STEP has the host check the window against the RAM run just
 * done (check) and load it with the next inputs (fill).
 */
static GUEST_CODE void run_case(const struct ecase *c)
{
	unsigned int n = c->iters ? c->iters : ITERS, i;
	const struct emu_input *in;

	g_ctl.cur = 0;
	gen(c, 0, &g_in[1]);
	g_ctl.fill = 1;
	g_ctl.check = 0;
	GUEST_SYNC(SYNC_STEP);
	for (i = 0; i < n; i++) {
		g_ctl.cur ^= 1;
		g_ctl.iter = i;
		in = &g_in[g_ctl.cur];
		run_one(c, in, 0);
		g_copy(g_snap_t, emu_tram, WIN);
		g_copy(g_snap_a, g_aux, WIN);
		run_one(c, in, 1);
		compare(c);
		g_ctl.fill = i + 1 < n;
		if (g_ctl.fill)
			gen(c, i + 1, &g_in[!g_ctl.cur]);
		g_ctl.check = 1;
		GUEST_SYNC(SYNC_STEP);
	}
}

/* @arg: the class, and in bits 8 and up the case to start at */
static GUEST_CODE void guest_main(uint64_t arg)
{
	const struct eclass *k = &classes64[arg & 0xff];
	const struct ecase *c;

	g_rng = g_seed ^ ((arg + 1) * 0x9e3779b97f4a7c15ULL);
	if (!g_rng)
		g_rng = 1;
	for (c = k->start + (arg >> 8); c < k->end; c++) {
		g_ctl.idx = c - k->start;
		run_case(c);
	}
	GUEST_DONE();
}

/* ---- 32-bit protected mode and real mode guests ---- */

#define M_CODE		0x1000
#define M_IN		0x7000		/* eax ecx edx esi edi eflags */
#define M_AUX		0x8000
#define M_PM_T		0x9000
#define M_RES0		0xa000		/* the RAM run's records */
#define M_RES1		0xb000		/* the MMIO run's */
#define M_RM_TSEG	0x7000		/* ES and FS, RAM run */
#define M_RM_MSEG	0xc000		/* ES and FS, MMIO run */
#define M_LOW		0x80000		/* slot 0 */
#define REC		48
#define ROUNDS		4

/* a record: EM_SAVE's registers and EFLAGS, then what a step copied */
struct mrec {
	uint32_t r[6];
	uint8_t data[REC - 24];
};

/* classes, also by offset in the window: 0x100 each, strings from 0x500 */
#define MC_MOV		0
#define MC_MOVX		1
#define MC_ALU		2
#define MC_XCHG		3
#define MC_BT		4
#define MC_STR		5
#define MC_N		6

static const char *const mclass_names[MC_N] = {
	"MOV", "MOVZX/MOVSX",
	"ADD ADC SBB SUB CMP OR AND XOR TEST INC DEC NEG NOT",
	"XCHG", "BT BTS BTR BTC", "STOS MOVS LODS CMPS, REP",
};

#define M_ALL		(F_ARITH | F_DF)
#define M_LOG		(F_LOGIC | F_DF)
#define M_BT		(F_BT | F_DF)

/* A step, as EM_REC lays it out. */
struct mstep {
	const char *name;
	const unsigned char *code;	/* where it starts in the blob */
	uint16_t mask;
	uint8_t cls;
	uint8_t pad[5];
};

static_assert(sizeof(struct mstep) == 24, "EM_REC's layout");

/*
 * The steps, run twice: "P32 class, flags compared, instruction" loads
 * the inputs, executes the instruction and stores a record at EBP.
 * "S32 class, flags, s, d, name, code" does the same with quoted code,
 * and stores ESI (s = 1) or EDI (d = 1) less EBX, the target's base, or
 * EDI less EBP (d = 2), where it pointed into the record.  P16 and S16
 * are the real-mode steps; P16 sets BX to 0 first.  In 32-bit mode EBX
 * is the target, RAM or MMIO; in real mode ES and FS are, and DS = SS =
 * 0.  Setup code must not change the flags (MOV, not XOR).
 */
asm(".pushsection .rodata\n"
	".set EM_IN, " XSTR(M_IN) "\n"
	".set M_ALL, " XSTR(M_ALL) "; .set M_LOG, " XSTR(M_LOG) "\n"
	".set M_BT, " XSTR(M_BT) "\n"
	".set MC_MOV, " XSTR(MC_MOV) "; .set MC_MOVX, " XSTR(MC_MOVX) "\n"
	".set MC_ALU, " XSTR(MC_ALU) "; .set MC_XCHG, " XSTR(MC_XCHG) "\n"
	".set MC_BT, " XSTR(MC_BT) "; .set MC_STR, " XSTR(MC_STR) "\n"
	".macro EM_LD32\n"
	"\tmov EM_IN, %eax; mov EM_IN+4, %ecx; mov EM_IN+8, %edx\n"
	"\tmov EM_IN+12, %esi; mov EM_IN+16, %edi\n"
	"\tpushl EM_IN+20; popfl\n"
	".endm\n"
	".macro EM_LD16\n"
	"\tmov EM_IN, %eax; mov EM_IN+4, %ecx; mov EM_IN+8, %edx\n"
	"\tmov EM_IN+12, %esi; mov EM_IN+16, %edi\n"
	"\tpushw EM_IN+20; popfw\n"
	".endm\n"
	".macro EM_SAVE s=0, d=0\n"
	"\tpushfl\n"
	"\t.if \\s\n"
	"\tsub %ebx, %esi\n"
	"\t.endif\n"
	"\t.if \\d == 1\n"
	"\tsub %ebx, %edi\n"
	"\t.endif\n"
	"\t.if \\d == 2\n"
	"\tsub %ebp, %edi\n"
	"\t.endif\n"
	"\tmov %eax, 0(%ebp); mov %ecx, 4(%ebp); mov %edx, 8(%ebp)\n"
	"\tmov %esi, 12(%ebp); mov %edi, 16(%ebp); popl 20(%ebp)\n"
	"\tadd $" XSTR(REC) ", %ebp\n"
	".endm\n"
	".macro EM_REC cls, mask, name, start\n"
	"\t.pushsection .rodata.emu_text, \"a\"\n"
	"em_sn_\\@:\n"
	"\t.asciz \"\\name\"\n"
	"\t.popsection\n"
	"\t.pushsection .data.rel.ro.emu_steps, \"aw\"\n"
	"\t.quad em_sn_\\@, \\start\n"
	"\t.short \\mask\n"
	"\t.byte \\cls, 0, 0, 0, 0, 0\n"
	"\t.popsection\n"
	".endm\n"
	".macro P32 cls, mask, insn:vararg\n"
	"em_sc_\\@:\n"
	"\tEM_LD32\n"
	"\t\\insn\n"
	"\tEM_SAVE\n"
	"\tEM_REC \\cls, \\mask, \"\\insn\", em_sc_\\@\n"
	".endm\n"
	".macro S32 cls, mask, s, d, name, code\n"
	"em_sc_\\@:\n"
	"\tEM_LD32\n"
	"\t\\code\n"
	"\tEM_SAVE \\s, \\d\n"
	"\tEM_REC \\cls, \\mask, \"\\name\", em_sc_\\@\n"
	".endm\n"
	".macro P16 cls, mask, insn:vararg\n"
	"em_sc_\\@:\n"
	"\tEM_LD16\n"
	"\tmov $0, %bx\n"
	"\t\\insn\n"
	"\tEM_SAVE\n"
	"\tEM_REC \\cls, \\mask, \"\\insn\", em_sc_\\@\n"
	".endm\n"
	".macro S16 cls, mask, s, d, name, code\n"
	"em_sc_\\@:\n"
	"\tEM_LD16\n"
	"\t\\code\n"
	"\tEM_SAVE \\s, \\d\n"
	"\tEM_REC \\cls, \\mask, \"\\name\", em_sc_\\@\n"
	".endm\n"
	".macro EM_TABLE name\n"
	"\t.pushsection .data.rel.ro.emu_steps, \"aw\"\n"
	"\t.balign 8\n"
	"\t.globl \\name\n"
	"\\name:\n"
	"\t.popsection\n"
	".endm\n"

	"\tEM_TABLE em_pm_steps\n"
	".globl em_pm, em_pm_end, em_rm, em_rm_end\n"
	".code32\n"
	"em_pm:\n"
	"\tmov $" XSTR(M_PM_T) ", %ebx; mov $" XSTR(M_RES0) ", %ebp\n"
	"\tcall em_pm_body\n"
	"\tmov $" XSTR(MMIO_BASE) ", %ebx; mov $" XSTR(M_RES1) ", %ebp\n"
	"\tcall em_pm_body\n"
	"\thlt\n"
	"em_pm_body:\n"
	"\tP32 MC_MOV, M_ALL, mov %al, 0x10(%ebx)\n"
	"\tP32 MC_MOV, M_ALL, mov %cx, 0x12(%ebx)\n"
	"\tP32 MC_MOV, M_ALL, mov %edx, 0x14(%ebx)\n"
	"\tP32 MC_MOV, M_ALL, mov %ah, 0x18(%ebx)\n"
	"\tP32 MC_MOV, M_ALL, mov 0x20(%ebx), %cl\n"
	"\tP32 MC_MOV, M_ALL, mov 0x22(%ebx), %dx\n"
	"\tP32 MC_MOV, M_ALL, mov 0x24(%ebx), %esi\n"
	"\tP32 MC_MOV, M_ALL, mov 0x28(%ebx), %dh\n"
	"\tP32 MC_MOV, M_ALL, movb $0xa5, 0x30(%ebx)\n"
	"\tP32 MC_MOV, M_ALL, movw $0x1234, 0x32(%ebx)\n"
	"\tP32 MC_MOV, M_ALL, movl $0xdeadbeef, 0x34(%ebx)\n"
	"\tS32 MC_MOV, M_ALL, 0, 0, \"mov %ecx, 0x40(%ebx,%esi,4), ESI 3\", "
	"\"mov $3, %esi; mov %ecx, 0x40(%ebx,%esi,4)\"\n"
	"\tS32 MC_MOV, M_ALL, 0, 0, \"mov 0x50(%ebx,%edi,2), %ax, EDI 4\", "
	"\"mov $4, %edi; mov 0x50(%ebx,%edi,2), %ax\"\n"
	"\tP32 MC_MOVX, M_ALL, movzbl 0x100(%ebx), %eax\n"
	"\tP32 MC_MOVX, M_ALL, movzwl 0x102(%ebx), %ecx\n"
	"\tP32 MC_MOVX, M_ALL, movsbl 0x104(%ebx), %edx\n"
	"\tP32 MC_MOVX, M_ALL, movswl 0x106(%ebx), %esi\n"
	"\tP32 MC_MOVX, M_ALL, movzbw 0x108(%ebx), %di\n"
	"\tP32 MC_MOVX, M_ALL, movsbw 0x109(%ebx), %ax\n"
	"\tP32 MC_ALU, M_ALL, add %ecx, 0x200(%ebx)\n"
	"\tP32 MC_ALU, M_ALL, add %cl, 0x204(%ebx)\n"
	"\tP32 MC_ALU, M_ALL, add %dx, 0x206(%ebx)\n"
	"\tP32 MC_ALU, M_ALL, add 0x208(%ebx), %eax\n"
	"\tS32 MC_ALU, M_ALL, 0, 0, \"add %ecx, 0x240(%ebx): 0x7fffffff + 1\", "
	"\"movl $0x7fffffff, 0x240(%ebx); mov $1, %ecx; add %ecx, 0x240(%ebx)\"\n"
	"\tS32 MC_ALU, M_ALL, 0, 0, \"add %ecx, 0x244(%ebx): 0xffffffff + 1\", "
	"\"movl $0xffffffff, 0x244(%ebx); mov $1, %ecx; add %ecx, 0x244(%ebx)\"\n"
	"\tP32 MC_ALU, M_ALL, adc %ecx, 0x20c(%ebx)\n"
	"\tP32 MC_ALU, M_ALL, sub %edx, 0x210(%ebx)\n"
	"\tP32 MC_ALU, M_ALL, sbb 0x214(%ebx), %cx\n"
	"\tP32 MC_ALU, M_ALL, cmp %al, 0x216(%ebx)\n"
	"\tP32 MC_ALU, M_LOG, orl $0x80000001, 0x218(%ebx)\n"
	"\tP32 MC_ALU, M_LOG, orb $0x81, 0x21c(%ebx)\n"
	"\tP32 MC_ALU, M_LOG, orw $-2, 0x21e(%ebx)\n"
	"\tP32 MC_ALU, M_LOG, and %eax, 0x220(%ebx)\n"
	"\tP32 MC_ALU, M_LOG, xorl $0x5a5a, 0x224(%ebx)\n"
	"\tP32 MC_ALU, M_LOG, test %ecx, 0x228(%ebx)\n"
	"\tP32 MC_ALU, M_LOG, testb $0x81, 0x22c(%ebx)\n"
	"\tP32 MC_ALU, M_ALL, incl 0x230(%ebx)\n"
	"\tP32 MC_ALU, M_ALL, decw 0x234(%ebx)\n"
	"\tP32 MC_ALU, M_ALL, negb 0x236(%ebx)\n"
	"\tP32 MC_ALU, M_ALL, notl 0x238(%ebx)\n"
	"\tP32 MC_ALU, M_ALL, lock addl %edx, 0x23c(%ebx)\n"
	"\tP32 MC_XCHG, M_ALL, xchg %edx, 0x300(%ebx)\n"
	"\tP32 MC_XCHG, M_ALL, xchg %al, 0x304(%ebx)\n"
	"\tP32 MC_XCHG, M_ALL, xchg %cx, 0x306(%ebx)\n"
	"\tS32 MC_BT, M_BT, 0, 0, \"bts %ecx, 0x440(%ebx), ECX 345\", "
	"\"mov $345, %ecx; bts %ecx, 0x440(%ebx)\"\n"
	"\tS32 MC_BT, M_BT, 0, 0, \"btr %ecx, 0x440(%ebx), ECX -100\", "
	"\"mov $-100, %ecx; btr %ecx, 0x440(%ebx)\"\n"
	"\tS32 MC_BT, M_BT, 0, 0, \"bt %dx, 0x490(%ebx), DX 37\", "
	"\"mov $37, %dx; bt %dx, 0x490(%ebx)\"\n"
	"\tP32 MC_BT, M_BT, btsl $5, 0x480(%ebx)\n"
	"\tP32 MC_BT, M_BT, btcw $13, 0x484(%ebx)\n"
	"\tP32 MC_BT, M_BT, btrl $33, 0x494(%ebx)\n"
	"\tS32 MC_STR, M_ALL, 0, 1, \"rep stosb, 100 at +0x500\", "
	"\"lea 0x500(%ebx), %edi; mov $100, %ecx; rep stosb\"\n"
	"\tS32 MC_STR, M_ALL, 0, 1, \"rep movsw, 100 from RAM to +0x580\", "
	"\"mov $" XSTR(M_AUX) ", %esi; lea 0x580(%ebx), %edi; mov $100, %ecx; "
	"rep movsw\"\n"
	"\tS32 MC_STR, M_ALL, 1, 2, \"rep movsw, 12 from +0x700 to RAM\", "
	"\"lea 0x700(%ebx), %esi; lea 24(%ebp), %edi; mov $12, %ecx; "
	"rep movsw\"\n"
	"\tS32 MC_STR, M_ALL, 0, 1, \"std; rep stosl, 20 down from +0x7fc\", "
	"\"lea 0x7fc(%ebx), %edi; mov $20, %ecx; std; rep stosl\"\n"
	"\tS32 MC_STR, M_ALL, 1, 0, \"lodsl from +0x6f0\", "
	"\"lea 0x6f0(%ebx), %esi; lodsl\"\n"
	"\tS32 MC_STR, M_ALL, 1, 0, \"repe cmpsb, 8 of +0x6e0 with RAM\", "
	"\"lea 0x6e0(%ebx), %esi; mov $" XSTR(M_AUX) "+0x10, %edi; "
	"mov $8, %ecx; repe cmpsb\"\n"
	"\tS32 MC_STR, M_ALL, 0, 1, \"movsb from RAM to +0x6d0\", "
	"\"mov $" XSTR(M_AUX) "+0x20, %esi; lea 0x6d0(%ebx), %edi; movsb\"\n"
	"\tret\n"
	"em_pm_end:\n"

	"\tEM_TABLE em_rm_steps\n"
	".code16\n"
	"em_rm:\n"
	"\tmov $0, %ax; mov %ax, %ds; mov %ax, %ss\n"
	"\tmov $" XSTR(M_RM_TSEG) ", %ax; mov %ax, %es; mov %ax, %fs\n"
	"\tmov $" XSTR(M_RES0) ", %ebp\n"
	"\tcall em_rm_body\n"
	"\tmov $" XSTR(M_RM_MSEG) ", %ax; mov %ax, %es; mov %ax, %fs\n"
	"\tmov $" XSTR(M_RES1) ", %ebp\n"
	"\tcall em_rm_body\n"
	"\thlt\n"
	"em_rm_body:\n"
	"\tS16 MC_MOV, M_ALL, 0, 0, \"mov %al, %es:0x10(%bx,%si), BX 0x10 SI 4\", "
	"\"mov $0x10, %bx; mov $4, %si; mov %al, %es:0x10(%bx,%si)\"\n"
	"\tP16 MC_MOV, M_ALL, mov %cx, %es:0x30\n"
	"\tP16 MC_MOV, M_ALL, mov %edx, %es:0x34(%bx)\n"
	"\tS16 MC_MOV, M_ALL, 0, 0, \"mov %ah, %es:0x38(%bx,%di), BX 0 DI 2\", "
	"\"mov $0, %bx; mov $2, %di; mov %ah, %es:0x38(%bx,%di)\"\n"
	"\tS16 MC_MOV, M_ALL, 0, 0, \"mov %es:0x40(%bx,%si), %cl, BX 8 SI 1\", "
	"\"mov $8, %bx; mov $1, %si; mov %es:0x40(%bx,%si), %cl\"\n"
	"\tS16 MC_MOV, M_ALL, 0, 0, \"mov %es:0x44(%si), %dx, SI 2\", "
	"\"mov $2, %si; mov %es:0x44(%si), %dx\"\n"
	"\tS16 MC_MOV, M_ALL, 0, 0, \"mov %es:0x48(%bx,%si), %esi, BX 0 SI 0\", "
	"\"mov $0, %bx; mov $0, %si; mov %es:0x48(%bx,%si), %esi\"\n"
	"\tP16 MC_MOV, M_ALL, movb $0xa5, %es:0x50(%bx)\n"
	"\tP16 MC_MOV, M_ALL, movw $0x1234, %es:0x52(%bx)\n"
	"\tP16 MC_MOV, M_ALL, movl $0xdeadbeef, %es:0x54(%bx)\n"
	"\tP16 MC_MOV, M_ALL, mov %es:0x60, %ax\n"
	"\tP16 MC_MOV, M_ALL, mov %al, %es:0x62\n"
	"\tS16 MC_MOV, M_ALL, 0, 0, "
	"\"DS = ES; mov 0x70(%bx,%si), %eax; mov %ecx, 0x78(%bx,%si), SI 4\", "
	"\"push %ds; push %es; pop %ds; mov $0, %bx; mov $4, %si; "
	"mov 0x70(%bx,%si), %eax; mov %ecx, 0x78(%bx,%si); pop %ds\"\n"
	"\tS16 MC_MOV, M_ALL, 0, 0, "
	"\"mov %ecx, %es:0x80(%ebx,%esi,2), EBX 0x10 ESI 8\", "
	"\"mov $0x10, %ebx; mov $8, %esi; mov %ecx, %es:0x80(%ebx,%esi,2)\"\n"
	"\tP16 MC_MOV, M_ALL, mov %fs:0x90(%bx), %dx\n"
	"\tP16 MC_MOVX, M_ALL, movzbw %es:0x100(%bx), %ax\n"
	"\tS16 MC_MOVX, M_ALL, 0, 0, \"movzbl %es:0x101(%bx,%si), %ecx, SI 1\", "
	"\"mov $0, %bx; mov $1, %si; movzbl %es:0x101(%bx,%si), %ecx\"\n"
	"\tP16 MC_MOVX, M_ALL, movswl %es:0x104(%bx), %edx\n"
	"\tP16 MC_MOVX, M_ALL, movsbw %es:0x106(%bx), %di\n"
	"\tP16 MC_MOVX, M_ALL, movzwl %es:0x108(%bx), %esi\n"
	"\tS16 MC_MOVX, M_ALL, 0, 0, \"movsbl %es:0x10a(%di), %eax, DI 0\", "
	"\"mov $0, %di; movsbl %es:0x10a(%di), %eax\"\n"
	"\tS16 MC_ALU, M_ALL, 0, 0, \"add %cx, %es:0x200(%bx,%si), SI 4\", "
	"\"mov $0, %bx; mov $4, %si; add %cx, %es:0x200(%bx,%si)\"\n"
	"\tP16 MC_ALU, M_ALL, add %es:0x208(%bx), %dl\n"
	"\tP16 MC_ALU, M_ALL, addl %eax, %es:0x20c(%bx)\n"
	"\tP16 MC_ALU, M_ALL, adc %dx, %es:0x210(%bx)\n"
	"\tP16 MC_ALU, M_ALL, sbb %es:0x214(%bx), %al\n"
	"\tP16 MC_ALU, M_ALL, sub %ecx, %es:0x218(%bx)\n"
	"\tP16 MC_ALU, M_ALL, cmp %es:0x21c(%bx), %cx\n"
	"\tP16 MC_ALU, M_LOG, orw $0x1234, %es:0x220(%bx)\n"
	"\tP16 MC_ALU, M_LOG, orb $0x81, %es:0x222(%bx)\n"
	"\tP16 MC_ALU, M_LOG, orl $-2, %es:0x224(%bx)\n"
	"\tP16 MC_ALU, M_LOG, and %ah, %es:0x228(%bx)\n"
	"\tP16 MC_ALU, M_LOG, xorw $0x5a5a, %es:0x22a(%bx)\n"
	"\tP16 MC_ALU, M_LOG, test %edx, %es:0x22c(%bx)\n"
	"\tP16 MC_ALU, M_ALL, incw %es:0x230(%bx)\n"
	"\tP16 MC_ALU, M_ALL, decb %es:0x232(%bx)\n"
	"\tP16 MC_ALU, M_ALL, negl %es:0x234(%bx)\n"
	"\tP16 MC_ALU, M_ALL, notw %es:0x238(%bx)\n"
	"\tS16 MC_ALU, M_ALL, 0, 0, \"add %cx, %es:0x240(%bx): 0x7fff + 1\", "
	"\"mov $0, %bx; movw $0x7fff, %es:0x240(%bx); mov $1, %cx; "
	"add %cx, %es:0x240(%bx)\"\n"
	"\tS16 MC_ALU, M_ALL, 0, 0, \"add %cl, %es:0x244(%bx): 0xff + 1\", "
	"\"mov $0, %bx; movb $0xff, %es:0x244(%bx); mov $1, %cl; "
	"add %cl, %es:0x244(%bx)\"\n"
	"\tS16 MC_XCHG, M_ALL, 0, 0, \"xchg %dx, %es:0x300(%bx,%si), SI 2\", "
	"\"mov $0, %bx; mov $2, %si; xchg %dx, %es:0x300(%bx,%si)\"\n"
	"\tP16 MC_XCHG, M_ALL, xchg %al, %es:0x308(%bx)\n"
	"\tP16 MC_XCHG, M_ALL, xchg %ecx, %es:0x30c(%bx)\n"
	"\tS16 MC_BT, M_BT, 0, 0, \"bts %cx, %es:0x440(%bx), CX 300\", "
	"\"mov $0, %bx; mov $300, %cx; bts %cx, %es:0x440(%bx)\"\n"
	"\tS16 MC_BT, M_BT, 0, 0, \"btr %cx, %es:0x440(%bx), CX -50\", "
	"\"mov $0, %bx; mov $-50, %cx; btr %cx, %es:0x440(%bx)\"\n"
	"\tP16 MC_BT, M_BT, btsw $5, %es:0x480(%bx)\n"
	"\tP16 MC_BT, M_BT, btcl $33, %es:0x484(%bx)\n"
	"\tS16 MC_BT, M_BT, 0, 0, \"bt %edx, %es:0x490(%bx), EDX 70\", "
	"\"mov $0, %bx; mov $70, %edx; bt %edx, %es:0x490(%bx)\"\n"
	"\tS16 MC_STR, M_ALL, 0, 0, \"rep stosb, 100 at 0x500\", "
	"\"mov $0x500, %di; mov $100, %cx; rep stosb\"\n"
	"\tS16 MC_STR, M_ALL, 0, 0, \"rep movsw, 100 from RAM to 0x580\", "
	"\"mov $" XSTR(M_AUX) ", %si; mov $0x580, %di; mov $100, %cx; "
	"rep movsw\"\n"
	"\tS16 MC_STR, M_ALL, 0, 2, \"rep movsw %fs:(%si), 12 from 0x700 to RAM\", "
	"\"push %es; push %ds; pop %es; lea 24(%bp), %di; mov $0x700, %si; "
	"mov $12, %cx; rep movsw %fs:(%si), %es:(%di); pop %es\"\n"
	"\tS16 MC_STR, M_ALL, 0, 0, \"std; rep stosl, 20 down from 0x7fc\", "
	"\"mov $0x7fc, %di; mov $20, %cx; std; rep stosl\"\n"
	"\tS16 MC_STR, M_ALL, 0, 0, \"lods %es:(%si), %ax from 0x6f0\", "
	"\"mov $0x6f0, %si; lods %es:(%si), %ax\"\n"
	"\tS16 MC_STR, M_ALL, 0, 0, \"repe cmpsb, 8 of RAM with 0x6e0\", "
	"\"mov $" XSTR(M_AUX) "+0x10, %si; mov $0x6e0, %di; mov $8, %cx; "
	"repe cmpsb\"\n"
	"\tS16 MC_STR, M_ALL, 0, 0, \"movsb from RAM to 0x6d0\", "
	"\"mov $" XSTR(M_AUX) "+0x20, %si; mov $0x6d0, %di; movsb\"\n"
	"\tret\n"
	"em_rm_end:\n"
	".code64\n"
	"\tEM_TABLE em_steps_end\n"
	".popsection\n");

extern const unsigned char em_pm[], em_pm_end[], em_rm[], em_rm_end[];
extern const struct mstep em_pm_steps[], em_rm_steps[], em_steps_end[];

/* ---- the host ---- */

/* the device behind the window */
static struct {
	uint8_t dev[WIN];
	uint64_t base;
	unsigned long reads, writes, by_len[9];
	unsigned long since;		/* accesses since the last step */
	unsigned long by_cls[MC_N];	/* by offset, for the 16/32-bit */
} mm;

static volatile sig_atomic_t timed_out;

static void on_alarm(int sig)
{
	(void)sig;
	timed_out = 1;
}

static uint64_t h_rng;

static uint64_t h_rand(void)
{
	h_rng ^= h_rng << 13;
	h_rng ^= h_rng >> 7;
	h_rng ^= h_rng << 17;
	return h_rng;
}

static const char *const reg_names[16] = {
	"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
	"r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
};

static void mmio_reset(uint64_t base)
{
	memset(&mm, 0, sizeof(mm));
	mm.base = base;
}

/* Answer an MMIO exit from the array; false if it is no access of ours. */
static bool mmio_serve(struct kvm_run *run, char *why, size_t len)
{
	uint64_t a = run->mmio.phys_addr, off;
	uint32_t n = run->mmio.len;
	const char *rw = run->mmio.is_write ? "write" : "read";

	if (n != 1 && n != 2 && n != 4 && n != 8) {
		snprintf(why, len, "an MMIO %s of %u bytes at %#llx", rw, n,
			 (unsigned long long)a);
		return false;
	}
	if (a < mm.base || a + n > mm.base + WIN) {
		snprintf(why, len,
			 "an MMIO %s of %u bytes at %#llx, outside the window %#llx-%#llx",
			 rw, n, (unsigned long long)a,
			 (unsigned long long)mm.base,
			 (unsigned long long)mm.base + WIN - 1);
		return false;
	}
	off = a - mm.base;
	if (run->mmio.is_write) {
		memcpy(mm.dev + off, run->mmio.data, n);
		mm.writes++;
	} else {
		memcpy(run->mmio.data, mm.dev + off, n);
		mm.reads++;
	}
	mm.by_len[n]++;
	mm.since++;
	mm.by_cls[off >> 8 < MC_STR ? off >> 8 : MC_STR]++;
	return true;
}

/* Why a run stopped where it should not have. */
static void exit_why(struct kvm_run *run, int err, char *why, size_t len)
{
	unsigned int i, n;
	int k;

	if (timed_out) {
		snprintf(why, len, "no end after %d s", TIMEOUT_S);
	} else if (run->exit_reason == EXIT_NONE) {
		snprintf(why, len, "KVM_RUN: %s", strerror(err));
	} else if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR) {
		k = snprintf(why, len, "exit INTERNAL_ERROR, suberror %u, ndata %u",
			     run->internal.suberror, run->internal.ndata);
		n = run->internal.ndata < 4 ? run->internal.ndata : 4;
		for (i = 0; i < n && k > 0 && (size_t)k < len; i++)
			k += snprintf(why + k, len - k, "%s%#llx",
				      i ? " " : ": ",
				      (unsigned long long)run->internal.data[i]);
		if (k > 0 && (size_t)k < len)
			snprintf(why + k, len - k, "%s", lost_state_note(run));
	} else if (run->exit_reason == KVM_EXIT_IO) {
		snprintf(why, len, "exit IO, port %#x, size %u, %s",
			 run->io.port, run->io.size,
			 run->io.direction == KVM_EXIT_IO_OUT ? "out" : "in");
	} else {
		snprintf(why, len, "exit %s (%u)", exit_name(run->exit_reason),
			 run->exit_reason);
	}
}

/* ---- the 64-bit classes ---- */

static struct {
	const struct eclass *k;
	unsigned int n, fails, failed_cases, last_failed;
} h;

static void show_inputs(const struct ecase *c, const struct emu_input *in)
{
	char buf[600];
	unsigned int r, j;
	int n = 0;

	for (r = 0; r < 16 && n >= 0 && n < (int)sizeof(buf); r++) {
		const char *area = NULL;
		int off = 0;

		if (r == G_RSP)
			continue;
		for (j = 0; j < 2; j++) {
			if (c->preg[j] == r + 1) {
				area = c->area[j] == AREA_T ? "target" : "aux";
				off = c->off[j];
			}
		}
		if (area)
			n += snprintf(buf + n, sizeof(buf) - n, " %s=%s+%#x",
				      reg_names[r], area, off);
		else
			n += snprintf(buf + n, sizeof(buf) - n, " %s=%#llx",
				      reg_names[r],
				      (unsigned long long)in->r[r]);
	}
	tap_diag("  inputs:%s rflags=%#llx", buf, (unsigned long long)in->fl);
}

/* A difference in the current case and value: count it, maybe show it. */
static __printf(1, 2) void case_fail(const char *fmt, ...)
{
	const struct ecase *c = &h.k->start[g_ctl.idx];
	char msg[400];
	va_list ap;

	if (h.last_failed != g_ctl.idx + 1) {
		h.failed_cases++;
		h.last_failed = g_ctl.idx + 1;
	}
	if (h.fails++ >= MAX_DIAGS)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	tap_diag("64-bit `%s`, value %u: %s", c->text, g_ctl.iter, msg);
	show_inputs(c, &g_in[g_ctl.cur]);
}

/* SYNC_STEP: check the window after the MMIO run, load the next inputs. */
static void host_step(void)
{
	const struct ecase *c = &h.k->start[g_ctl.idx];
	const struct emu_input *in = &g_in[g_ctl.cur];
	uint64_t x, y, z;
	unsigned int off;

	if (g_ctl.check) {
		if (!c->none && !mm.since)
			case_fail("no MMIO access: the operand never reached the window");
		if (c->none && mm.since)
			case_fail("%lu MMIO accesses where there should be none",
				  mm.since);
		for (off = 0; off < WIN && mm.dev[off] == g_snap_t[off]; off++)
			;
		if (off < WIN) {
			off &= ~7u;
			memcpy(&x, g_snap_t + off, 8);
			memcpy(&y, mm.dev + off, 8);
			memcpy(&z, in->t + off, 8);
			case_fail("target+%#x: RAM run %016llx, MMIO run %016llx, was %016llx",
				  off, (unsigned long long)x,
				  (unsigned long long)y, (unsigned long long)z);
		}
	}
	if (g_ctl.fill)
		memcpy(mm.dev, g_in[!g_ctl.cur].t, WIN);
	mm.since = 0;
}

/* SYNC_FAIL: the guest saw the runs differ. */
static void host_fail(void)
{
	const struct ecase *c = &h.k->start[g_ctl.idx];
	const char *rel = "";
	unsigned int j;

	switch (g_ctl.what) {
	case FAIL_REG:
		for (j = 0; j < 2; j++)
			if (c->preg[j] == g_ctl.reg + 1 && c->area[j] == AREA_T)
				rel = " (less the target's base)";
		case_fail("%s: RAM run %#llx, MMIO run %#llx%s",
			  reg_names[g_ctl.reg & 15],
			  (unsigned long long)g_ctl.ram,
			  (unsigned long long)g_ctl.mmio, rel);
		break;
	case FAIL_FLAGS:
		case_fail("RFLAGS: RAM run %#llx, MMIO run %#llx (compared %#llx)",
			  (unsigned long long)g_ctl.ram,
			  (unsigned long long)g_ctl.mmio,
			  (unsigned long long)g_ctl.off);
		break;
	default:
		case_fail("RAM at aux+%#llx: RAM run %016llx, MMIO run %016llx",
			  (unsigned long long)g_ctl.off,
			  (unsigned long long)g_ctl.ram,
			  (unsigned long long)g_ctl.mmio);
		break;
	}
}

/*
 * Run the class's cases from @first in one VM.  True when they are all
 * done; false when the VM could not go on, with *next the case to start
 * the next VM at (past the one it stopped in).
 */
static bool run64(const char *dev, unsigned int cls, unsigned int first,
		  unsigned int *next)
{
	struct guest_vm g;
	struct kvm_sregs s;
	struct kvm_run *run;
	struct ucall uc;
	enum ucall_cmd cmd;
	char why[300];
	unsigned long exits;
	bool ok = true;
	int err;

	g_ctl.idx = first;
	if (!x86_guest_create(&g, dev, guest_main, cls | first << 8)) {
		tap_diag("64-bit: cannot set up a VM");
		h.failed_cases++;
		*next = h.n;
		return false;
	}
	if (ioctl(g.vcpu.fd, KVM_GET_SREGS, &s) == 0) {
		s.fs.base = FS_BASE;
		s.gs.base = GS_BASE;
		ioctl(g.vcpu.fd, KVM_SET_SREGS, &s);
	}
	run = g.vcpu.run;
	timed_out = 0;
	alarm(TIMEOUT_S);
	for (exits = 0; ok; exits++) {
		if (exits > MAX_EXITS) {
			snprintf(why, sizeof(why), "over %d exits", MAX_EXITS);
			ok = false;
			break;
		}
		run->exit_reason = EXIT_NONE;
		errno = 0;
		cmd = guest_run(&g, &uc);
		err = errno;
		if (cmd == UCALL_SYNC && uc.arg == SYNC_STEP) {
			host_step();
		} else if (cmd == UCALL_SYNC) {
			host_fail();
		} else if (cmd == UCALL_DONE) {
			break;
		} else if (cmd == UCALL_ASSERT) {
			snprintf(why, sizeof(why), "guest: %s, arg %llu, at %s:%llu (%#llx)",
				 uc.expr ? uc.expr : "?",
				 (unsigned long long)uc.arg,
				 uc.file ? uc.file : "?",
				 (unsigned long long)uc.line,
				 (unsigned long long)uc.line);
			ok = false;
		} else if (run->exit_reason == KVM_EXIT_MMIO && !timed_out) {
			ok = mmio_serve(run, why, sizeof(why));
		} else {
			exit_why(run, err, why, sizeof(why));
			ok = false;
		}
	}
	alarm(0);
	guest_vm_destroy(&g);
	if (ok)
		return true;
	/* the case it stopped in fails: show why, go on after it */
	*next = g_ctl.idx + 1;
	if (h.last_failed != g_ctl.idx + 1) {
		h.failed_cases++;
		h.last_failed = g_ctl.idx + 1;
	}
	if (h.fails++ < MAX_DIAGS)
		tap_diag("64-bit `%s`, value %u: %s",
			 g_ctl.idx < h.n ? h.k->start[g_ctl.idx].text : "-",
			 g_ctl.iter, why);
	return false;
}

static void run_class64(const char *dev, unsigned int cls)
{
	const struct eclass *k = &classes64[cls];
	unsigned int first = 0, next, vms = 0;

	memset(&h, 0, sizeof(h));
	h.k = k;
	h.n = k->end - k->start;
	mmio_reset(MMIO_BASE);
	while (first < h.n && !run64(dev, cls, first, &next)) {
		first = next;
		if (++vms == MAX_VMS && first < h.n) {
			tap_diag("%u VMs stopped: the last %u cases not run",
				 vms, h.n - first);
			h.failed_cases += h.n - first;
			break;
		}
	}
	if (h.fails > MAX_DIAGS)
		tap_diag("(%u more differences not shown)", h.fails - MAX_DIAGS);
	tap_diag("%u cases, %lu MMIO reads and %lu writes (of 1/2/4/8 bytes: %lu/%lu/%lu/%lu)",
		 h.n, mm.reads, mm.writes, mm.by_len[1], mm.by_len[2],
		 mm.by_len[4], mm.by_len[8]);
	tap_ok(!h.failed_cases, "64-bit: %s on MMIO as on RAM (%u of %u cases differ)",
	       k->name, h.failed_cases, h.n);
}

/* ---- the 16- and 32-bit modes ---- */

#define MAX_STEPS	64

static struct {
	bool rm;
	const char *mode;
	const struct mstep *st;
	unsigned int n;				/* steps */
	const unsigned char *blob, *end;
	unsigned int fails[MC_N];
	bool skip[MAX_STEPS];			/* steps that stopped a VM */
	bool broken;				/* no use going on */
} hm;

static __printf(2, 3) void mode_fail(unsigned int cls, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	if (hm.fails[cls]++ >= MAX_DIAGS)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	tap_diag("%s", msg);
}

/* Run the guest to its HLT, serving the window. */
static bool mode_run(struct vcpu *vcpu, char *why, size_t len)
{
	struct kvm_run *run = vcpu->run;
	unsigned long exits;
	bool ok = true;
	int err;

	timed_out = 0;
	alarm(TIMEOUT_S);
	for (exits = 0; ok; exits++) {
		if (exits > MAX_EXITS) {
			snprintf(why, len, "over %d exits", MAX_EXITS);
			ok = false;
			break;
		}
		run->exit_reason = EXIT_NONE;
		errno = 0;
		err = vcpu_run(vcpu) ? errno : 0;
		if (!err && !timed_out && run->exit_reason == KVM_EXIT_HLT)
			break;
		if (!err && !timed_out && run->exit_reason == KVM_EXIT_MMIO) {
			ok = mmio_serve(run, why, len);
		} else {
			exit_why(run, err, why, len);
			ok = false;
		}
	}
	alarm(0);
	return ok;
}

/* The records of the two runs, and the target's memory. */
static void mode_compare(unsigned int round, const uint8_t *low,
			 const uint8_t *t)
{
	static const char *const fields[6] = {
		"eax", "ecx", "edx", "esi", "edi", "eflags",
	};
	bool seen[MC_N] = { false };
	unsigned int i, k, off, cls;
	struct mrec a, b;

	for (k = 0; k < hm.n; k++) {
		const struct mstep *s = &hm.st[k];

		memcpy(&a, low + M_RES0 + REC * k, REC);
		memcpy(&b, low + M_RES1 + REC * k, REC);
		for (i = 0; i < 6; i++) {
			uint32_t m = i == 5 ? s->mask : ~0u;

			if ((a.r[i] ^ b.r[i]) & m) {
				mode_fail(s->cls,
					  "%s `%s` (round %u): %s: RAM run %#x, MMIO run %#x",
					  hm.mode, s->name, round, fields[i],
					  a.r[i], b.r[i]);
				break;
			}
		}
		if (i == 6 && memcmp(a.data, b.data, sizeof(a.data)))
			mode_fail(s->cls,
				  "%s `%s` (round %u): what it copied to RAM differs",
				  hm.mode, s->name, round);
	}
	for (off = 0; off < WIN; off++) {
		cls = off >> 8 < MC_STR ? off >> 8 : MC_STR;
		if (t[off] == mm.dev[off] || seen[cls])
			continue;
		seen[cls] = true;
		mode_fail(cls, "%s, round %u: memory at target+%#x: RAM run %#04x, MMIO run %#04x",
			  hm.mode, round, off, t[off], mm.dev[off]);
	}
	for (cls = 0; cls < MC_N; cls++)
		if (!mm.by_cls[cls] && !hm.fails[cls])
			mode_fail(cls, "%s, round %u: %s made no MMIO access",
				  hm.mode, round, mclass_names[cls]);
}

/* Where step k's code ends: at the next step, or at the body's RET. */
static unsigned long step_end(unsigned int k)
{
	if (k + 1 < hm.n)
		return hm.st[k + 1].code - hm.blob;
	return hm.end - 1 - hm.blob;
}

/* The step whose code holds guest address @rip, or -1. */
static int step_at(uint64_t rip)
{
	uint64_t off = rip - M_CODE;
	unsigned int k;

	for (k = 0; k < hm.n; k++)
		if (off >= (uint64_t)(hm.st[k].code - hm.blob) &&
		    off < step_end(k))
			return k;
	return -1;
}

/*
 * Have step k jump over itself, its record (left empty in both runs)
 * included: ADD $REC, %EBP; JMP to the next step.
 */
static void skip_step(uint8_t *code, unsigned int k)
{
	uint8_t *p = code + (hm.st[k].code - hm.blob);
	unsigned int imm = hm.rm ? 2 : 4;
	int32_t rel;

	if (hm.rm)
		*p++ = 0x66;
	*p++ = 0x83;
	*p++ = 0xc5;
	*p++ = REC;
	*p++ = 0xe9;
	rel = step_end(k) - (p + imm - code);
	memcpy(p, &rel, imm);
}

/*
 * One round in a new VM: new inputs and memory, both runs, compare.
 * False when the MMIO run stopped in a step: that step's class fails,
 * and the round is to be run again with the step skipped.
 */
static bool mode_round(const char *dev, unsigned int round)
{
	uint64_t t_gpa = hm.rm ? (uint64_t)M_RM_TSEG << 4 : M_PM_T;
	struct kvm_regs regs;
	struct vcpu vcpu;
	struct vm vm;
	uint8_t *low, *t;
	uint32_t v;
	char why[300];
	unsigned int i;
	bool done = true;
	int k;

	if (!vm_create(&vm, dev)) {
		hm.broken = true;
		return true;
	}
	low = vm_add_memory(&vm, 0, 0, M_LOW);
	if (!low || !vcpu_create(&vm, &vcpu, 0)) {
		tap_diag("%s: cannot set up a VM", hm.mode);
		vm_destroy(&vm);
		hm.broken = true;
		return true;
	}
	memcpy(low + M_CODE, hm.blob, hm.end - hm.blob);
	for (i = 0; i < hm.n; i++)
		if (hm.skip[i])
			skip_step(low + M_CODE, i);
	t = low + t_gpa;
	for (i = 0; i < 6; i++) {
		v = h_rand();
		if (i == 5)
			v = 2 | (v & F_ARITH);
		memcpy(low + M_IN + 4 * i, &v, 4);
	}
	for (i = 0; i < WIN; i++) {
		t[i] = h_rand();
		low[M_AUX + i] = h_rand();
	}
	/* for REPE CMPSB: five bytes equal, then one not */
	memcpy(low + M_AUX + 0x10, t + 0x6e0, 5);
	low[M_AUX + 0x15] = ~t[0x6e5];
	mmio_reset(hm.rm ? (uint64_t)M_RM_MSEG << 4 : MMIO_BASE);
	memcpy(mm.dev, t, WIN);
	if (hm.rm)
		vcpu_real_mode(&vcpu, M_CODE);
	else
		vcpu_prot_mode(&vcpu, M_CODE, 0x11, 0, 0);

	if (mode_run(&vcpu, why, sizeof(why))) {
		memset(&regs, 0, sizeof(regs));
		ioctl(vcpu.fd, KVM_GET_REGS, &regs);
		if (regs.rbp == M_RES1 + (uint64_t)REC * hm.n) {
			mode_compare(round, low, t);
			goto out;
		}
		snprintf(why, sizeof(why), "the guest halted with EBP %#llx, not %#llx",
			 (unsigned long long)regs.rbp,
			 (unsigned long long)M_RES1 + REC * hm.n);
	}
	memset(&regs, 0, sizeof(regs));
	ioctl(vcpu.fd, KVM_GET_REGS, &regs);
	k = step_at(regs.rip);
	if (k < 0 || hm.skip[k]) {
		tap_diag("%s, round %u: %s (RIP %#llx)", hm.mode, round, why,
			 (unsigned long long)regs.rip);
		hm.broken = true;
	} else {
		mode_fail(hm.st[k].cls, "%s `%s` (round %u): %s", hm.mode,
			  hm.st[k].name, round, why);
		hm.skip[k] = true;
		done = false;
	}
out:
	vcpu_destroy(&vm, &vcpu);
	vm_destroy(&vm);
	munmap(low, M_LOW);
	return done;
}

static void run_mode(const char *dev, bool rm)
{
	unsigned int round, cls, k, steps;

	memset(&hm, 0, sizeof(hm));
	hm.rm = rm;
	hm.mode = rm ? "real mode" : "32-bit";
	hm.st = rm ? em_rm_steps : em_pm_steps;
	hm.n = rm ? em_steps_end - em_rm_steps : em_rm_steps - em_pm_steps;
	hm.blob = rm ? em_rm : em_pm;
	hm.end = rm ? em_rm_end : em_pm_end;
	hm.broken = hm.n > MAX_STEPS;
	h_rng = g_seed ^ (rm ? 0x1616 : 0x3232);
	if (!h_rng)
		h_rng = 1;
	/* each VM but the last of a round skips one more step: it ends */
	for (round = 0; round < ROUNDS && !hm.broken; round++)
		while (!mode_round(dev, round) && !hm.broken)
			;
	for (cls = 0; cls < MC_N; cls++) {
		for (steps = 0, k = 0; k < hm.n; k++)
			steps += hm.st[k].cls == cls;
		if (hm.fails[cls] > MAX_DIAGS)
			tap_diag("(%u more differences not shown)",
				 hm.fails[cls] - MAX_DIAGS);
		tap_ok(!hm.broken && !hm.fails[cls],
		       "%s: %s on MMIO as on RAM (%u steps, %u rounds)",
		       rm ? "real mode" : "32-bit protected mode",
		       mclass_names[cls], steps, ROUNDS);
	}
}

int main(int argc, char **argv)
{
	const char *dev = test_device(argc, argv);
	struct sigaction sa;
	struct vm vm;
	unsigned int i;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;	/* no SA_RESTART: KVM_RUN returns */
	sigaction(SIGALRM, &sa, NULL);
	g_seed = argc > 2 ? strtoull(argv[2], NULL, 0) : SEED;

	tap_plan(ARRAY_SIZE(classes64) + 2 * MC_N);
	tap_diag("device %s, seed %#llx (the second argument sets it)", dev,
		 (unsigned long long)g_seed);
	if (!vm_create(&vm, dev))
		tap_bail("cannot create a VM on %s", dev);
	vm_destroy(&vm);
	if (!guest_image_writable())
		tap_bail("the test's image cannot be the guest's memory");
	for (i = 0; i < ARRAY_SIZE(classes64); i++)
		run_class64(dev, i);
	run_mode(dev, false);
	run_mode(dev, true);
	tap_done();
}
