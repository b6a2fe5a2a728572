// SPDX-License-Identifier: GPL-2.0-only
/*
 * VM file descriptors: creation and teardown, memory slots, vCPU
 * creation and the capabilities a VMM may ask about.
 */
#define pr_fmt(fmt) "vireo: " fmt

#include <linux/anon_inodes.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/kvm.h>
#include <linux/mm.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include <vireo/core.h>
#include <vireo/irq.h>
#include <vireo/mmu.h>

/* Nested page tables map 4 levels: 48 bits of guest-physical space. */
#define VIREO_GPA_LIMIT		BIT_ULL(48)

long vireo_check_extension(struct vireo_vm *vm, long cap)
{
	switch (cap) {
	case KVM_CAP_USER_MEMORY:
	case KVM_CAP_SET_TSS_ADDR:
	case KVM_CAP_SET_IDENTITY_MAP_ADDR:
	case KVM_CAP_IMMEDIATE_EXIT:
	case KVM_CAP_DESTROY_MEMORY_REGION_WORKS:
	case KVM_CAP_JOIN_MEMORY_REGIONS_WORKS:
	case KVM_CAP_EXT_CPUID:
	case KVM_CAP_GET_MSR_FEATURES:
	case KVM_CAP_XSAVE:
	case KVM_CAP_DEBUGREGS:
	case KVM_CAP_SET_GUEST_DEBUG:
	case KVM_CAP_VCPU_EVENTS:
	case KVM_CAP_INTR_SHADOW:
	case KVM_CAP_MP_STATE:
	case KVM_CAP_GET_TSC_KHZ:
		return 1;
	/* the in-kernel irqchip, PIT and eventfds (include/vireo/irq.h) */
	case KVM_CAP_IRQCHIP:
	case KVM_CAP_HLT:
	case KVM_CAP_IRQ_INJECT_STATUS:
	case KVM_CAP_IRQFD:
	case KVM_CAP_IRQFD_RESAMPLE:
	case KVM_CAP_IOEVENTFD:
	case KVM_CAP_IOEVENTFD_ANY_LENGTH:
	case KVM_CAP_SIGNAL_MSI:
	case KVM_CAP_PIT2:
	case KVM_CAP_PIT_STATE2:
	case KVM_CAP_REINJECT_CONTROL:
	case KVM_CAP_SET_BOOT_CPU_ID:
	case KVM_CAP_USER_NMI:
	case KVM_CAP_TSC_DEADLINE_TIMER:
		return 1;
	case KVM_CAP_IRQ_ROUTING:
		return VIREO_NR_GSIS;
	case KVM_CAP_READONLY_MEM:
		return 1;
	case KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2:
		return KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;
	case KVM_CAP_ADJUST_CLOCK:
		return KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC |
		       KVM_CLOCK_TSC_STABLE;
	case KVM_CAP_XSAVE2:
		return vireo_xsave2_size();
	case KVM_CAP_XCRS:
		/* XCR0 exists where the host's kernel uses XSAVE */
		return vireo_host_xcr0 != 0;
	case KVM_CAP_NR_MEMSLOTS:
		return VIREO_NR_MEMSLOTS;
	case KVM_CAP_NR_VCPUS:
	case KVM_CAP_MAX_VCPUS:
		return VIREO_MAX_VCPUS;
	case KVM_CAP_MAX_VCPU_ID:
		return VIREO_MAX_VCPU_ID;
	case KVM_CAP_MULTI_ADDRESS_SPACE:
		return 1;
	case KVM_CAP_MCE:
		return VIREO_MCE_BANKS;
	default:
		return 0;
	}
}

void vireo_vm_get(struct vireo_vm *vm)
{
	refcount_inc(&vm->refcount);
}

