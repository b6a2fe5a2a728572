// SPDX-License-Identifier: GPL-2.0-only
/*
 * MMIO: a guest access to a guest-physical address no memslot holds (or
 * a write to a read-only slot) is executed by the instruction emulator
 * (emulate.c), with its memory operands translated through the guest's
 * page tables here.  Each piece of an operand goes to guest RAM, to a
 * device the kernel serves (local APIC, IOAPIC, ioeventfd), or out to
 * the VMM as KVM_EXIT_MMIO, at most 8 bytes and one page at a time.
 *
 * The VMM answers a read by running the vCPU again.  The instruction is
 * then executed again from the start, and the reads the VMM answered so
 * far are replayed in order, until it gets through: nothing is committed
 * before that, so the guest never sees half an instruction.  A write is
 * the last thing an instruction does, so the instruction completes (RIP
 * moves on) before its write goes out; a REP string instruction stops
 * at the next such write, which goes out when the VMM comes back.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kvm.h>
#include <linux/mm.h>
#include <linux/string.h>
#include <asm/fpu/api.h>
#include <asm/processor-flags.h>

#include <vireo/core.h>
#include <vireo/emulate.h>
#include <vireo/irq.h>
#include <vireo/mmu.h>

#include "trace.h"

struct mmio_emu {
	struct vireo_emu_ctxt ctxt;
	struct vireo_vcpu *vcpu;
	struct kvm_sregs s;
	u32 user;		/* VIREO_ACC_USER at CPL 3 */
};

static struct mmio_emu *to_emu(struct vireo_emu_ctxt *ctxt)
{
	return container_of(ctxt, struct mmio_emu, ctxt);
}

/* An access the kernel serves: the local APIC, the IOAPIC, ioeventfds. */
static bool mmio_in_kernel(struct vireo_vcpu *vcpu, u64 gpa, void *data,
			   int len, bool write)
{
	if (vcpu->apic && (vireo_lapic_mmio(vcpu, gpa, data, len, write) ||
			   vireo_ioapic_mmio(vcpu->vm, gpa, data, len, write)))
		return true;
	return write && vireo_ioeventfd_write(vcpu->vm, true, gpa, len, data);
}

/* Guest RAM at @gpa (a write needs a writable slot), or MMIO. */
static bool is_ram(struct vireo_vm *vm, u64 gpa, bool write)
{
	struct vireo_memslot *slot;
	bool ram;

	spin_lock(&vm->mmu_lock);
	slot = vireo_find_slot(vm, gpa >> PAGE_SHIFT);
	ram = slot && !(write && (slot->flags & KVM_MEM_READONLY));
	spin_unlock(&vm->mmu_lock);
	return ram;
}

static enum vireo_emu_result translate(struct mmio_emu *m, u64 la,
				       u32 access, u64 *gpa)
{
	u32 pf_error;
	int ret;

	ret = vireo_gva_to_gpa(m->vcpu, &m->s, la, access | m->user, gpa,
			       &pf_error);
	if (!ret)
		return VIREO_EMU_OK;
	if (ret == -EFAULT)
		return vireo_emu_set_fault(&m->ctxt, VIREO_EMU_PF, true,
					   pf_error, la);
	if (ret == -EINVAL)
		return vireo_emu_set_fault(&m->ctxt, VIREO_EMU_GP, true, 0, 0);
	/* page tables outside guest memory: nothing the guest could see */
	return VIREO_EMU_UNHANDLED;
}

/*
 * The reads replayed so far belong to REP iterations that are now done:
 * forget them.
 */
static void new_iteration(struct mmio_emu *m)
{
	struct vireo_vcpu *vcpu = m->vcpu;

	if (m->ctxt.iterations != vcpu->mmio.iteration) {
		vcpu->mmio.iteration = m->ctxt.iterations;
		vcpu->mmio.nr_rd = 0;
		vcpu->mmio.used_rd = 0;
	}
}

