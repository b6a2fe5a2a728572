// SPDX-License-Identifier: GPL-2.0-only
/*
 * irqfds and ioeventfds (KVM_IRQFD, KVM_IOEVENTFD): eventfds that raise a
 * GSI when userspace (or another driver) signals them, optionally lowered
 * again and reported through a second eventfd when the guest EOIs, and
 * eventfds that guest PIO/MMIO writes signal instead of exiting.
 */
#define pr_fmt(fmt) "vireo: " fmt

#include <linux/eventfd.h>
#include <linux/file.h>
#include <linux/kvm.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/poll.h>
#include <linux/rculist.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

#include <vireo/compat.h>
#include <vireo/irq.h>
#include <vireo/vireo.h>

/* ioeventfds per address space (as KVM's limit per I/O bus) */
#define VIREO_MAX_IOEVENTFDS	1000

enum {
	VIREO_IO_PIO,
	VIREO_IO_MMIO,
	VIREO_IO_SPACES,
};

struct vireo_eventfds {
	/*
	 * Irqfds hooked to their eventfd.  Also taken by the wakeup
	 * callback (under the eventfd's wait-queue lock, any context).
	 * Leaving this list is what hands an irqfd to its shutdown work.
	 */
	spinlock_t lock;
	struct list_head irqfds;
	/*
	 * Serialises KVM_IRQFD and KVM_IOEVENTFD, and every change of the
	 * two RCU lists below.
	 */
	struct mutex mutex;
	/* resampling irqfds (RCU: walked from EOI paths) */
	struct list_head resamplers;
	/* irqfd shutdowns: drained by deassign and by teardown */
	struct workqueue_struct *wq;
	/* RCU: walked by the vCPUs on every unclaimed write */
	struct list_head io[VIREO_IO_SPACES];
	unsigned int nr_io[VIREO_IO_SPACES];
};

struct vireo_irqfd {
	struct vireo_vm *vm;
	struct vireo_eventfds *ev;
	struct list_head list;		/* ev->irqfds */
	struct list_head rs_link;	/* ev->resamplers */
	struct eventfd_ctx *eventfd;
	struct eventfd_ctx *resamplefd;	/* NULL: edge irqfd */
	u32 gsi;
	wait_queue_entry_t wait;
	poll_table pt;
	struct work_struct shutdown;
};

struct vireo_ioeventfd {
	struct list_head link;		/* ev->io[] */
	struct eventfd_ctx *eventfd;
	u64 addr;
	u64 datamatch;
	u32 len;			/* 0: any length */
	bool wildcard;			/* no datamatch */
};

/* ---- irqfds ---- */

static void vireo_irqfd_fire(struct vireo_irqfd *irqfd)
{
	vireo_irq_set(irqfd->vm, irqfd->gsi, 1);
	/* a resampler's line stays up until the guest EOIs */
	if (!irqfd->resamplefd)
		vireo_irq_set(irqfd->vm, irqfd->gsi, 0);
}

/* Caller holds ev->lock; @irqfd is on ev->irqfds. */
static void vireo_irqfd_deactivate(struct vireo_eventfds *ev,
				   struct vireo_irqfd *irqfd)
{
	list_del_init(&irqfd->list);
	queue_work(ev->wq, &irqfd->shutdown);
}

/* Runs for an irqfd nobody can reach any more through ev->irqfds. */
static void vireo_irqfd_shutdown(struct work_struct *work)
{
	struct vireo_irqfd *irqfd = container_of(work, struct vireo_irqfd,
						 shutdown);
	struct vireo_eventfds *ev = irqfd->ev;
	struct vireo_irqfd *other;
	bool last = true;
	u64 cnt;

	/* Takes the wait-queue lock: no wakeup callback runs past this. */
	eventfd_ctx_remove_wait_queue(irqfd->eventfd, &irqfd->wait, &cnt);

	if (irqfd->resamplefd) {
		mutex_lock(&ev->mutex);
		list_del_rcu(&irqfd->rs_link);
		list_for_each_entry(other, &ev->resamplers, rs_link) {
			if (other->gsi == irqfd->gsi) {
				last = false;
				break;
			}
		}
		/* nobody is left to lower the line on the next EOI */
		if (last)
			vireo_irq_set(irqfd->vm, irqfd->gsi, 0);
		mutex_unlock(&ev->mutex);
		synchronize_rcu();
		eventfd_ctx_put(irqfd->resamplefd);
	}
	eventfd_ctx_put(irqfd->eventfd);
	kfree(irqfd);
}

/*
 * The eventfd was signalled or closed.  Called with its wait-queue lock
 * held, in whatever context signalled it (hard interrupts included).
 */
