// SPDX-License-Identifier: GPL-2.0-only
/*
 * The in-kernel irqchip as a whole: KVM_CREATE_IRQCHIP, the GSI routing
 * table that KVM_IRQ_LINE, irqfds and the PIT go through, MSIs, and the
 * VM ioctls of the irqchip, PIT and eventfd family.
 */
#define pr_fmt(fmt) "vireo: " fmt

#include <linux/bits.h>
#include <linux/build_bug.h>
#include <linux/errno.h>
#include <linux/kvm.h>
#include <linux/mm.h>
#include <linux/mutex.h>
#include <linux/overflow.h>
#include <linux/rcupdate.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/string.h>
#include <linux/uaccess.h>

#include <vireo/irq.h>
#include <vireo/vireo.h>

/* KVM's cap on the entries of one KVM_SET_GSI_ROUTING */
#define MAX_ROUTES		4096
#define PIC_PINS		8
#define ISA_IRQS		16

/* MSI address and data fields */
#define MSI_ADDR_DEST(a)	(((a) >> 12) & 0xff)
#define MSI_ADDR_LOGICAL	BIT(2)
#define MSI_DATA_VECTOR(d)	((d) & 0xff)
#define MSI_DATA_DM(d)		(((d) >> 8) & 7)
#define MSI_DATA_ASSERT		BIT(14)
#define MSI_DATA_LEVEL		BIT(15)
#define MSI_DM_RESERVED		3

/* ---- the routing table ---- */

static struct vireo_routing *routing_alloc(u32 nr)
{
	struct vireo_routing *rt;

	rt = kvzalloc(struct_size(rt, r, nr), GFP_KERNEL_ACCOUNT);
	if (rt)
		rt->nr = nr;
	return rt;
}

static void set_irqchip_route(struct vireo_route *e, u32 gsi, u32 chip,
			      u32 pin)
{
	e->gsi = gsi;
	e->type = KVM_IRQ_ROUTING_IRQCHIP;
	e->irqchip.chip = chip;
	e->irqchip.pin = pin;
}

/*
 * What KVM_CREATE_IRQCHIP starts with: GSI n is IOAPIC pin n, and the
 * ISA IRQs 0-15 also reach the PICs.  Any IRQ 0 to pin 2 override is
 * the VMM's to install, as it is the one writing the MADT.
 */
static struct vireo_routing *default_routing(void)
{
	struct vireo_routing *rt;
	u32 gsi, i = 0;

	rt = routing_alloc(ISA_IRQS + VIREO_IOAPIC_PINS);
	if (!rt)
		return NULL;
	for (gsi = 0; gsi < VIREO_IOAPIC_PINS; gsi++) {
		if (gsi < ISA_IRQS)
			set_irqchip_route(&rt->r[i++], gsi,
					  gsi < PIC_PINS ?
					  KVM_IRQCHIP_PIC_MASTER :
					  KVM_IRQCHIP_PIC_SLAVE,
					  gsi % PIC_PINS);
		set_irqchip_route(&rt->r[i++], gsi, KVM_IRQCHIP_IOAPIC, gsi);
	}
	return rt;
}

static int route_from_user(struct vireo_route *e,
			   const struct kvm_irq_routing_entry *ue)
{
	u32 chip, pin;

	if (ue->gsi >= VIREO_NR_GSIS)
		return -EINVAL;
	/* no flags for either type: x86 MSIs carry no device id */
	if (ue->flags)
		return -EINVAL;

	switch (ue->type) {
	case KVM_IRQ_ROUTING_IRQCHIP:
		chip = ue->u.irqchip.irqchip;
		pin = ue->u.irqchip.pin;
		switch (chip) {
		case KVM_IRQCHIP_PIC_MASTER:
		case KVM_IRQCHIP_PIC_SLAVE:
			if (pin >= PIC_PINS)
				return -EINVAL;
			break;
		case KVM_IRQCHIP_IOAPIC:
			if (pin >= VIREO_IOAPIC_PINS)
				return -EINVAL;
			break;
		default:
			return -EINVAL;
		}
		set_irqchip_route(e, ue->gsi, chip, pin);
		return 0;
	case KVM_IRQ_ROUTING_MSI:
		e->gsi = ue->gsi;
		e->type = KVM_IRQ_ROUTING_MSI;
		e->msi.addr = (u64)ue->u.msi.address_hi << 32 |
			      ue->u.msi.address_lo;
		e->msi.data = ue->u.msi.data;
		return 0;
	default:
		return -EINVAL;
	}
}

