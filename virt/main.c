// SPDX-License-Identifier: GPL-2.0-only
/*
 * vireo.ko: the /dev/vireo character device and the registry of the
 * vendor backend that does the hardware work.
 */
#define pr_fmt(fmt) "vireo: " fmt

#include <linux/fs.h>
#include <linux/kvm.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/vireo.h>

#include <vireo/core.h>

static DEFINE_MUTEX(backend_lock);
static const struct vireo_backend *backend;

static const struct file_operations probe_fops = {
	.owner = THIS_MODULE,
};

static bool other_hypervisor_loaded(void)
{
	/*
	 * KVM registers /dev/kvm at the fixed misc minor KVM_MINOR when a
	 * vendor module (kvm-intel, kvm-amd) loads.  Claiming that minor
	 * for an instant tells whether it is taken, without touching any
	 * of KVM's symbols.
	 */
	struct miscdevice probe = {
		.minor = KVM_MINOR,
		.name = "vireo-kvm-probe",
		.fops = &probe_fops,
	};

	if (misc_register(&probe))
		return true;
	misc_deregister(&probe);
	return false;
}

static bool backend_complete(const struct vireo_backend *b)
{
	return b->hardware_enable && b->hardware_disable &&
	       b->emergency_disable && b->vm_init && b->vm_destroy &&
	       b->vcpu_create && b->vcpu_free && b->vcpu_load &&
	       b->vcpu_put && b->vcpu_run && b->get_sregs && b->set_sregs &&
	       b->get_msr && b->set_msr && b->get_interrupt_shadow &&
	       b->get_cr8 &&
	       b->set_interrupt_shadow && b->get_nmi_mask &&
	       b->set_nmi_mask && b->nmi_allowed &&
	       b->tdp_entry && b->set_tdp_root &&
	       b->flush_tlb && b->vm_size >= sizeof(struct vireo_vm) &&
	       b->vcpu_size >= sizeof(struct vireo_vcpu);
}

int vireo_register_backend(const struct vireo_backend *b)
{
	int ret;

	if (!backend_complete(b)) {
		pr_err("backend %s lacks operations, refused\n", b->name);
		return -EINVAL;
	}
	mutex_lock(&backend_lock);
	if (backend) {
		pr_err("backend %s already registered, refusing %s\n",
		       backend->name, b->name);
		ret = -EBUSY;
		goto out;
	}
	if (other_hypervisor_loaded()) {
		pr_err("another hypervisor owns /dev/kvm (kvm-intel or kvm-amd loaded): unload it first\n");
		ret = -EBUSY;
		goto out;
	}
	ret = vireo_hw_enable_all(b);
	if (ret)
		goto out;
	backend = b;
	pr_info("backend %s registered, enabled on %u CPUs\n", b->name,
		num_online_cpus());
out:
	mutex_unlock(&backend_lock);
	return ret;
}
EXPORT_SYMBOL_GPL(vireo_register_backend);

void vireo_unregister_backend(const struct vireo_backend *b)
{
	mutex_lock(&backend_lock);
	if (backend == b) {
		vireo_hw_disable_all();
		backend = NULL;
		pr_info("backend %s unregistered\n", b->name);
	}
	mutex_unlock(&backend_lock);
}
EXPORT_SYMBOL_GPL(vireo_unregister_backend);

const struct vireo_backend *vireo_get_backend(void)
{
	const struct vireo_backend *b;

	mutex_lock(&backend_lock);
	b = backend;
	if (b && !try_module_get(b->owner))
		b = NULL;
	mutex_unlock(&backend_lock);
	return b;
}

void vireo_put_backend(const struct vireo_backend *b)
{
	module_put(b->owner);
}

static long vireo_dev_ioctl(struct file *filp, unsigned int ioctl,
			    unsigned long arg)
{
	long ret;

	switch (ioctl) {
	case KVM_GET_API_VERSION:
		if (arg)
			return -EINVAL;
		return KVM_API_VERSION;
	case KVM_CHECK_EXTENSION:
		return vireo_check_extension(NULL, arg);
	case KVM_CREATE_VM:
		return vireo_create_vm(arg);
	case KVM_GET_VCPU_MMAP_SIZE:
		if (arg)
			return -EINVAL;
		/* kvm_run, then the PIO data page */
		return 2 * PAGE_SIZE;
	case KVM_GET_SUPPORTED_CPUID:
		return vireo_get_supported_cpuid((void __user *)arg);
	case KVM_GET_MSR_INDEX_LIST:
		return vireo_get_msr_index_list((void __user *)arg);
	case KVM_GET_MSR_FEATURE_INDEX_LIST:
		return vireo_get_msr_feature_index_list((void __user *)arg);
	case KVM_GET_MSRS:
		return vireo_get_feature_msrs((void __user *)arg);
	case KVM_X86_GET_MCE_CAP_SUPPORTED:
		return vireo_get_mce_cap_supported((void __user *)arg);
	case VIREO_GET_BACKEND:
		mutex_lock(&backend_lock);
		ret = backend ? backend->id : VIREO_BACKEND_NONE;
		mutex_unlock(&backend_lock);
		return ret;
	default:
		/* KVM answers unknown ioctls on its device fd with EINVAL. */
		return -EINVAL;
	}
}

static const struct file_operations vireo_dev_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = vireo_dev_ioctl,
	.compat_ioctl = vireo_dev_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice vireo_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "vireo",
	.fops = &vireo_dev_fops,
};

static int __init vireo_init(void)
{
	int ret;

	vireo_arch_init();
	ret = vireo_vcpu_init();
	if (ret)
		return ret;
	ret = misc_register(&vireo_dev);
	if (ret) {
		pr_err("cannot register /dev/vireo: %d\n", ret);
		vireo_vcpu_exit();
		return ret;
	}
	pr_info("loaded: /dev/vireo speaks KVM API %d\n", KVM_API_VERSION);
	return 0;
}

static void __exit vireo_exit(void)
{
	misc_deregister(&vireo_dev);
	vireo_vcpu_exit();
	pr_info("unloaded\n");
}

module_init(vireo_init);
module_exit(vireo_exit);

MODULE_DESCRIPTION("Vireo hypervisor core: /dev/vireo speaking the KVM ABI");
MODULE_AUTHOR("The Vireo developers");
MODULE_LICENSE("GPL");