/* One piece of a read that is MMIO: the kernel, a replay, or the VMM. */
static enum vireo_emu_result mmio_read(struct mmio_emu *m, u64 gpa,
				       void *val, unsigned int len)
{
	struct vireo_vcpu *vcpu = m->vcpu;
	struct vireo_mmio_frag *f;

	if (mmio_in_kernel(vcpu, gpa, val, len, false))
		return VIREO_EMU_OK;
	/* a write that must go out first: the VMM sees them in order */
	if (vcpu->mmio.nr_wr)
		return VIREO_EMU_EXIT;
	new_iteration(m);
	if (vcpu->mmio.used_rd < vcpu->mmio.nr_rd) {
		f = &vcpu->mmio.rd[vcpu->mmio.used_rd];
		if (f->gpa == gpa && f->len == len) {
			vcpu->mmio.used_rd++;
			memcpy(val, f->data, len);
			return VIREO_EMU_OK;
		}
		/* the guest changed under us: ask again from here */
		vcpu->mmio.nr_rd = vcpu->mmio.used_rd;
	}
	if (vcpu->mmio.nr_rd == VIREO_MMIO_FRAGS)
		return VIREO_EMU_UNHANDLED;
	f = &vcpu->mmio.rd[vcpu->mmio.nr_rd];
	f->gpa = gpa;
	f->len = len;
	memset(f->data, 0, sizeof(f->data));
	vcpu->mmio.ask_read = true;
	return VIREO_EMU_EXIT;
}

/* The next piece of an access at @la: at most 8 bytes, within the page. */
static unsigned int piece(u64 la, unsigned int left)
{
	return min3(left, 8U, (unsigned int)(PAGE_SIZE - offset_in_page(la)));
}

static enum vireo_emu_result emu_read(struct vireo_emu_ctxt *ctxt, u64 la,
				      void *val, unsigned int bytes)
{
	struct mmio_emu *m = to_emu(ctxt);
	enum vireo_emu_result r;
	unsigned int done, chunk;
	u64 gpa;

	for (done = 0; done < bytes; done += chunk) {
		chunk = piece(la + done, bytes - done);
		r = translate(m, la + done, 0, &gpa);
		if (r)
			return r;
		if (is_ram(m->vcpu->vm, gpa, false)) {
			if (vireo_read_guest(m->vcpu->vm, gpa, val + done,
					     chunk))
				return VIREO_EMU_UNHANDLED;
			continue;
		}
		r = mmio_read(m, gpa, val + done, chunk);
		if (r)
			return r;
	}
	return VIREO_EMU_OK;
}

/*
 * A write is the instruction's last access: its pieces are translated
 * (any fault comes first), then RAM and the kernel's devices take
 * theirs and the rest waits for the VMM.  A second write in the same
 * run of the emulator (the next REP iteration) stops it until then.
 */
static enum vireo_emu_result emu_write(struct vireo_emu_ctxt *ctxt, u64 la,
				       const void *val, unsigned int bytes)
{
	struct mmio_emu *m = to_emu(ctxt);
	struct vireo_vcpu *vcpu = m->vcpu;
	struct vireo_mmio_frag *f;
	unsigned int done, chunk, n = 0, i;
	u64 gpa[VIREO_MMIO_FRAGS];
	u8 len[VIREO_MMIO_FRAGS];
	enum vireo_emu_result r;

	if (vcpu->mmio.nr_wr)
		return VIREO_EMU_EXIT;
	for (done = 0; done < bytes; done += chunk) {
		chunk = piece(la + done, bytes - done);
		if (n == ARRAY_SIZE(gpa))
			return VIREO_EMU_UNHANDLED;
		r = translate(m, la + done, VIREO_ACC_WRITE, &gpa[n]);
		if (r)
			return r;
		len[n++] = chunk;
	}
	for (done = 0, i = 0; i < n; done += len[i++]) {
		if (is_ram(vcpu->vm, gpa[i], true)) {
			if (vireo_write_guest(vcpu->vm, gpa[i], val + done,
					      len[i]))
				return VIREO_EMU_UNHANDLED;
			continue;
		}
		if (mmio_in_kernel(vcpu, gpa[i], (void *)val + done, len[i],
				   true))
			continue;
		f = &vcpu->mmio.wr[vcpu->mmio.nr_wr++];
		f->gpa = gpa[i];
		f->len = len[i];
		memset(f->data, 0, sizeof(f->data));
		memcpy(f->data, val + done, len[i]);
	}
	return VIREO_EMU_OK;
}

