// SPDX-License-Identifier: GPL-2.0-only
/*
 * Four vCPUs and the in-kernel irqchip, each vCPU on a thread of its
 * own.  Only the BSP gets registers; it wakes the APs the way firmware
 * does, INIT then SIPI twice to a trampoline at 0x8000 that takes each
 * AP from real mode to long mode.  The APs check in with LOCK XADD, halt
 * until an IPI wakes them, then every vCPU sends a fixed IPI to every
 * other by physical APIC ID and expects one from each; then the BSP sends
 * a broadcast (all excluding self) and a logical flat-model IPI.  Every
 * wait in the guests is a HLT that only an IPI ends.
 *
 * Two IPIs of one vector that reach an APIC before it took the first
 * become one (one IRR bit), as on hardware: each sender in the exchange
 * has a vector of its own, and the wake-ups are not counted.
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "lib/guest.h"
#include "lib/tap.h"
#include "lib/x86.h"

#define NR_VCPUS	4
#define NR_APS		(NR_VCPUS - 1)
#define RUN_MS		20000
#define LOW_SIZE	0x10000
#define TRAMP		0x8000		/* the SIPI vector is its page */
#define AP_STACK	16384
#define LOGICAL_DEST	0x0a		/* flat model: APIC IDs 1 and 3 */

/* the kinds of IPI, one vector each */
enum { K_NOTIFY, K_IPI, K_BCAST, K_LOGICAL, K_NR };
#define VEC_NOTIFY	0x41	/* "look at shared memory again" */
#define VEC_IPI		0x50	/* + sender: every vCPU to every other */
#define VEC_BCAST	0x60
#define VEC_LOGICAL	0x70

/* Written by the guests, read by the host when they are done */
static volatile struct {
	uint32_t bsp_id;
	uint32_t checkin;		/* APs, by LOCK XADD */
	uint32_t ap_id[NR_APS];		/* APIC ID + 1, in check-in order */
	uint32_t phase;			/* BSP: 1 exchange, 2 finish */
	uint32_t ready;			/* APs through the exchange */
	uint32_t halts[NR_VCPUS];	/* HLTs of each AP before phase 1 */
	uint32_t got[K_NR][NR_VCPUS];	/* IPIs taken, by APIC ID */
	uint32_t from[NR_VCPUS][NR_VCPUS];	/* exchange: [to][from] */
} smp;

static uint8_t ap_stacks[NR_VCPUS][AP_STACK] __attribute__((aligned(16)));

/* The trampoline's parameters, filled in by the host */
struct tramp_params {
	uint16_t gdt_limit;
	uint32_t gdt_base;
	uint16_t pad0;
	uint32_t cr3;
	uint32_t pad1;
	uint64_t stack_base;	/* APIC ID i: RSP = base + (i + 1) * size */
	uint64_t stack_size;
	uint64_t entry;		/* called with the APIC ID in RDI */
} __attribute__((packed));

extern const char smp_tramp[], smp_tramp_end[], tramp_params[];

/*
 * Copied to TRAMP (CS base after the SIPI); offsets into it are label
 * differences.  Real mode straight to long mode: PAE, CR3, EFER.LME,
 * then PE and PG together and a far jump to the 64-bit code segment.
 * APIC IDs above 3 have no stack and stop.
 */
asm("	.pushsection .rodata\n"
"	.globl	smp_tramp, smp_tramp_end, tramp_params\n"
"	.code16\n"
"smp_tramp:\n"
"	cli\n"
"	mov	%cs, %ax\n"
"	mov	%ax, %ds\n"
"	lgdtl	tramp_params - smp_tramp\n"
"	mov	$0x20, %eax\n"
"	mov	%eax, %cr4\n"
"	mov	tramp_params - smp_tramp + 8, %eax\n"
"	mov	%eax, %cr3\n"
"	mov	$0xc0000080, %ecx\n"
"	rdmsr\n"
"	or	$0x100, %eax\n"
"	wrmsr\n"
"	mov	%cr0, %eax\n"
"	and	$0x9fffffff, %eax\n"
"	or	$0x80000001, %eax\n"
"	mov	%eax, %cr0\n"
"	ljmpl	$0x08, $(0x8000 + tramp64 - smp_tramp)\n"
"	.code64\n"
"tramp64:\n"
"	mov	$0x10, %eax\n"
"	mov	%eax, %ds\n"
"	mov	%eax, %es\n"
"	mov	%eax, %ss\n"
"	mov	%eax, %fs\n"
"	mov	%eax, %gs\n"
"	mov	$0xfee00020, %edx\n"
"	mov	(%rdx), %edi\n"
"	shr	$24, %edi\n"
"	cmp	$3, %edi\n"
"	ja	2f\n"
"	lea	1(%rdi), %rax\n"
"	imul	0x8000 + tramp_params - smp_tramp + 24, %rax\n"
"	add	0x8000 + tramp_params - smp_tramp + 16, %rax\n"
"	mov	%rax, %rsp\n"
"	call	*0x8000 + tramp_params - smp_tramp + 32\n"
"2:	hlt\n"
"	jmp	2b\n"
"	.balign	8\n"
"tramp_params:\n"
"	.fill	40, 1, 0\n"
"smp_tramp_end:\n"
"	.popsection\n"
);