static void vm_destroy(struct vireo_vm *vm)
{
	const struct vireo_backend *b = vm->backend;
	int i;

	/* the guest's memory is the VMM's alone again */
	vireo_tdp_unregister(vm);
	/*
	 * Nothing may raise an interrupt once the vCPUs go: the eventfds
	 * first, then the chips and the PIT's timer, then the vCPUs with
	 * their APICs (whose timers only reach their own vCPU).
	 */
	vireo_eventfd_destroy(vm);
	vireo_irqchip_destroy(vm);
	for (i = 0; i < vm->nr_vcpus; i++)
		vireo_vcpu_destroy(vm->vcpus[i]);
	vireo_tdp_destroy(vm);
	for (i = 0; i < VIREO_NR_MEMSLOTS; i++)
		kvfree(vm->slots[i].dirty_bitmap);
	b->vm_destroy(vm);
	mmdrop(vm->mm);
	kvfree(vm);
	vireo_put_backend(b);
}

void vireo_vm_put(struct vireo_vm *vm)
{
	if (refcount_dec_and_test(&vm->refcount))
		vm_destroy(vm);
}

static bool slot_has(const struct vireo_memslot *slot, u64 gfn)
{
	return slot->npages && gfn >= slot->base_gfn &&
	       gfn - slot->base_gfn < slot->npages;
}

/*
 * The slot holding @gfn; vm->lock or vm->mmu_lock held (changes hold
 * both).  Faults come in runs: a hint.
 */
struct vireo_memslot *vireo_find_slot(struct vireo_vm *vm, u64 gfn)
{
	int i;

	if (slot_has(&vm->slots[vm->last_slot], gfn))
		return &vm->slots[vm->last_slot];
	for (i = 0; i < vm->nr_slots; i++) {
		int id = vm->slot_ids[i];

		if (slot_has(&vm->slots[id], gfn)) {
			vm->last_slot = id;
			return &vm->slots[id];
		}
	}
	return NULL;
}

/* Slot @id comes into use, or goes out of it (both locks held). */
static void slot_id_add(struct vireo_vm *vm, u16 id)
{
	vm->slot_ids[vm->nr_slots++] = id;
}

static void slot_id_del(struct vireo_vm *vm, u16 id)
{
	int i;

	for (i = 0; i < vm->nr_slots; i++) {
		if (vm->slot_ids[i] == id) {
			vm->slot_ids[i] = vm->slot_ids[--vm->nr_slots];
			return;
		}
	}
}

static unsigned long dirty_bitmap_bytes(const struct vireo_memslot *slot)
{
	return BITS_TO_LONGS(slot->npages) * sizeof(long);
}

/*
 * Start or stop dirty logging on @slot (vm->mmu_lock held): it takes
 * *@bitmap, allocated before that lock, or gives its own in *@old.
 */
static void slot_set_logging(struct vireo_vm *vm, struct vireo_memslot *slot,
			     bool on, unsigned long **bitmap,
			     unsigned long **old)
{
	if (on && !slot->dirty_bitmap) {
		slot->dirty_bitmap = *bitmap;
		*bitmap = NULL;
		/* every write from now on faults once and is logged */
		vireo_tdp_zap(vm, slot->base_gfn, slot->npages);
	} else if (!on && slot->dirty_bitmap) {
		*old = slot->dirty_bitmap;
		slot->dirty_bitmap = NULL;
	}
}

static bool slot_overlaps(struct vireo_vm *vm, int except, u64 gfn,
			  u64 npages)
{
	struct vireo_memslot *slot;
	int i;

	for (i = 0; i < vm->nr_slots; i++) {
		slot = &vm->slots[vm->slot_ids[i]];
		if (vm->slot_ids[i] == except || !slot->npages)
			continue;
		if (gfn < slot->base_gfn + slot->npages &&
		    slot->base_gfn < gfn + npages)
			return true;
	}
	return false;
}