/*
 * The guest's XMM registers are the CPU's while KVM_RUN runs (the guest
 * FPU state is swapped in), or saved to be restored on the way back to
 * the guest: load them first, and keep them from being saved under us.
 */
static void xmm_get(unsigned int reg, u8 (*v)[16])
{
	switch (reg) {
	case 0:
		asm volatile("movdqu %%xmm0, %0" : "=m" (*v));
		break;
	case 1:
		asm volatile("movdqu %%xmm1, %0" : "=m" (*v));
		break;
	case 2:
		asm volatile("movdqu %%xmm2, %0" : "=m" (*v));
		break;
	case 3:
		asm volatile("movdqu %%xmm3, %0" : "=m" (*v));
		break;
	case 4:
		asm volatile("movdqu %%xmm4, %0" : "=m" (*v));
		break;
	case 5:
		asm volatile("movdqu %%xmm5, %0" : "=m" (*v));
		break;
	case 6:
		asm volatile("movdqu %%xmm6, %0" : "=m" (*v));
		break;
	case 7:
		asm volatile("movdqu %%xmm7, %0" : "=m" (*v));
		break;
	case 8:
		asm volatile("movdqu %%xmm8, %0" : "=m" (*v));
		break;
	case 9:
		asm volatile("movdqu %%xmm9, %0" : "=m" (*v));
		break;
	case 10:
		asm volatile("movdqu %%xmm10, %0" : "=m" (*v));
		break;
	case 11:
		asm volatile("movdqu %%xmm11, %0" : "=m" (*v));
		break;
	case 12:
		asm volatile("movdqu %%xmm12, %0" : "=m" (*v));
		break;
	case 13:
		asm volatile("movdqu %%xmm13, %0" : "=m" (*v));
		break;
	case 14:
		asm volatile("movdqu %%xmm14, %0" : "=m" (*v));
		break;
	case 15:
		asm volatile("movdqu %%xmm15, %0" : "=m" (*v));
		break;
	}
}

static void xmm_set(unsigned int reg, const u8 (*v)[16])
{
	switch (reg) {
	case 0:
		asm volatile("movdqu %0, %%xmm0" : : "m" (*v));
		break;
	case 1:
		asm volatile("movdqu %0, %%xmm1" : : "m" (*v));
		break;
	case 2:
		asm volatile("movdqu %0, %%xmm2" : : "m" (*v));
		break;
	case 3:
		asm volatile("movdqu %0, %%xmm3" : : "m" (*v));
		break;
	case 4:
		asm volatile("movdqu %0, %%xmm4" : : "m" (*v));
		break;
	case 5:
		asm volatile("movdqu %0, %%xmm5" : : "m" (*v));
		break;
	case 6:
		asm volatile("movdqu %0, %%xmm6" : : "m" (*v));
		break;
	case 7:
		asm volatile("movdqu %0, %%xmm7" : : "m" (*v));
		break;
	case 8:
		asm volatile("movdqu %0, %%xmm8" : : "m" (*v));
		break;
	case 9:
		asm volatile("movdqu %0, %%xmm9" : : "m" (*v));
		break;
	case 10:
		asm volatile("movdqu %0, %%xmm10" : : "m" (*v));
		break;
	case 11:
		asm volatile("movdqu %0, %%xmm11" : : "m" (*v));
		break;
	case 12:
		asm volatile("movdqu %0, %%xmm12" : : "m" (*v));
		break;
	case 13:
		asm volatile("movdqu %0, %%xmm13" : : "m" (*v));
		break;
	case 14:
		asm volatile("movdqu %0, %%xmm14" : : "m" (*v));
		break;
	case 15:
		asm volatile("movdqu %0, %%xmm15" : : "m" (*v));
		break;
	}
}