static GUEST_CODE void smp_isr(struct x86_regs *regs)
{
	uint32_t id = xapic_read(APIC_ID) >> 24, v = regs->vector;
	int k;

	if (v == VEC_NOTIFY)
		k = K_NOTIFY;
	else if (v >= VEC_IPI && v < VEC_IPI + NR_VCPUS)
		k = K_IPI;
	else if (v == VEC_BCAST)
		k = K_BCAST;
	else
		k = K_LOGICAL;
	if (id < NR_VCPUS) {
		__atomic_fetch_add(&smp.got[k][id], 1, __ATOMIC_SEQ_CST);
		if (k == K_IPI)
			__atomic_fetch_add(&smp.from[id][v - VEC_IPI], 1,
					   __ATOMIC_SEQ_CST);
	}
	xapic_write(APIC_EOI, 0);
}

/* Halt until *@p reaches @want; only an interrupt ends a HLT. */
static GUEST_CODE void wait_for(volatile uint32_t *p, uint32_t want)
{
	cli();
	while (*p < want)
		x86_safe_halt();
	sti();
}

static GUEST_CODE void ap_main(uint64_t id)
{
	uint32_t slot, dest, i;

	x86_guest_load_tables(id);
	xapic_write(APIC_SPIV, APIC_SPIV_ENABLE | 0xff);
	slot = __atomic_fetch_add(&smp.checkin, 1, __ATOMIC_SEQ_CST);
	GUEST_ASSERT(slot < NR_APS);
	smp.ap_id[slot] = id + 1;
	xapic_send_ipi(smp.bsp_id, VEC_NOTIFY);

	/* halt at least once: nothing but an IPI can end it */
	cli();
	do {
		smp.halts[id]++;
		x86_safe_halt();
	} while (smp.phase < 1);
	sti();

	for (i = 0; i < NR_APS; i++) {
		dest = smp.ap_id[i] - 1;
		if (dest != id)
			xapic_send_ipi(dest, VEC_IPI + id);
	}
	xapic_send_ipi(smp.bsp_id, VEC_IPI + id);
	wait_for(&smp.got[K_IPI][id], NR_VCPUS - 1);

	xapic_write(APIC_DFR, 0xffffffff);	/* flat model */
	xapic_write(APIC_LDR, 1U << (24 + id));
	__atomic_fetch_add(&smp.ready, 1, __ATOMIC_SEQ_CST);
	xapic_send_ipi(smp.bsp_id, VEC_NOTIFY);
	wait_for(&smp.phase, 2);
	GUEST_DONE();
}

static GUEST_CODE void bsp_main(uint64_t arg)
{
	uint32_t me = xapic_read(APIC_ID) >> 24, i;

	(void)arg;
	GUEST_ASSERT(me < NR_VCPUS);
	smp.bsp_id = me;
	xapic_write(APIC_SPIV, APIC_SPIV_ENABLE | 0xff);
	xapic_write(APIC_ICR2, 0);
	xapic_write(APIC_ICR, APIC_ICR_ALL_BUT_SELF | APIC_ICR_INIT |
		    APIC_ICR_ASSERT);
	for (i = 0; i < 2; i++)
		xapic_write(APIC_ICR, APIC_ICR_ALL_BUT_SELF | APIC_ICR_SIPI |
			    TRAMP >> 12);
	wait_for(&smp.checkin, NR_APS);
	for (i = 0; i < NR_APS; i++)
		wait_for(&smp.ap_id[i], 1);

	smp.phase = 1;
	for (i = 0; i < NR_APS; i++)
		xapic_send_ipi(smp.ap_id[i] - 1, VEC_IPI + me);
	wait_for(&smp.got[K_IPI][me], NR_VCPUS - 1);
	wait_for(&smp.ready, NR_APS);

	xapic_write(APIC_DFR, 0xffffffff);
	xapic_write(APIC_LDR, 1U << (24 + me));
	xapic_write(APIC_ICR, APIC_ICR_ALL_BUT_SELF | VEC_BCAST);
	xapic_write(APIC_ICR2, LOGICAL_DEST << 24);
	xapic_write(APIC_ICR, APIC_ICR_LOGICAL | VEC_LOGICAL);
	smp.phase = 2;
	for (i = 0; i < NR_APS; i++)
		xapic_send_ipi(smp.ap_id[i] - 1, VEC_NOTIFY);
	GUEST_DONE();
}