static int vireo_irqfd_wakeup(wait_queue_entry_t *wait, unsigned int mode,
			      int sync, void *key)
{
	struct vireo_irqfd *irqfd = container_of(wait, struct vireo_irqfd,
						 wait);
	__poll_t events = key_to_poll(key);
	unsigned long flags;
	u64 cnt;

	if (events & EPOLLIN) {
		/* consume the count so the next signal wakes us again */
		eventfd_ctx_do_read(irqfd->eventfd, &cnt);
		vireo_irqfd_fire(irqfd);
	}

	if (events & EPOLLHUP) {
		struct vireo_eventfds *ev = irqfd->ev;

		/* only if deassign or teardown did not take it first */
		spin_lock_irqsave(&ev->lock, flags);
		if (!list_empty(&irqfd->list))
			vireo_irqfd_deactivate(ev, irqfd);
		spin_unlock_irqrestore(&ev->lock, flags);
	}
	return 0;
}

static void vireo_irqfd_queue(struct file *file, wait_queue_head_t *wqh,
			      poll_table *pt)
{
	struct vireo_irqfd *irqfd = container_of(pt, struct vireo_irqfd, pt);

	add_wait_queue(wqh, &irqfd->wait);
}

static int vireo_irqfd_assign(struct vireo_vm *vm,
			      const struct kvm_irqfd *args)
{
	struct vireo_eventfds *ev = vm->eventfds;
	struct vireo_irqfd *irqfd, *tmp;
	unsigned long flags;
	struct file *file;
	__poll_t events;
	bool busy = false;
	int ret;

	/* as KVM on x86: irqfds need the in-kernel irqchip */
	if (!vireo_irqchip_in_kernel(vm))
		return -EINVAL;

	irqfd = kzalloc(sizeof(*irqfd), GFP_KERNEL_ACCOUNT);
	if (!irqfd)
		return -ENOMEM;
	irqfd->vm = vm;
	irqfd->ev = ev;
	irqfd->gsi = args->gsi;
	INIT_LIST_HEAD(&irqfd->list);
	INIT_LIST_HEAD(&irqfd->rs_link);
	INIT_WORK(&irqfd->shutdown, vireo_irqfd_shutdown);
	init_waitqueue_func_entry(&irqfd->wait, vireo_irqfd_wakeup);
	/* harmless to unhook even if poll never hooked it */
	INIT_LIST_HEAD(&irqfd->wait.entry);
	init_poll_funcptr(&irqfd->pt, vireo_irqfd_queue);

	file = eventfd_fget(args->fd);
	if (IS_ERR(file)) {
		ret = PTR_ERR(file);
		goto err_free;
	}
	irqfd->eventfd = eventfd_ctx_fileget(file);
	if (IS_ERR(irqfd->eventfd)) {
		ret = PTR_ERR(irqfd->eventfd);
		goto err_fput;
	}

	if (args->flags & KVM_IRQFD_FLAG_RESAMPLE) {
		irqfd->resamplefd = eventfd_ctx_fdget(args->resamplefd);
		if (IS_ERR(irqfd->resamplefd)) {
			ret = PTR_ERR(irqfd->resamplefd);
			goto err_put;
		}
	}

	/*
	 * With the mutex held no deassign can find the irqfd before it is
	 * hooked below, and no HUP can come before fput(): the file is ours.
	 */
	mutex_lock(&ev->mutex);
	spin_lock_irqsave(&ev->lock, flags);
	list_for_each_entry(tmp, &ev->irqfds, list) {
		if (tmp->eventfd == irqfd->eventfd) {
			busy = true;
			break;
		}
	}
	if (!busy)
		list_add_tail(&irqfd->list, &ev->irqfds);
	spin_unlock_irqrestore(&ev->lock, flags);
	if (busy) {
		mutex_unlock(&ev->mutex);
		ret = -EBUSY;
		goto err_put_resample;
	}
	if (irqfd->resamplefd)
		list_add_tail_rcu(&irqfd->rs_link, &ev->resamplers);

	events = vfs_poll(file, &irqfd->pt);
	/* signalled before we listened: deliver that one now */
	if (events & EPOLLIN)
		vireo_irqfd_fire(irqfd);
	mutex_unlock(&ev->mutex);
	/* from here a deassign or a HUP may free it: hands off */
	fput(file);
	return 0;

err_put_resample:
	if (irqfd->resamplefd)
		eventfd_ctx_put(irqfd->resamplefd);
err_put:
	eventfd_ctx_put(irqfd->eventfd);
err_fput:
	fput(file);
err_free:
	kfree(irqfd);
	return ret;
}