/* SSE as the guest has it: #UD without OSFXSR or with EM, #NM with TS */
static enum vireo_emu_result sse_usable(struct mmio_emu *m)
{
	if (!(m->s.cr4 & X86_CR4_OSFXSR) || (m->s.cr0 & X86_CR0_EM))
		return vireo_emu_set_fault(&m->ctxt, VIREO_EMU_UD, false, 0, 0);
	if (m->s.cr0 & X86_CR0_TS)
		return vireo_emu_set_fault(&m->ctxt, VIREO_EMU_NM, false, 0, 0);
	return VIREO_EMU_OK;
}

/* XMM register @reg to or from @val, once the guest may use SSE */
static enum vireo_emu_result xmm_access(struct vireo_emu_ctxt *ctxt,
					unsigned int reg, void *val, bool write)
{
	enum vireo_emu_result r = sse_usable(to_emu(ctxt));

	if (r || reg > 15)
		return r ? r : VIREO_EMU_UNHANDLED;
	fpregs_lock();
	if (test_thread_flag(TIF_NEED_FPU_LOAD))
		switch_fpu_return();
	if (write)
		xmm_set(reg, val);
	else
		xmm_get(reg, val);
	fpregs_unlock();
	return VIREO_EMU_OK;
}

static enum vireo_emu_result emu_read_xmm(struct vireo_emu_ctxt *ctxt,
					  unsigned int reg, void *val)
{
	return xmm_access(ctxt, reg, val, false);
}

static enum vireo_emu_result emu_write_xmm(struct vireo_emu_ctxt *ctxt,
					   unsigned int reg, const void *val)
{
	return xmm_access(ctxt, reg, (void *)val, true);
}

static const struct vireo_emu_ops mmio_emu_ops = {
	.read = emu_read,
	.write = emu_write,
	.read_xmm = emu_read_xmm,
	.write_xmm = emu_write_xmm,
};

static void exit_mmio(struct vireo_vcpu *vcpu, const struct vireo_mmio_frag *f,
		      bool write)
{
	struct kvm_run *run = vcpu->run;

	run->exit_reason = KVM_EXIT_MMIO;
	run->mmio.phys_addr = f->gpa;
	run->mmio.len = f->len;
	run->mmio.is_write = write;
	memset(run->mmio.data, 0, sizeof(run->mmio.data));
	if (write)
		memcpy(run->mmio.data, f->data, f->len);
	vcpu->pending = write ? VCPU_PENDING_MMIO_WRITE :
				VCPU_PENDING_MMIO_READ;
}

static void inject_fault(struct vireo_vcpu *vcpu,
			 const struct vireo_emu_fault *f)
{
	const struct vireo_backend *b = vcpu->vm->backend;
	struct kvm_sregs s;

	if (f->vector == VIREO_EMU_PF) {
		b->get_sregs(vcpu, &s);
		s.cr2 = f->address;
		b->set_sregs(vcpu, &s);
	}
	vireo_queue_exception(vcpu, f->vector, f->error_code_valid,
			      f->error_code);
}

/*
 * Execute the instruction at RIP.  1 to enter the guest again, 0 to go
 * out to the VMM with run->exit_reason set.
 */
