// SPDX-License-Identifier: GPL-2.0-only
/*
 * vCPU file descriptors: creation, the shared kvm_run mapping, and the
 * load/put bracket around every vCPU ioctl (kept across preemption by a
 * preempt notifier, so the backend's per-CPU state follows the thread).
 */
#define pr_fmt(fmt) "vireo: " fmt

#include <linux/anon_inodes.h>
#include <linux/fs.h>
#include <linux/kvm.h>
#include <linux/mm.h>
#include <linux/preempt.h>
#include <linux/slab.h>
#include <linux/smp.h>

#include <vireo/compat.h>
#include <vireo/core.h>
#include <vireo/irq.h>

static void vcpu_sched_in(struct preempt_notifier *pn, int cpu)
{
	struct vireo_vcpu *vcpu = container_of(pn, struct vireo_vcpu,
					       preempt_notifier);

	vcpu->cpu = cpu;
	vcpu->vm->backend->vcpu_load(vcpu, cpu);
}

static void vcpu_sched_out(struct preempt_notifier *pn,
			   struct task_struct *next)
{
	struct vireo_vcpu *vcpu = container_of(pn, struct vireo_vcpu,
					       preempt_notifier);

	vcpu->vm->backend->vcpu_put(vcpu);
	vcpu->cpu = -1;
}

static struct preempt_ops vcpu_preempt_ops = {
	.sched_in = vcpu_sched_in,
	.sched_out = vcpu_sched_out,
};

static void vcpu_load(struct vireo_vcpu *vcpu)
{
	int cpu = get_cpu();

	preempt_notifier_register(&vcpu->preempt_notifier);
	vcpu->cpu = cpu;
	vcpu->vm->backend->vcpu_load(vcpu, cpu);
	put_cpu();
}

static void vcpu_put(struct vireo_vcpu *vcpu)
{
	preempt_disable();
	vcpu->vm->backend->vcpu_put(vcpu);
	vcpu->cpu = -1;
	preempt_notifier_unregister(&vcpu->preempt_notifier);
	preempt_enable();
}

static void flush_ipi(void *unused)
{
	/* The interrupt itself forced the vCPU out of the guest. */
}

void vireo_flush_all_vcpus(struct vireo_vm *vm)
{
	struct vireo_vcpu *vcpu;
	int i, cpu;

	lockdep_assert_held(&vm->mmu_lock);
	for (i = 0; i < vm->nr_vcpus; i++)
		set_bit(VCPU_REQ_TLB_FLUSH, &vm->vcpus[i]->requests);
	/*
	 * pairs with the barrier between mode = IN_GUEST and the
	 * request check in the run loop
	 */
	smp_mb__after_atomic();
	for (i = 0; i < vm->nr_vcpus; i++) {
		vcpu = vm->vcpus[i];
		if (READ_ONCE(vcpu->mode) != VCPU_IN_GUEST)
			continue;
		cpu = READ_ONCE(vcpu->cpu);
		if (cpu >= 0)
			smp_call_function_single(cpu, flush_ipi, NULL, 1);
	}
}

void vireo_vcpu_kick(struct vireo_vcpu *vcpu)
{
	int cpu;

	wake_up_interruptible(&vcpu->wq);
	/* pairs with the barrier between mode = IN_GUEST and the event check */
	smp_mb();
	if (READ_ONCE(vcpu->mode) != VCPU_IN_GUEST)
		return;
	cpu = READ_ONCE(vcpu->cpu);
	/* any interrupt forces an exit; the run loop then looks again */
	if (cpu >= 0 && cpu != raw_smp_processor_id())
		vireo_send_reschedule(cpu);
}

static long vcpu_ioctl(struct file *filp, unsigned int ioctl,
		       unsigned long arg)
{
	struct vireo_vcpu *vcpu = filp->private_data;
	long ret;

	if (vcpu->vm->mm != current->mm)
		return -EIO;
	if (mutex_lock_killable(&vcpu->mutex))
		return -EINTR;
	vcpu_load(vcpu);
	if (ioctl == KVM_RUN)
		ret = arg ? -EINVAL : vireo_arch_vcpu_run(vcpu);
	else
		ret = vireo_arch_vcpu_ioctl(vcpu, ioctl, arg);
	vcpu_put(vcpu);
	mutex_unlock(&vcpu->mutex);
	return ret;
}

static vm_fault_t vcpu_fault(struct vm_fault *vmf)
{
	struct vireo_vcpu *vcpu = vmf->vma->vm_file->private_data;
	struct page *page;

	if (vmf->pgoff == 0)
		page = virt_to_page(vcpu->run);
	else if (vmf->pgoff == KVM_PIO_PAGE_OFFSET)
		page = virt_to_page(vcpu->pio_data);
	else
		return VM_FAULT_SIGBUS;
	get_page(page);
	vmf->page = page;
	return 0;
}