/* KVM_SET_USER_MEMORY_REGION, with KVM's checks and errnos. */
static int vm_set_memory_region(struct vireo_vm *vm,
				const struct kvm_userspace_memory_region *mem)
{
	u32 as_id = mem->slot >> 16, id = mem->slot & 0xffff;
	u64 npages = mem->memory_size >> PAGE_SHIFT;
	u64 gfn = mem->guest_phys_addr >> PAGE_SHIFT;
	unsigned long *bitmap = NULL, *old = NULL;
	struct vireo_memslot *slot;
	bool logging;
	int ret = 0;

	if (mem->flags & ~(KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY))
		return -EINVAL;
	if (as_id || id >= VIREO_NR_MEMSLOTS)
		return -EINVAL;
	if (!PAGE_ALIGNED(mem->memory_size) ||
	    !PAGE_ALIGNED(mem->guest_phys_addr) ||
	    !PAGE_ALIGNED(mem->userspace_addr))
		return -EINVAL;
	if (mem->memory_size &&
	    !access_ok(u64_to_user_ptr(mem->userspace_addr), mem->memory_size))
		return -EINVAL;
	if (mem->guest_phys_addr + mem->memory_size < mem->guest_phys_addr ||
	    mem->guest_phys_addr + mem->memory_size > VIREO_GPA_LIMIT)
		return -EINVAL;
	if (npages > VIREO_MAX_SLOT_PAGES)
		return -EINVAL;

	/*
	 * The dirty bitmap is allocated before the MMU's lock: nothing
	 * under it may reclaim memory, which calls our MMU notifier.
	 */
	logging = mem->flags & KVM_MEM_LOG_DIRTY_PAGES;
	if (npages && logging) {
		bitmap = kvcalloc(BITS_TO_LONGS(npages), sizeof(long),
				  GFP_KERNEL_ACCOUNT);
		if (!bitmap)
			return -ENOMEM;
	}

	mutex_lock(&vm->lock);
	spin_lock(&vm->mmu_lock);
	slot = &vm->slots[id];
	if (!npages) {
		/* delete */
		if (!slot->npages) {
			ret = -EINVAL;
			goto out;
		}
		vireo_tdp_zap(vm, slot->base_gfn, slot->npages);
		old = slot->dirty_bitmap;
		memset(slot, 0, sizeof(*slot));
		slot_id_del(vm, id);
		goto out;
	}
	if (slot->npages) {
		/* only moving it or turning dirty logging on or off */
		if (mem->userspace_addr != slot->userspace_addr ||
		    npages != slot->npages ||
		    ((mem->flags ^ slot->flags) & KVM_MEM_READONLY)) {
			ret = -EINVAL;
			goto out;
		}
		if (gfn != slot->base_gfn) {
			if (slot_overlaps(vm, id, gfn, npages)) {
				ret = -EEXIST;
				goto out;
			}
			vireo_tdp_zap(vm, slot->base_gfn, slot->npages);
			slot->base_gfn = gfn;
		}
		slot_set_logging(vm, slot, logging, &bitmap, &old);
		slot->flags = mem->flags;
		goto out;
	}
	if (slot_overlaps(vm, id, gfn, npages)) {
		ret = -EEXIST;
		goto out;
	}
	slot->base_gfn = gfn;
	slot->npages = npages;
	slot->userspace_addr = mem->userspace_addr;
	slot->flags = mem->flags;
	slot->dirty_bitmap = bitmap;
	bitmap = NULL;
	slot_id_add(vm, id);
out:
	spin_unlock(&vm->mmu_lock);
	mutex_unlock(&vm->lock);
	kvfree(bitmap);
	kvfree(old);
	return ret;
}

/* The slot of a dirty-log ioctl, with logging on; vm->lock held. */
static struct vireo_memslot *log_slot(struct vireo_vm *vm, u32 id)
{
	struct vireo_memslot *slot;

	if ((id >> 16) || (id & 0xffff) >= VIREO_NR_MEMSLOTS)
		return ERR_PTR(-EINVAL);
	slot = &vm->slots[id & 0xffff];
	if (!slot->npages || !slot->dirty_bitmap)
		return ERR_PTR(-ENOENT);
	return slot;
}