static int vireo_irqfd_deassign(struct vireo_vm *vm,
				const struct kvm_irqfd *args)
{
	struct vireo_eventfds *ev = vm->eventfds;
	struct vireo_irqfd *irqfd, *tmp;
	struct eventfd_ctx *ctx;
	unsigned long flags;

	ctx = eventfd_ctx_fdget(args->fd);
	if (IS_ERR(ctx))
		return PTR_ERR(ctx);

	mutex_lock(&ev->mutex);
	spin_lock_irqsave(&ev->lock, flags);
	list_for_each_entry_safe(irqfd, tmp, &ev->irqfds, list) {
		if (irqfd->eventfd == ctx && irqfd->gsi == args->gsi)
			vireo_irqfd_deactivate(ev, irqfd);
	}
	spin_unlock_irqrestore(&ev->lock, flags);
	mutex_unlock(&ev->mutex);
	eventfd_ctx_put(ctx);

	/* gone for good once we return, with a HUP's shutdown too */
	flush_workqueue(ev->wq);
	/* as KVM: no match is not an error */
	return 0;
}

int vireo_irqfd(struct vireo_vm *vm, const struct kvm_irqfd *args)
{
	if (args->flags & ~(KVM_IRQFD_FLAG_DEASSIGN | KVM_IRQFD_FLAG_RESAMPLE))
		return -EINVAL;
	/* RESAMPLE may come along with DEASSIGN: ignored there */
	if (args->flags & KVM_IRQFD_FLAG_DEASSIGN)
		return vireo_irqfd_deassign(vm, args);
	return vireo_irqfd_assign(vm, args);
}

void vireo_irqfd_resample(struct vireo_vm *vm, u32 gsi)
{
	struct vireo_eventfds *ev = vm->eventfds;
	struct vireo_irqfd *irqfd;
	bool lowered = false;

	if (list_empty(&ev->resamplers))
		return;

	rcu_read_lock();
	list_for_each_entry_rcu(irqfd, &ev->resamplers, rs_link) {
		if (irqfd->gsi != gsi)
			continue;
		/* the line is shared by all of them: lower it once */
		if (!lowered) {
			vireo_irq_set(vm, gsi, 0);
			lowered = true;
		}
		vireo_eventfd_signal(irqfd->resamplefd);
	}
	rcu_read_unlock();
}

/* ---- ioeventfds ---- */

/* Two ioeventfds that could both claim one write. */
static bool vireo_ioeventfd_clash(const struct vireo_ioeventfd *a,
				  const struct vireo_ioeventfd *b)
{
	if (a->addr != b->addr)
		return false;
	if (!a->len || !b->len)
		return true;
	if (a->len != b->len)
		return false;
	return a->wildcard || b->wildcard || a->datamatch == b->datamatch;
}

static int vireo_ioeventfd_assign(struct vireo_vm *vm,
				  const struct kvm_ioeventfd *args, int space)
{
	struct vireo_eventfds *ev = vm->eventfds;
	struct vireo_ioeventfd *p, *q;
	int ret;

	switch (args->len) {
	case 0:
	case 1:
	case 2:
	case 4:
	case 8:
		break;
	default:
		return -EINVAL;
	}
	if (args->addr + args->len < args->addr)
		return -EINVAL;
	/* any length cannot compare a value */
	if (!args->len && (args->flags & KVM_IOEVENTFD_FLAG_DATAMATCH))
		return -EINVAL;

	p = kzalloc(sizeof(*p), GFP_KERNEL_ACCOUNT);
	if (!p)
		return -ENOMEM;
	p->eventfd = eventfd_ctx_fdget(args->fd);
	if (IS_ERR(p->eventfd)) {
		ret = PTR_ERR(p->eventfd);
		goto err_free;
	}
	p->addr = args->addr;
	p->len = args->len;
	p->wildcard = !(args->flags & KVM_IOEVENTFD_FLAG_DATAMATCH);
	if (!p->wildcard)
		p->datamatch = args->datamatch;

	mutex_lock(&ev->mutex);
	if (ev->nr_io[space] >= VIREO_MAX_IOEVENTFDS) {
		ret = -ENOSPC;
		goto err_unlock;
	}
	list_for_each_entry(q, &ev->io[space], link) {
		if (vireo_ioeventfd_clash(p, q)) {
			ret = -EEXIST;
			goto err_unlock;
		}
	}
	list_add_tail_rcu(&p->link, &ev->io[space]);
	ev->nr_io[space]++;
	mutex_unlock(&ev->mutex);
	return 0;

err_unlock:
	mutex_unlock(&ev->mutex);
	eventfd_ctx_put(p->eventfd);
err_free:
	kfree(p);
	return ret;
}