static int emulate(struct vireo_vcpu *vcpu)
{
	struct mmio_emu m = { .vcpu = vcpu };
	struct vireo_emu_ctxt *c = &m.ctxt;
	u8 bytes[VIREO_INSN_MAX_LEN];
	enum vireo_emu_result r;
	unsigned int n, i;

	vcpu->vm->backend->get_sregs(vcpu, &m.s);
	n = vireo_fetch_insn(vcpu, &m.s, bytes);
	if (!n)
		return vireo_emulation_failed(vcpu);

	c->mode = vireo_cpu_mode(vcpu, &m.s);
	c->stack32 = m.s.ss.db;
	c->seg_base[VIREO_SEG_FS] = m.s.fs.base;
	c->seg_base[VIREO_SEG_GS] = m.s.gs.base;
	if (c->mode != VIREO_MODE_64) {
		c->seg_base[VIREO_SEG_ES] = m.s.es.base;
		c->seg_base[VIREO_SEG_CS] = m.s.cs.base;
		c->seg_base[VIREO_SEG_SS] = m.s.ss.base;
		c->seg_base[VIREO_SEG_DS] = m.s.ds.base;
	}
	m.user = (m.s.cr0 & X86_CR0_PE) && m.s.ss.dpl == 3 ?
		 VIREO_ACC_USER : 0;
	for (i = 0; i < ARRAY_SIZE(c->regs); i++)
		c->regs[i] = vcpu->regs[i];
	c->rip = vcpu->rip;
	c->rflags = vcpu->rflags;
	c->ops = &mmio_emu_ops;

	vcpu->mmio.used_rd = 0;
	vcpu->mmio.nr_wr = 0;
	vcpu->mmio.next_wr = 0;
	vcpu->mmio.ask_read = false;
	r = vireo_emulate(c, bytes, n);
	trace_vireo_emulate(vcpu->id, vcpu->rip, r);

	/* the registers hold what completed, a REP instruction's progress */
	for (i = 0; i < ARRAY_SIZE(c->regs); i++)
		vcpu->regs[i] = c->regs[i];
	vcpu->rflags = c->rflags;
	/*
	 * Answered reads of REP iterations now done are not needed again;
	 * the next run counts iterations from 0.
	 */
	if (c->iterations != vcpu->mmio.iteration)
		vcpu->mmio.nr_rd = 0;
	vcpu->mmio.iteration = 0;
	vcpu->mmio.again = r == VIREO_EMU_EXIT;

	switch (r) {
	case VIREO_EMU_OK:
		vcpu->rip = c->rip;
		vcpu->mmio.nr_rd = 0;
		break;
	case VIREO_EMU_EXIT:
		if (vcpu->mmio.ask_read && !vcpu->mmio.nr_wr) {
			exit_mmio(vcpu, &vcpu->mmio.rd[vcpu->mmio.nr_rd],
				  false);
			return 0;
		}
		break;
	case VIREO_EMU_FAULT:
		vcpu->mmio.nr_rd = 0;
		inject_fault(vcpu, &c->fault);
		return 1;
	case VIREO_EMU_RETRY:
		return 1;
	default:
		vcpu->mmio.nr_rd = 0;
		return vireo_emulation_failed(vcpu);
	}
	if (vcpu->mmio.nr_wr) {
		exit_mmio(vcpu, &vcpu->mmio.wr[0], true);
		return 0;
	}
	/* a REP batch ended, or everything went to RAM and the kernel */
	return 1;
}

/* An EPT violation or NPF on @gpa that no memslot can map. */
int vireo_handle_mmio(struct vireo_vcpu *vcpu, u64 gpa)
{
	vcpu->mmio.nr_rd = 0;
	vcpu->mmio.iteration = 0;
	return emulate(vcpu);
}

/*
 * KVM_RUN after a KVM_EXIT_MMIO: take the VMM's answer and finish the
 * instruction.  0 to enter the guest, 1 to go out again (another piece
 * of the instruction, or an emulation failure, in run->exit_reason).
 */
int vireo_complete_mmio(struct vireo_vcpu *vcpu)
{
	enum vireo_pending p = vcpu->pending;
	struct vireo_mmio_frag *f;

	vcpu->pending = VCPU_PENDING_NONE;
	if (p == VCPU_PENDING_MMIO_READ) {
		f = &vcpu->mmio.rd[vcpu->mmio.nr_rd++];
		memcpy(f->data, vcpu->run->mmio.data, f->len);
		return !emulate(vcpu);
	}
	if (++vcpu->mmio.next_wr < vcpu->mmio.nr_wr) {
		exit_mmio(vcpu, &vcpu->mmio.wr[vcpu->mmio.next_wr], true);
		return 1;
	}
	vcpu->mmio.nr_wr = 0;
	return vcpu->mmio.again ? !emulate(vcpu) : 0;
}
