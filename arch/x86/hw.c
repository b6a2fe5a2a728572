// SPDX-License-Identifier: GPL-2.0-only
/*
 * Turning the vendor's virtualization extensions on and off on every CPU:
 * at backend registration, through CPU hotplug, around suspend, and in an
 * emergency (crash, kexec, reboot) where the CPU must leave VMX root
 * operation or clear EFER.SVME before INIT can reset it.
 */
#define pr_fmt(fmt) "vireo: " fmt

#include <linux/cpu.h>
#include <linux/cpuhotplug.h>
#include <linux/irqflags.h>
#include <linux/percpu.h>
#include <linux/smp.h>
#include <asm/reboot.h>

#include <vireo/compat.h>
#include <vireo/core.h>

static const struct vireo_backend *hw_backend;
static enum cpuhp_state hw_cpuhp_state;
static DEFINE_PER_CPU(bool, hw_enabled);

static int hw_enable_this_cpu(void)
{
	unsigned long flags;
	int ret = 0;

	local_irq_save(flags);
	if (!__this_cpu_read(hw_enabled)) {
		ret = hw_backend->hardware_enable();
		if (!ret)
			__this_cpu_write(hw_enabled, true);
	}
	local_irq_restore(flags);
	return ret;
}

static void hw_disable_this_cpu(void)
{
	unsigned long flags;

	local_irq_save(flags);
	if (__this_cpu_read(hw_enabled)) {
		vireo_uret_cpu_down();
		hw_backend->hardware_disable();
		__this_cpu_write(hw_enabled, false);
	}
	local_irq_restore(flags);
}

static int hw_cpu_online(unsigned int cpu)
{
	int ret = hw_enable_this_cpu();

	if (ret)
		pr_err("cannot enable %s on CPU %u: %d\n", hw_backend->name,
		       cpu, ret);
	return ret;
}

static int hw_cpu_offline(unsigned int cpu)
{
	hw_disable_this_cpu();
	return 0;
}

/* Suspend and resume run on the last CPU standing, interrupts off. */
static int hw_suspend(VIREO_SYSCORE_ARGS)
{
	hw_disable_this_cpu();
	return 0;
}

static void hw_resume(VIREO_SYSCORE_ARGS)
{
	if (hw_enable_this_cpu())
		pr_err("cannot re-enable %s after resume\n", hw_backend->name);
}

static void hw_disable_ipi(void *unused)
{
	hw_disable_this_cpu();
}

/* Reboot and kexec: leave VMX/SVM everywhere so INIT can reset the CPUs. */
static void hw_shutdown(VIREO_SYSCORE_ARGS)
{
	on_each_cpu(hw_disable_ipi, NULL, 1);
}

static struct vireo_syscore hw_syscore = {
	.ops = {
		.suspend = hw_suspend,
		.resume = hw_resume,
		.shutdown = hw_shutdown,
	},
};

static void hw_emergency_disable(void)
{
	const struct vireo_backend *b = READ_ONCE(hw_backend);

	if (b && this_cpu_read(hw_enabled)) {
		b->emergency_disable();
		this_cpu_write(hw_enabled, false);
	}
}

int vireo_hw_enable_all(const struct vireo_backend *b)
{
	int ret;

	hw_backend = b;
	cpu_emergency_register_virt_callback(hw_emergency_disable);
	ret = cpuhp_setup_state(CPUHP_AP_ONLINE_DYN, "vireo:online",
				hw_cpu_online, hw_cpu_offline);
	if (ret < 0) {
		cpu_emergency_unregister_virt_callback(hw_emergency_disable);
		hw_backend = NULL;
		return ret;
	}
	hw_cpuhp_state = ret;
	vireo_register_syscore(&hw_syscore);
	return 0;
}

void vireo_hw_disable_all(void)
{
	vireo_unregister_syscore(&hw_syscore);
	cpuhp_remove_state(hw_cpuhp_state);
	cpu_emergency_unregister_virt_callback(hw_emergency_disable);
	hw_backend = NULL;
}