static int get_mp_state(struct vcpu *vcpu)
{
	struct kvm_mp_state mp = { .mp_state = 0xff };

	if (ioctl(vcpu->fd, KVM_GET_MP_STATE, &mp))
		return -1;
	return mp.mp_state;
}

static uint32_t apic_id_reg(struct vcpu *vcpu)
{
	struct kvm_lapic_state s;
	uint32_t v;

	if (ioctl(vcpu->fd, KVM_GET_LAPIC, &s))
		return ~0U;
	memcpy(&v, s.regs + APIC_ID, 4);
	return v;
}

static bool load_trampoline(uint8_t *low, struct vcpu *bsp)
{
	size_t len = smp_tramp_end - smp_tramp;
	struct tramp_params p;
	struct kvm_sregs s;

	if (ioctl(bsp->fd, KVM_GET_SREGS, &s))
		return false;
	memset(&p, 0, sizeof(p));
	p.gdt_limit = s.gdt.limit;
	p.gdt_base = s.gdt.base;
	p.cr3 = s.cr3;
	p.stack_base = (uintptr_t)ap_stacks;
	p.stack_size = AP_STACK;
	p.entry = (uintptr_t)ap_main;
	memcpy(low + TRAMP, smp_tramp, len);
	memcpy(low + TRAMP + (tramp_params - smp_tramp), &p, sizeof(p));
	return true;
}

static void dump_state(void)
{
	int k;

	tap_diag("checkin %u, APIC IDs+1 %u %u %u, phase %u, ready %u",
		 smp.checkin, smp.ap_id[0], smp.ap_id[1], smp.ap_id[2],
		 smp.phase, smp.ready);
	tap_diag("AP HLTs before phase 1: %u %u %u %u", smp.halts[0],
		 smp.halts[1], smp.halts[2], smp.halts[3]);
	for (k = 0; k < K_NR; k++)
		tap_diag("IPI kind %d by APIC ID: %u %u %u %u", k,
			 smp.got[k][0], smp.got[k][1], smp.got[k][2],
			 smp.got[k][3]);
	tap_diag("last vector taken %#llx at RIP %#llx RFLAGS %#llx, %u in all",
		 (unsigned long long)x86_log.last_vector,
		 (unsigned long long)x86_log.last_rip,
		 (unsigned long long)x86_log.last_rflags, x86_log.n);
	for (k = 0; k < NR_VCPUS; k++)
		tap_diag("APIC ID %d got exchange IPIs from 0-3: %u %u %u %u",
			 k, smp.from[k][0], smp.from[k][1], smp.from[k][2],
			 smp.from[k][3]);
}

static bool got(int kind, uint32_t a, uint32_t b, uint32_t c, uint32_t d)
{
	return smp.got[kind][0] == a && smp.got[kind][1] == b &&
	       smp.got[kind][2] == c && smp.got[kind][3] == d;
}