static const struct vm_operations_struct vcpu_vm_ops = {
	.fault = vcpu_fault,
};

static int vcpu_mmap(struct file *filp, struct vm_area_struct *vma)
{
	if (vma->vm_pgoff + vma_pages(vma) > KVM_PIO_PAGE_OFFSET + 1)
		return -EINVAL;
	vireo_vm_flags_set(vma, VM_DONTEXPAND);
	vma->vm_ops = &vcpu_vm_ops;
	return 0;
}

static int vcpu_release(struct inode *inode, struct file *filp)
{
	struct vireo_vcpu *vcpu = filp->private_data;

	/* the vCPU itself lives until its VM dies */
	vireo_vm_put(vcpu->vm);
	return 0;
}

static const struct file_operations vcpu_fops = {
	.owner = THIS_MODULE,
	.release = vcpu_release,
	.unlocked_ioctl = vcpu_ioctl,
	.compat_ioctl = vcpu_ioctl,
	.mmap = vcpu_mmap,
	.llseek = noop_llseek,
};

/* Free a vCPU that has no fd left (its VM is dying) or never got one. */
void vireo_vcpu_destroy(struct vireo_vcpu *vcpu)
{
	vireo_lapic_free(vcpu);
	vcpu->vm->backend->vcpu_free(vcpu);
	fpu_free_guest_fpstate(&vcpu->guest_fpu);
	kvfree(vcpu->cpuid);
	free_page((unsigned long)vcpu->pio_data);
	free_page((unsigned long)vcpu->run);
	kfree(vcpu);
}

int vireo_create_vcpu(struct vireo_vm *vm, unsigned long id)
{
	const struct vireo_backend *b = vm->backend;
	struct vireo_vcpu *vcpu;
	int i, ret, fd;

	if (id >= VIREO_MAX_VCPU_ID)
		return -EINVAL;

	vcpu = kzalloc(b->vcpu_size, GFP_KERNEL_ACCOUNT);
	if (!vcpu)
		return -ENOMEM;
	vcpu->vm = vm;
	vcpu->id = id;
	vcpu->cpu = -1;
	vcpu->last_cpu = -1;
	mutex_init(&vcpu->mutex);
	init_waitqueue_head(&vcpu->wq);
	preempt_notifier_init(&vcpu->preempt_notifier, &vcpu_preempt_ops);

	ret = -ENOMEM;
	vcpu->run = (void *)get_zeroed_page(GFP_KERNEL_ACCOUNT);
	vcpu->pio_data = (void *)get_zeroed_page(GFP_KERNEL_ACCOUNT);
	if (!vcpu->run || !vcpu->pio_data)
		goto free_pages;
	if (!fpu_alloc_guest_fpstate(&vcpu->guest_fpu))
		goto free_pages;

	mutex_lock(&vm->lock);
	ret = -EINVAL;
	if (vm->nr_vcpus >= VIREO_MAX_VCPUS)
		goto unlock;
	ret = -EEXIST;
	for (i = 0; i < vm->nr_vcpus; i++)
		if (vm->vcpus[i]->id == id)
			goto unlock;

	ret = b->vcpu_create(vcpu);
	if (ret)
		goto unlock;
	/* with the in-kernel irqchip, every vCPU has a local APIC */
	if (vm->irqchip) {
		ret = vireo_lapic_create(vcpu);
		if (ret)
			goto free_vcpu;
	}
	vireo_arch_vcpu_reset(vcpu);

	vireo_vm_get(vm);
	fd = anon_inode_getfd("vireo-vcpu", &vcpu_fops, vcpu,
			      O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		refcount_dec(&vm->refcount);	/* the VM fd holds another */
		ret = fd;
		goto free_vcpu;
	}
	vcpu->index = vm->nr_vcpus;
	WRITE_ONCE(vm->vcpus[vm->nr_vcpus], vcpu);
	/* interrupt senders walk vcpus[] without the lock: slot, then count */
	smp_store_release(&vm->nr_vcpus, vm->nr_vcpus + 1);
	mutex_unlock(&vm->lock);
	return fd;

free_vcpu:
	vireo_lapic_free(vcpu);
	b->vcpu_free(vcpu);

unlock:
	mutex_unlock(&vm->lock);
	fpu_free_guest_fpstate(&vcpu->guest_fpu);
free_pages:
	free_page((unsigned long)vcpu->pio_data);
	free_page((unsigned long)vcpu->run);
	kfree(vcpu);
	return ret;
}

int vireo_vcpu_init(void)
{
	preempt_notifier_inc();
	return 0;
}

void vireo_vcpu_exit(void)
{
	preempt_notifier_dec();
}