static int route_cmp(const void *a, const void *b)
{
	u32 ga = ((const struct vireo_route *)a)->gsi;
	u32 gb = ((const struct vireo_route *)b)->gsi;

	return (ga > gb) - (ga < gb);
}

/*
 * Two routes of one GSI may only go to two different irqchips; an MSI
 * must be the GSI's only route.  @rt is sorted, so a GSI's routes are
 * neighbours, and a clean run of them is never longer than three: the
 * inner loop stays short whatever the VMM sends.
 */
static int check_routes(const struct vireo_routing *rt)
{
	const struct vireo_route *a, *b;
	u32 i, j;

	for (i = 1; i < rt->nr; i++) {
		a = &rt->r[i];
		for (j = i; j-- > 0 && rt->r[j].gsi == a->gsi;) {
			b = &rt->r[j];
			if (a->type != KVM_IRQ_ROUTING_IRQCHIP ||
			    b->type != KVM_IRQ_ROUTING_IRQCHIP ||
			    a->irqchip.chip == b->irqchip.chip)
				return -EINVAL;
		}
	}
	return 0;
}

/* The first route of @gsi, or rt->nr. */
static u32 first_route(const struct vireo_routing *rt, u32 gsi)
{
	u32 lo = 0, hi = rt->nr, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (rt->r[mid].gsi < gsi)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* ---- raising lines ---- */

int vireo_msi_deliver(struct vireo_vm *vm, u64 addr, u32 data)
{
	struct vireo_irq_msg msg = {
		.dest = MSI_ADDR_DEST(addr),
		.vector = MSI_DATA_VECTOR(data),
		.delivery_mode = MSI_DATA_DM(data),
		.shorthand = VIREO_SH_NONE,
		.logical = addr & MSI_ADDR_LOGICAL,
		.level_trig = data & MSI_DATA_LEVEL,
		.src = NULL,
	};

	/*
	 * As KVM does, the address is decoded without checking that it
	 * lies in the 0xfeexxxxx window, and its high half (extended
	 * destination IDs) is ignored.
	 */
	if (!vireo_irqchip_in_kernel(vm) ||
	    msg.delivery_mode == MSI_DM_RESERVED)
		return -1;
	/* an edge MSI always asserts; a level one says which way it went */
	msg.assert = !msg.level_trig || (data & MSI_DATA_ASSERT);
	return vireo_apic_deliver(vm, &msg);
}

static int route_set(struct vireo_vm *vm, const struct vireo_route *e,
		     int level)
{
	if (e->type == KVM_IRQ_ROUTING_MSI)
		return level ? vireo_msi_deliver(vm, e->msi.addr, e->msi.data)
			     : -1;

	switch (e->irqchip.chip) {
	case KVM_IRQCHIP_PIC_MASTER:
		return vireo_pic_set_irq(vm, e->irqchip.pin, level);
	case KVM_IRQCHIP_PIC_SLAVE:
		return vireo_pic_set_irq(vm, e->irqchip.pin + PIC_PINS, level);
	default:
		return vireo_ioapic_set_irq(vm, e->irqchip.pin, level);
	}
}

/*
 * As KVM counts for KVM_IRQ_LINE_STATUS: the sum of what the routes that
 * took the change report (APICs reached, or 1 for a PIC that latched
 * it), -1 if none did, -EINVAL if the GSI has no route.
 */
int vireo_irq_set(struct vireo_vm *vm, u32 gsi, int level)
{
	const struct vireo_routing *rt;
	struct vireo_irqchip *chip;
	int ret = -EINVAL, r;
	u32 i;

	/* pairs with the release in create_irqchip() */
	chip = smp_load_acquire(&vm->irqchip);
	if (!chip)
		return -EINVAL;
	level = !!level;

	rcu_read_lock();
	rt = rcu_dereference(chip->routing);
	/* no table while the chips are being made or unmade */
	for (i = rt ? first_route(rt, gsi) : 0;
	     rt && i < rt->nr && rt->r[i].gsi == gsi; i++) {
		r = route_set(vm, &rt->r[i], level);
		if (r < 0)
			ret = ret < 0 ? -1 : ret;
		else
			ret = ret < 0 ? r : ret + r;
	}
	rcu_read_unlock();
	return ret;
}

void vireo_irq_ack_notify(struct vireo_vm *vm, u32 chip_id, u32 pin)
{
	const struct vireo_routing *rt;
	const struct vireo_route *e;
	struct vireo_irqchip *chip;
	u32 i;

	/* pairs with the release in create_irqchip() */
	chip = smp_load_acquire(&vm->irqchip);
	if (!chip)
		return;
	rcu_read_lock();
	rt = rcu_dereference(chip->routing);
	for (i = 0; rt && i < rt->nr; i++) {
		e = &rt->r[i];
		if (e->type == KVM_IRQ_ROUTING_IRQCHIP &&
		    e->irqchip.chip == chip_id && e->irqchip.pin == pin)
			vireo_irqfd_resample(vm, e->gsi);
	}
	rcu_read_unlock();
}

/* ---- making and unmaking ---- */

/*
 * The PIC and IOAPIC hang themselves on vm->irqchip, so it goes up
 * before they exist.  Until the routing table goes in last, nothing
 * reaches them through it, and under vm->lock (held throughout) a
 * non-NULL vm->irqchip always means a finished one.
 */
static int create_irqchip(struct vireo_vm *vm)
{
	struct vireo_irqchip *chip = NULL;
	struct vireo_routing *rt = NULL;
	int ret;

	mutex_lock(&vm->lock);
	ret = -EEXIST;
	if (vm->irqchip)
		goto unlock;
	/* vCPUs made before it have no local APIC */
	ret = -EINVAL;
	if (vm->nr_vcpus)
		goto unlock;

	ret = -ENOMEM;
	chip = kzalloc(sizeof(*chip), GFP_KERNEL_ACCOUNT);
	rt = default_routing();
	if (!chip || !rt)
		goto free;
	mutex_init(&chip->routing_lock);

	/* the chip's fields before the pointer, for lockless readers */
	smp_store_release(&vm->irqchip, chip);
	ret = vireo_pic_create(vm);
	if (ret)
		goto unpublish;
	ret = vireo_ioapic_create(vm);
	if (ret)
		goto free_pic;
	rcu_assign_pointer(chip->routing, rt);
	mutex_unlock(&vm->lock);
	return 0;

free_pic:
	vireo_pic_free(vm);
unpublish:
	WRITE_ONCE(vm->irqchip, NULL);
	/* an irqfd or KVM_IRQ_LINE may be looking at it (under RCU) */
	synchronize_rcu();
free:
	kvfree(rt);
	kfree(chip);
unlock:
	mutex_unlock(&vm->lock);
	return ret;
}

/*
 * At VM teardown, with every vCPU and eventfd gone.  The PIT stops
 * first, as its timer raises GSI 0; the table goes before the chips,
 * so that any late walker finds no route to them.
 */
void vireo_irqchip_destroy(struct vireo_vm *vm)
{
	struct vireo_irqchip *chip = vm->irqchip;
	struct vireo_routing *rt;

	if (!chip)
		return;
	vireo_pit_free(vm);
	rt = rcu_dereference_protected(chip->routing, true);
	RCU_INIT_POINTER(chip->routing, NULL);
	synchronize_rcu();
	vireo_ioapic_free(vm);
	vireo_pic_free(vm);
	WRITE_ONCE(vm->irqchip, NULL);
	kvfree(rt);
	kfree(chip);
}

/* ---- ioctls ---- */

static int set_gsi_routing(struct vireo_vm *vm,
			   struct kvm_irq_routing __user *argp)
{
	struct kvm_irq_routing_entry ue;
	struct vireo_routing *rt, *old;
	struct kvm_irq_routing hdr;
	struct vireo_irqchip *chip;
	int ret;
	u32 i;

	if (copy_from_user(&hdr, argp, sizeof(hdr)))
		return -EFAULT;
	if (hdr.nr > MAX_ROUTES || hdr.flags)
		return -EINVAL;
	if (!vireo_irqchip_in_kernel(vm))
		return -EINVAL;

	rt = routing_alloc(hdr.nr);
	if (!rt)
		return -ENOMEM;
	for (i = 0; i < hdr.nr; i++) {
		ret = -EFAULT;
		if (copy_from_user(&ue, &argp->entries[i], sizeof(ue)))
			goto free;
		ret = route_from_user(&rt->r[i], &ue);
		if (ret)
			goto free;
	}
	sort(rt->r, rt->nr, sizeof(rt->r[0]), route_cmp, NULL);
	ret = check_routes(rt);
	if (ret)
		goto free;

	/* seen under vm->lock, it is complete and lives as long as the VM */
	mutex_lock(&vm->lock);
	chip = vm->irqchip;
	mutex_unlock(&vm->lock);
	ret = -EINVAL;
	if (!chip)
		goto free;

	mutex_lock(&chip->routing_lock);
	old = rcu_dereference_protected(chip->routing,
					lockdep_is_held(&chip->routing_lock));
	rcu_assign_pointer(chip->routing, rt);
	mutex_unlock(&chip->routing_lock);
	if (old)
		kvfree_rcu(old, rcu);
	return 0;

free:
	kvfree(rt);
	return ret;
}

static int irq_line(struct vireo_vm *vm, void __user *argp, bool status)
{
	struct kvm_irq_level irq;
	int ret;

	if (copy_from_user(&irq, argp, sizeof(irq)))
		return -EFAULT;
	if (!vireo_irqchip_in_kernel(vm))
		return -ENXIO;
	ret = vireo_irq_set(vm, irq.irq, irq.level);
	if (!status)
		return 0;
	/* no route, or no chip took it: -1, as KVM says */
	irq.status = ret < 0 ? -1 : ret;
	if (copy_to_user(argp, &irq, sizeof(irq)))
		return -EFAULT;
	return 0;
}

static int signal_msi(struct vireo_vm *vm, void __user *argp)
{
	struct kvm_msi msi;

	if (copy_from_user(&msi, argp, sizeof(msi)))
		return -EFAULT;
	if (!vireo_irqchip_in_kernel(vm) || msi.flags)
		return -EINVAL;
	/*
	 * The number of APICs reached; 0 for none, as KVM answers an MSI
	 * to an APIC ID no vCPU has.
	 */
	return max(vireo_msi_deliver(vm, (u64)msi.address_hi << 32 |
				     msi.address_lo, msi.data), 0);
}

static int irqchip_state(struct vireo_vm *vm, void __user *argp, bool set)
{
	struct vireo_irqchip *chip;
	struct kvm_irqchip *s;
	int ret = 0;

	s = kmalloc(sizeof(*s), GFP_KERNEL_ACCOUNT);
	if (!s)
		return -ENOMEM;
	if (copy_from_user(s, argp, sizeof(*s))) {
		ret = -EFAULT;
		goto out;
	}

	mutex_lock(&vm->lock);
	chip = vm->irqchip;
	if (!chip) {
		ret = -ENXIO;
	} else if (s->chip_id == KVM_IRQCHIP_PIC_MASTER ||
		   s->chip_id == KVM_IRQCHIP_PIC_SLAVE) {
		if (set)
			ret = vireo_pic_set_state(vm, s->chip_id, &s->chip.pic);
		else
			vireo_pic_get_state(vm, s->chip_id, &s->chip.pic);
	} else if (s->chip_id == KVM_IRQCHIP_IOAPIC) {
		if (set)
			ret = vireo_ioapic_set_state(vm, &s->chip.ioapic);
		else
			vireo_ioapic_get_state(vm, &s->chip.ioapic);
	} else {
		ret = -EINVAL;
	}
	mutex_unlock(&vm->lock);

	if (!ret && !set && copy_to_user(argp, s, sizeof(*s)))
		ret = -EFAULT;
out:
	kfree(s);
	return ret;
}

static int create_pit(struct vireo_vm *vm, u32 flags)
{
	int ret;

	mutex_lock(&vm->lock);
	if (vm->irqchip && vm->irqchip->pit)
		ret = -EEXIST;
	else if (!vm->irqchip)
		ret = -ENOENT;
	else
		ret = vireo_pit_create(vm, flags);
	mutex_unlock(&vm->lock);
	return ret;
}

static int get_pit2(struct vireo_vm *vm, void __user *argp)
{
	struct kvm_pit_state2 s;
	int ret;

	mutex_lock(&vm->lock);
	ret = vireo_pit_get_state(vm, &s);
	mutex_unlock(&vm->lock);
	if (ret)
		return ret;
	if (copy_to_user(argp, &s, sizeof(s)))
		return -EFAULT;
	return 0;
}

static int set_pit2(struct vireo_vm *vm, void __user *argp)
{
	struct kvm_pit_state2 s;
	int ret;

	if (copy_from_user(&s, argp, sizeof(s)))
		return -EFAULT;
	mutex_lock(&vm->lock);
	ret = vireo_pit_set_state(vm, &s);
	mutex_unlock(&vm->lock);
	return ret;
}

/* The old KVM_GET/SET_PIT: the channels without the flags. */
static int pit_state_v1(struct vireo_vm *vm, void __user *argp, bool set)
{
	struct kvm_pit_state2 s2;
	struct kvm_pit_state s;
	int ret;

	if (set && copy_from_user(&s, argp, sizeof(s)))
		return -EFAULT;
	mutex_lock(&vm->lock);
	ret = vireo_pit_get_state(vm, &s2);
	if (!ret && set) {
		BUILD_BUG_ON(sizeof(s.channels) != sizeof(s2.channels));
		memcpy(s2.channels, s.channels, sizeof(s2.channels));
		ret = vireo_pit_set_state(vm, &s2);
	}
	mutex_unlock(&vm->lock);
	if (ret || set)
		return ret;
	memcpy(s.channels, s2.channels, sizeof(s.channels));
	if (copy_to_user(argp, &s, sizeof(s)))
		return -EFAULT;
	return 0;
}

static int reinject_control(struct vireo_vm *vm, void __user *argp)
{
	struct kvm_reinject_control rc;
	int ret = 0;

	if (copy_from_user(&rc, argp, sizeof(rc)))
		return -EFAULT;
	/* accepted, but ticks are never reinjected (arch/x86/pit.c) */
	mutex_lock(&vm->lock);
	if (!vm->irqchip || !vm->irqchip->pit)
		ret = -ENXIO;
	mutex_unlock(&vm->lock);
	return ret;
}

/* Only vCPU 0 can be the BSP: the local APICs say so at creation. */
static int set_boot_cpu_id(struct vireo_vm *vm, unsigned long id)
{
	int ret = 0;

	mutex_lock(&vm->lock);
	if (vm->nr_vcpus)
		ret = -EBUSY;
	else if (id)
		ret = -EINVAL;
	mutex_unlock(&vm->lock);
	return ret;
}

long vireo_irq_vm_ioctl(struct vireo_vm *vm, unsigned int ioctl,
			void __user *argp)
{
	union {
		struct kvm_pit_config pit;
		struct kvm_irqfd irqfd;
		struct kvm_ioeventfd ioeventfd;
	} u;

	switch (ioctl) {
	case KVM_CREATE_IRQCHIP:
		return create_irqchip(vm);
	case KVM_GET_IRQCHIP:
		return irqchip_state(vm, argp, false);
	case KVM_SET_IRQCHIP:
		return irqchip_state(vm, argp, true);
	case KVM_IRQ_LINE:
		return irq_line(vm, argp, false);
	case KVM_IRQ_LINE_STATUS:
		return irq_line(vm, argp, true);
	case KVM_SET_GSI_ROUTING:
		return set_gsi_routing(vm, argp);
	case KVM_SIGNAL_MSI:
		return signal_msi(vm, argp);
	case KVM_CREATE_PIT:
		/* the old call: the speaker port stub came with it */
		return create_pit(vm, KVM_PIT_SPEAKER_DUMMY);
	case KVM_CREATE_PIT2:
		if (copy_from_user(&u.pit, argp, sizeof(u.pit)))
			return -EFAULT;
		return create_pit(vm, u.pit.flags);
	case KVM_GET_PIT2:
		return get_pit2(vm, argp);
	case KVM_SET_PIT2:
		return set_pit2(vm, argp);
	case KVM_GET_PIT:
		return pit_state_v1(vm, argp, false);
	case KVM_SET_PIT:
		return pit_state_v1(vm, argp, true);
	case KVM_REINJECT_CONTROL:
		return reinject_control(vm, argp);
	case KVM_IRQFD:
		if (copy_from_user(&u.irqfd, argp, sizeof(u.irqfd)))
			return -EFAULT;
		return vireo_irqfd(vm, &u.irqfd);
	case KVM_IOEVENTFD:
		if (copy_from_user(&u.ioeventfd, argp, sizeof(u.ioeventfd)))
			return -EFAULT;
		return vireo_ioeventfd(vm, &u.ioeventfd);
	case KVM_SET_BOOT_CPU_ID:
		/* the id is the argument itself, not a pointer */
		return set_boot_cpu_id(vm, (unsigned long)argp);
	default:
		return -ENOTTY;
	}
}