/*
 * Write-protect the pages of @slot whose bits are set in @mask (starting
 * at page @first), make every vCPU forget them, then clear their bits:
 * a write that slips in through a stale translation was logged before.
 */
static void reprotect(struct vireo_vm *vm, struct vireo_memslot *slot,
		      const unsigned long *mask, u64 first, u64 n)
{
	bool flush = false;
	u64 i;

	spin_lock(&vm->mmu_lock);
	for_each_set_bit(i, mask, n)
		flush |= vireo_tdp_wrprotect(vm, slot->base_gfn + first + i);
	if (flush)
		vireo_flush_all_vcpus(vm);
	for_each_set_bit(i, mask, n)
		clear_bit(first + i, slot->dirty_bitmap);
	spin_unlock(&vm->mmu_lock);
}

static int vm_get_dirty_log(struct vireo_vm *vm, void __user *argp)
{
	struct vireo_memslot *slot;
	struct kvm_dirty_log log;
	unsigned long *copy;
	unsigned long bytes;
	int ret = 0;

	if (copy_from_user(&log, argp, sizeof(log)))
		return -EFAULT;
	mutex_lock(&vm->lock);
	slot = log_slot(vm, log.slot);
	if (IS_ERR(slot)) {
		mutex_unlock(&vm->lock);
		return PTR_ERR(slot);
	}
	bytes = dirty_bitmap_bytes(slot);
	copy = kvmalloc(bytes, GFP_KERNEL_ACCOUNT);
	if (!copy) {
		mutex_unlock(&vm->lock);
		return -ENOMEM;
	}
	memcpy(copy, slot->dirty_bitmap, bytes);
	if (!vm->manual_dirty_protect)
		reprotect(vm, slot, copy, 0, slot->npages);
	mutex_unlock(&vm->lock);
	if (copy_to_user(log.dirty_bitmap, copy, bytes))
		ret = -EFAULT;
	kvfree(copy);
	return ret;
}

static int vm_clear_dirty_log(struct vireo_vm *vm, void __user *argp)
{
	struct kvm_clear_dirty_log log;
	struct vireo_memslot *slot;
	unsigned long *mask;
	int ret = 0;

	if (copy_from_user(&log, argp, sizeof(log)))
		return -EFAULT;
	if (!vm->manual_dirty_protect)
		return -EINVAL;
	if (log.first_page & 63)
		return -EINVAL;
	mutex_lock(&vm->lock);
	slot = log_slot(vm, log.slot);
	if (IS_ERR(slot)) {
		ret = PTR_ERR(slot);
		goto out;
	}
	/* within the slot; whole longs except at the slot's end */
	if (log.first_page > slot->npages ||
	    log.num_pages > slot->npages - log.first_page ||
	    ((log.num_pages & 63) &&
	     log.first_page + log.num_pages != slot->npages)) {
		ret = -EINVAL;
		goto out;
	}
	if (!log.num_pages)
		goto out;
	mask = kvmalloc_array(BITS_TO_LONGS(log.num_pages), sizeof(long),
			      GFP_KERNEL_ACCOUNT);
	if (!mask) {
		ret = -ENOMEM;
		goto out;
	}
	if (copy_from_user(mask, log.dirty_bitmap,
			   BITS_TO_LONGS(log.num_pages) * sizeof(long)))
		ret = -EFAULT;
	else
		reprotect(vm, slot, mask, log.first_page, log.num_pages);
	kvfree(mask);
out:
	mutex_unlock(&vm->lock);
	return ret;
}

static int vm_enable_cap(struct vireo_vm *vm, void __user *argp)
{
	struct kvm_enable_cap cap;

	if (copy_from_user(&cap, argp, sizeof(cap)))
		return -EFAULT;
	if (cap.flags)
		return -EINVAL;
	switch (cap.cap) {
	case KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2:
		if (cap.args[0] & ~(u64)KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE)
			return -EINVAL;
		mutex_lock(&vm->lock);
		vm->manual_dirty_protect = cap.args[0];
		mutex_unlock(&vm->lock);
		return 0;
	default:
		return -EINVAL;
	}
}