int main(int argc, char **argv)
{
	const char *dev = test_device(argc, argv);
	struct x86_runner r[NR_VCPUS];
	struct vcpu vcpu[NR_VCPUS];
	struct vm vm;
	const char *skip = NULL;
	int kvm, i, j, mp[NR_VCPUS];
	bool ok, ids, all_done, halted, pairs;
	uint64_t end, now;
	uint8_t *low;
	char who[16];

	tap_plan(9);
	tap_diag("device %s", dev);
	kvm = open(dev, O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		tap_bail("cannot open %s", dev);
	if (ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_IRQCHIP) <= 0)
		skip = "no KVM_CAP_IRQCHIP";
	else if (ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_HLT) <= 0)
		skip = "no KVM_CAP_HLT";
	else if (ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS) < NR_VCPUS)
		skip = "fewer than 4 vCPUs";
	close(kvm);
	if (skip) {
		for (i = 0; i < 9; i++)
			tap_skip(skip, "SMP bring-up and IPIs (%d of 9)", i + 1);
		tap_done();
	}

	memset((void *)&smp, 0, sizeof(smp));
	if (!x86_vm_create(&vm, dev))
		tap_bail("no VM");
	if (ioctl(vm.fd, KVM_CREATE_IRQCHIP, 0))
		tap_bail("KVM_CREATE_IRQCHIP: %s", strerror(errno));
	low = vm_add_memory(&vm, 1, 0, LOW_SIZE);
	if (!low)
		tap_bail("no low memory for the trampoline");
	if (!x86_vcpu_add(&vm, &vcpu[0], 0, bsp_main, 0))
		tap_bail("no BSP");
	for (i = 1; i < NR_VCPUS; i++)
		if (!x86_vcpu_add(&vm, &vcpu[i], i, NULL, 0))
			tap_bail("no vCPU %d", i);
	x86_handlers[VEC_NOTIFY] = smp_isr;
	for (i = 0; i < NR_VCPUS; i++)
		x86_handlers[VEC_IPI + i] = smp_isr;
	x86_handlers[VEC_BCAST] = smp_isr;
	x86_handlers[VEC_LOGICAL] = smp_isr;

	for (i = 0; i < NR_VCPUS; i++)
		mp[i] = get_mp_state(&vcpu[i]);
	tap_ok(mp[0] == KVM_MP_STATE_RUNNABLE &&
	       mp[1] == KVM_MP_STATE_UNINITIALIZED &&
	       mp[2] == KVM_MP_STATE_UNINITIALIZED &&
	       mp[3] == KVM_MP_STATE_UNINITIALIZED,
	       "KVM_GET_MP_STATE before the SIPI: BSP RUNNABLE, APs UNINITIALIZED (%d %d %d %d)",
	       mp[0], mp[1], mp[2], mp[3]);
	ids = true;
	for (i = 0; i < NR_VCPUS; i++)
		ids = ids && apic_id_reg(&vcpu[i]) == (uint32_t)i << 24;
	tap_ok(ids, "KVM_GET_LAPIC: vCPU i has APIC ID i");

	if (!load_trampoline(low, &vcpu[0]))
		tap_bail("KVM_GET_SREGS of the BSP");
	memset(r, 0, sizeof(r));
	for (i = NR_VCPUS - 1; i >= 0; i--)
		x86_runner_start(&r[i], &vcpu[i]);
	end = x86_now_ms() + RUN_MS;
	all_done = true;
	for (i = 0; i < NR_VCPUS; i++) {
		now = x86_now_ms();
		snprintf(who, sizeof(who), "vCPU %d", i);
		if (!x86_runner_wait(&r[i], now < end ? end - now : 1)) {
			tap_diag("%s did not finish in %d ms", who, RUN_MS);
			all_done = false;
		}
		if (r[i].cmd != UCALL_DONE || r[i].hlt_exits) {
			x86_runner_diag(&r[i], who);
			all_done = false;
		}
		if (r[i].eagain)
			tap_diag("%s: KVM_RUN was EAGAIN %u times", who,
				 r[i].eagain);
	}
	if (!all_done)
		dump_state();
	tap_ok(all_done,
	       "all 4 vCPUs ran to their end on their threads, no KVM_EXIT_HLT");

	ids = smp.checkin == NR_APS;
	for (i = 0; i < NR_APS; i++)
		ids = ids && smp.ap_id[i] >= 2 && smp.ap_id[i] <= NR_VCPUS &&
		      smp.ap_id[i] != smp.ap_id[(i + 1) % NR_APS];
	tap_ok(ids && smp.bsp_id == 0,
	       "INIT, SIPI, SIPI: %u APs checked in by LOCK XADD, APIC IDs %u %u %u",
	       smp.checkin, smp.ap_id[0] - 1, smp.ap_id[1] - 1,
	       smp.ap_id[2] - 1);
	halted = smp.phase == 2;
	for (i = 1; i < NR_VCPUS; i++)
		halted = halted && smp.halts[i] >= 1;
	tap_ok(halted,
	       "each AP halted and an IPI from another vCPU woke it (HLTs %u %u %u)",
	       smp.halts[1], smp.halts[2], smp.halts[3]);
	tap_ok(got(K_IPI, 3, 3, 3, 3),
	       "every vCPU took exactly 3 fixed IPIs, one from each other vCPU (%u %u %u %u)",
	       smp.got[K_IPI][0], smp.got[K_IPI][1], smp.got[K_IPI][2],
	       smp.got[K_IPI][3]);
	pairs = true;
	for (i = 0; i < NR_VCPUS; i++)
		for (j = 0; j < NR_VCPUS; j++)
			pairs = pairs && smp.from[i][j] == (i != j);
	tap_ok(pairs, "and each came from a different vCPU, the vector telling which");
	tap_ok(got(K_BCAST, 0, 1, 1, 1),
	       "a broadcast IPI (all excluding self) from the BSP reached each AP once, not the BSP (%u %u %u %u)",
	       smp.got[K_BCAST][0], smp.got[K_BCAST][1],
	       smp.got[K_BCAST][2], smp.got[K_BCAST][3]);
	ok = got(K_LOGICAL, 0, 1, 0, 1);
	tap_ok(ok,
	       "a logical flat-model IPI to %#x reached APIC IDs 1 and 3 only (%u %u %u %u)",
	       LOGICAL_DEST, smp.got[K_LOGICAL][0], smp.got[K_LOGICAL][1],
	       smp.got[K_LOGICAL][2], smp.got[K_LOGICAL][3]);
	for (i = 0; i < NR_VCPUS; i++)
		vcpu_destroy(&vm, &vcpu[i]);
	vm_destroy(&vm);
	tap_done();
}