static int vireo_ioeventfd_deassign(struct vireo_vm *vm,
				    const struct kvm_ioeventfd *args,
				    int space)
{
	struct vireo_eventfds *ev = vm->eventfds;
	bool wildcard = !(args->flags & KVM_IOEVENTFD_FLAG_DATAMATCH);
	struct vireo_ioeventfd *p, *found = NULL;
	struct eventfd_ctx *ctx;

	ctx = eventfd_ctx_fdget(args->fd);
	if (IS_ERR(ctx))
		return PTR_ERR(ctx);

	mutex_lock(&ev->mutex);
	list_for_each_entry(p, &ev->io[space], link) {
		if (p->eventfd != ctx || p->addr != args->addr ||
		    p->len != args->len || p->wildcard != wildcard)
			continue;
		if (!wildcard && p->datamatch != args->datamatch)
			continue;
		list_del_rcu(&p->link);
		ev->nr_io[space]--;
		found = p;
		break;
	}
	mutex_unlock(&ev->mutex);
	eventfd_ctx_put(ctx);
	if (!found)
		return -ENOENT;

	/* a vCPU may still be signalling it */
	synchronize_rcu();
	eventfd_ctx_put(found->eventfd);
	kfree(found);
	return 0;
}

int vireo_ioeventfd(struct vireo_vm *vm, const struct kvm_ioeventfd *args)
{
	int space;

	/* no virtio-ccw on x86, and nothing unnamed */
	if (args->flags & ~(KVM_IOEVENTFD_FLAG_DATAMATCH |
			    KVM_IOEVENTFD_FLAG_PIO |
			    KVM_IOEVENTFD_FLAG_DEASSIGN))
		return -EINVAL;

	space = (args->flags & KVM_IOEVENTFD_FLAG_PIO) ? VIREO_IO_PIO :
							 VIREO_IO_MMIO;
	if (args->flags & KVM_IOEVENTFD_FLAG_DEASSIGN)
		return vireo_ioeventfd_deassign(vm, args, space);
	return vireo_ioeventfd_assign(vm, args, space);
}

/* The first @len bytes of @data as a little-endian number. */
static u64 vireo_io_value(const void *data, int len)
{
	__le64 raw = 0;

	memcpy(&raw, data, len);
	return le64_to_cpu(raw);
}

bool vireo_ioeventfd_write(struct vireo_vm *vm, bool mmio, u64 addr,
			   int len, const void *data)
{
	struct list_head *head;
	struct vireo_ioeventfd *p;
	bool hit = false;

	head = &vm->eventfds->io[mmio ? VIREO_IO_MMIO : VIREO_IO_PIO];
	/* the common case, on every MMIO exit: nothing registered */
	if (list_empty(head))
		return false;

	rcu_read_lock();
	list_for_each_entry_rcu(p, head, link) {
		if (p->addr != addr)
			continue;
		if (p->len) {
			/* registered lengths are 1, 2, 4 or 8 */
			if (p->len != len)
				continue;
			if (!p->wildcard &&
			    p->datamatch != vireo_io_value(data, len))
				continue;
		}
		/* assign refuses clashes: this is the only taker */
		vireo_eventfd_signal(p->eventfd);
		hit = true;
		break;
	}
	rcu_read_unlock();
	return hit;
}

/* ---- the VM's set ---- */

int vireo_eventfd_init(struct vireo_vm *vm)
{
	struct vireo_eventfds *ev;
	int i;

	ev = kzalloc(sizeof(*ev), GFP_KERNEL_ACCOUNT);
	if (!ev)
		return -ENOMEM;
	ev->wq = alloc_workqueue("vireo-irqfd", 0, 0);
	if (!ev->wq) {
		kfree(ev);
		return -ENOMEM;
	}
	spin_lock_init(&ev->lock);
	INIT_LIST_HEAD(&ev->irqfds);
	mutex_init(&ev->mutex);
	INIT_LIST_HEAD(&ev->resamplers);
	for (i = 0; i < VIREO_IO_SPACES; i++)
		INIT_LIST_HEAD(&ev->io[i]);
	vm->eventfds = ev;
	return 0;
}

void vireo_eventfd_destroy(struct vireo_vm *vm)
{
	struct vireo_eventfds *ev = vm->eventfds;
	struct vireo_irqfd *irqfd, *tmp;
	struct vireo_ioeventfd *p, *n;
	unsigned long flags;
	int i;

	if (!ev)
		return;

	/* a HUP racing with us finds the irqfd gone and leaves it to us */
	spin_lock_irqsave(&ev->lock, flags);
	list_for_each_entry_safe(irqfd, tmp, &ev->irqfds, list)
		vireo_irqfd_deactivate(ev, irqfd);
	spin_unlock_irqrestore(&ev->lock, flags);
	/* drains: every shutdown, HUP's included, has run */
	destroy_workqueue(ev->wq);

	/* no vCPU is left to walk these */
	for (i = 0; i < VIREO_IO_SPACES; i++) {
		list_for_each_entry_safe(p, n, &ev->io[i], link) {
			list_del(&p->link);
			eventfd_ctx_put(p->eventfd);
			kfree(p);
		}
	}
	mutex_destroy(&ev->mutex);
	vm->eventfds = NULL;
	kfree(ev);
}