static long vm_ioctl(struct file *filp, unsigned int ioctl, unsigned long arg)
{
	struct vireo_vm *vm = filp->private_data;
	void __user *argp = (void __user *)arg;
	long ret;

	if (vm->mm != current->mm)
		return -EIO;

	switch (ioctl) {
	case KVM_CREATE_VCPU:
		return vireo_create_vcpu(vm, arg);
	case KVM_SET_USER_MEMORY_REGION: {
		struct kvm_userspace_memory_region mem;

		if (copy_from_user(&mem, argp, sizeof(mem)))
			return -EFAULT;
		return vm_set_memory_region(vm, &mem);
	}
	case KVM_CHECK_EXTENSION:
		return vireo_check_extension(vm, arg);
	case KVM_GET_DIRTY_LOG:
		return vm_get_dirty_log(vm, argp);
	case KVM_CLEAR_DIRTY_LOG:
		return vm_clear_dirty_log(vm, argp);
	case KVM_ENABLE_CAP:
		return vm_enable_cap(vm, argp);
	case KVM_SET_TSS_ADDR:
		/* three pages below 4 GiB, as for KVM on VMX */
		if (arg > (u32)(-3 * PAGE_SIZE))
			return -EINVAL;
		mutex_lock(&vm->lock);
		vm->tss_addr = arg;
		mutex_unlock(&vm->lock);
		return 0;
	case KVM_SET_IDENTITY_MAP_ADDR: {
		u64 addr;

		if (copy_from_user(&addr, argp, sizeof(addr)))
			return -EFAULT;
		mutex_lock(&vm->lock);
		ret = -EINVAL;
		if (!vm->nr_vcpus) {
			vm->identity_map_addr = addr;
			ret = 0;
		}
		mutex_unlock(&vm->lock);
		return ret;
	}
	default:
		return vireo_arch_vm_ioctl(vm, ioctl, arg);
	}
}

static int vm_release(struct inode *inode, struct file *filp)
{
	vireo_vm_put(filp->private_data);
	return 0;
}

static const struct file_operations vm_fops = {
	.owner = THIS_MODULE,
	.release = vm_release,
	.unlocked_ioctl = vm_ioctl,
	.compat_ioctl = vm_ioctl,
	.llseek = noop_llseek,
};

int vireo_create_vm(unsigned long type)
{
	const struct vireo_backend *b;
	struct vireo_vm *vm;
	int ret, fd;

	/* only KVM_X86_DEFAULT_VM */
	if (type)
		return -EINVAL;
	b = vireo_get_backend();
	if (!b)
		return -ENODEV;

	ret = -ENOMEM;
	vm = kvzalloc(b->vm_size, GFP_KERNEL_ACCOUNT);
	if (!vm)
		goto put_backend;
	vm->backend = b;
	refcount_set(&vm->refcount, 1);
	mutex_init(&vm->lock);
	spin_lock_init(&vm->mmu_lock);
	vm->mm = current->mm;
	mmgrab(vm->mm);

	vireo_arch_vm_init(vm);
	ret = b->vm_init(vm);
	if (ret)
		goto free_vm;
	ret = vireo_tdp_init(vm);
	if (ret)
		goto destroy_vm;
	ret = vireo_tdp_register(vm);
	if (ret)
		goto free_tdp;
	ret = vireo_eventfd_init(vm);
	if (ret)
		goto destroy_tdp;

	fd = anon_inode_getfd("vireo-vm", &vm_fops, vm, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		ret = fd;
		goto destroy_tdp;
	}
	return fd;

destroy_tdp:
	vireo_eventfd_destroy(vm);
	vireo_tdp_unregister(vm);
free_tdp:
	vireo_tdp_destroy(vm);
destroy_vm:
	b->vm_destroy(vm);
free_vm:
	mmdrop(vm->mm);
	kvfree(vm);
put_backend:
	vireo_put_backend(b);
	return ret;
}
