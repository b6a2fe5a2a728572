// SPDX-License-Identifier: GPL-2.0-only
/*
 * MSRs: the ones the core keeps for every vendor (TSC, APIC base, MTRRs,
 * MISC_ENABLE, SPEC_CTRL, TSC_AUX, kvmclock, ...), the KVM_GET/SET_MSRS
 * and index-list ioctls, the MSRs switched lazily on return to
 * userspace, and the kvmclock (pvclock) pages.
 */
#define pr_fmt(fmt) "vireo: " fmt

#include <linux/kvm.h>
#include <linux/math64.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/timekeeping.h>
#include <linux/uaccess.h>
#include <linux/user-return-notifier.h>
#include <asm/apicdef.h>
#include <asm/cpufeature.h>
#include <asm/msr.h>
#include <asm/pvclock-abi.h>
#include <asm/tsc.h>

#include <vireo/core.h>
#include <vireo/irq.h>
#include <vireo/mmu.h>

static bool ignore_msrs;
module_param(ignore_msrs, bool, 0644);
MODULE_PARM_DESC(ignore_msrs, "Answer guest accesses to unknown MSRs with 0 / ignore them instead of #GP (default: off)");

#define MSR_KVM_WALL_CLOCK_OLD	0x11
#define MSR_KVM_SYSTEM_TIME_OLD	0x12
#define MSR_KVM_WALL_CLOCK_NEW_	0x4b564d00
#define MSR_KVM_SYSTEM_TIME_NEW_	0x4b564d01
#define MAX_IO_MSRS		256
/* MCG_CAP: MCG_CTL present, software error recovery; banks in 7:0 */
#define MCG_CTL_P_		BIT_ULL(8)
#define MCG_SER_P_		BIT_ULL(24)
#define MCE_CAP_SUPPORTED	(MCG_CTL_P_ | MCG_SER_P_)
#define MCG_BANKS		0xffULL
#define MCG_EXT_CNT		GENMASK_ULL(23, 16)
#define MTRR_CAP_VALUE		(VIREO_MTRR_VAR | BIT(8) | BIT(10))
#define MISC_ENABLE_DEFAULT	(MSR_IA32_MISC_ENABLE_FAST_STRING | \
				 MSR_IA32_MISC_ENABLE_BTS_UNAVAIL | \
				 MSR_IA32_MISC_ENABLE_PEBS_UNAVAIL)
#define APIC_BASE_DEFAULT	0xfee00000ULL
#define APIC_BASE_BSP_		BIT_ULL(8)
#define APIC_BASE_EXTD		BIT_ULL(10)
#define APIC_BASE_ENABLE_	BIT_ULL(11)
#define UCODE_REV_DEFAULT	0x100000000ULL
/* the MTRRs, by their SDM numbers */
#define MTRR_CAP		0x0fe
#define MTRR_VAR_FIRST		0x200
#define MTRR_VAR_LAST		(MTRR_VAR_FIRST + 2 * VIREO_MTRR_VAR - 1)
#define MTRR_FIX_64K_00000	0x250
#define MTRR_FIX_16K_80000	0x258
#define MTRR_FIX_16K_A0000	0x259
#define MTRR_FIX_4K_C0000	0x268
#define MTRR_FIX_4K_F8000	0x26f
#define MTRR_DEF_TYPE		0x2ff

/* What KVM_GET_MSR_INDEX_LIST offers (those the host has, see below). */
static const u32 msrs_to_save[] = {
	MSR_IA32_SYSENTER_CS, MSR_IA32_SYSENTER_ESP, MSR_IA32_SYSENTER_EIP,
	MSR_STAR, MSR_CSTAR, MSR_KERNEL_GS_BASE, MSR_SYSCALL_MASK, MSR_LSTAR,
	MSR_IA32_TSC, MSR_IA32_CR_PAT, MSR_TSC_AUX, MSR_IA32_SPEC_CTRL,
	MSR_IA32_TSC_ADJUST, MSR_KVM_SYSTEM_TIME_NEW_, MSR_KVM_WALL_CLOCK_NEW_,
	MSR_KVM_SYSTEM_TIME_OLD, MSR_KVM_WALL_CLOCK_OLD,
	MSR_IA32_TSC_DEADLINE, MSR_IA32_MISC_ENABLE, MSR_IA32_MCG_STATUS,
	MSR_IA32_UCODE_REV,
};

/* KVM_GET_MSR_FEATURE_INDEX_LIST: read on the device fd */
static const u32 feature_msrs[] = {
	MSR_IA32_UCODE_REV,
};

static bool host_has_msr(u32 index)
{
	switch (index) {
	case MSR_TSC_AUX:
		return boot_cpu_has(X86_FEATURE_RDTSCP) ||
		       boot_cpu_has(X86_FEATURE_RDPID);
	case MSR_IA32_SPEC_CTRL:
		return boot_cpu_has(X86_FEATURE_MSR_SPEC_CTRL);
	default:
		return true;
	}
}

static int copy_index_list(void __user *argp, const u32 *list, int n)
{
	struct kvm_msr_list __user *user = argp;
	u32 *out, want;
	int i, count = 0, ret = 0;

	if (get_user(want, &user->nmsrs))
		return -EFAULT;
	out = kcalloc(n, sizeof(*out), GFP_KERNEL);
	if (!out)
		return -ENOMEM;
	for (i = 0; i < n; i++)
		if (host_has_msr(list[i]))
			out[count++] = list[i];
	if (put_user(count, &user->nmsrs))
		ret = -EFAULT;
	else if (want < count)
		ret = -E2BIG;
	else if (copy_to_user(user->indices, out, count * sizeof(u32)))
		ret = -EFAULT;
	kfree(out);
	return ret;
}

long vireo_get_msr_index_list(void __user *argp)
{
	return copy_index_list(argp, msrs_to_save, ARRAY_SIZE(msrs_to_save));
}

long vireo_get_msr_feature_index_list(void __user *argp)
{
	return copy_index_list(argp, feature_msrs, ARRAY_SIZE(feature_msrs));
}

/* ---- MSRs switched on return to userspace ---- */

/*
 * TSC_AUX (both vendors) and, on VMX, the SYSCALL MSRs hold the guest's
 * values while the vCPU thread stays in the kernel; the host's values
 * come back when this CPU next returns to userspace or goes offline.
 */
static const u32 uret_index[VIREO_URET_NR] = {
	[VIREO_URET_TSC_AUX] = MSR_TSC_AUX,
	[VIREO_URET_STAR] = MSR_STAR,
	[VIREO_URET_LSTAR] = MSR_LSTAR,
	[VIREO_URET_CSTAR] = MSR_CSTAR,
	[VIREO_URET_SFMASK] = MSR_SYSCALL_MASK,
};

struct vireo_uret {
	struct user_return_notifier urn;
	bool registered;
	u64 host[VIREO_URET_NR];
	u64 curr[VIREO_URET_NR];
};

static DEFINE_PER_CPU(struct vireo_uret, vireo_urets);

static void uret_restore(struct vireo_uret *u)
{
	int i;

	for (i = 0; i < VIREO_URET_NR; i++) {
		if (u->curr[i] != u->host[i]) {
			wrmsrl(uret_index[i], u->host[i]);
			u->curr[i] = u->host[i];
		}
	}
	user_return_notifier_unregister(&u->urn);
	u->registered = false;
}

static void uret_on_user_return(struct user_return_notifier *urn)
{
	struct vireo_uret *u = container_of(urn, struct vireo_uret, urn);
	unsigned long flags;

	local_irq_save(flags);
	if (u->registered)
		uret_restore(u);
	local_irq_restore(flags);
}

/*
 * Give MSR @slot the value @val on this CPU until the next return to
 * userspace.  Preemption off.
 */
void vireo_uret_set(unsigned int slot, u64 val)
{
	struct vireo_uret *u = this_cpu_ptr(&vireo_urets);
	int i;

	if (slot >= VIREO_URET_NR)
		return;
	if (slot == VIREO_URET_TSC_AUX && !host_has_msr(MSR_TSC_AUX))
		return;
	if (!u->registered) {
		for (i = 0; i < VIREO_URET_NR; i++) {
			if (i == VIREO_URET_TSC_AUX &&
			    !host_has_msr(MSR_TSC_AUX))
				continue;
			rdmsrl(uret_index[i], u->host[i]);
			u->curr[i] = u->host[i];
		}
		u->urn.on_user_return = uret_on_user_return;
		user_return_notifier_register(&u->urn);
		u->registered = true;
	}
	if (u->curr[slot] != val) {
		wrmsrl(uret_index[slot], val);
		u->curr[slot] = val;
	}
}
EXPORT_SYMBOL_GPL(vireo_uret_set);

/* This CPU goes offline or leaves virtualization: the host's values. */
void vireo_uret_cpu_down(void)
{
	struct vireo_uret *u = this_cpu_ptr(&vireo_urets);

	if (u->registered)
		uret_restore(u);
}

/* ---- time ---- */

u64 vireo_guest_tsc(struct vireo_vcpu *vcpu)
{
	return rdtsc() + vcpu->msr.tsc_offset;
}

/* mul and shift with ns = ((ticks << shift) * mul) >> 32 (pvclock's) */
static void tsc_scale(u32 khz, u32 *mul, s8 *shift)
{
	u64 num = NSEC_PER_MSEC, den = khz ? khz : 1;
	s8 s = 0;

	while (num >= den) {
		den <<= 1;
		s++;
	}
	while (num < den / 2) {
		num <<= 1;
		s--;
	}
	*mul = div64_u64(num << 32, den);
	*shift = s;
}

static u64 scale_ticks(u64 ticks, u32 mul, s8 shift)
{
	if (shift < 0)
		ticks >>= -shift;
	else
		ticks <<= shift;
	return mul_u64_u32_shr(ticks, mul, 32);
}

static bool host_tsc_stable(void)
{
	return boot_cpu_has(X86_FEATURE_CONSTANT_TSC) &&
	       boot_cpu_has(X86_FEATURE_NONSTOP_TSC) && !check_tsc_unstable();
}

/* The VM's kvmclock now, in ns, and the host TSC it was read at. */
static u64 vm_kvmclock(struct vireo_vm *vm, u64 *host_tsc)
{
	u64 tsc = rdtsc();
	u32 mul;
	s8 shift;

	tsc_scale(tsc_khz, &mul, &shift);
	if (host_tsc)
		*host_tsc = tsc;
	return vm->kvmclock_ns + scale_ticks(tsc - vm->kvmclock_tsc, mul, shift);
}

void vireo_vm_init_clock(struct vireo_vm *vm)
{
	spin_lock_init(&vm->tsc_lock);
	vm->kvmclock_tsc = rdtsc();
	vm->kvmclock_ns = 0;
	vm->tsc_offset = -vm->kvmclock_tsc;
}

static void request_all_kvmclock(struct vireo_vm *vm)
{
	int i;

	for (i = 0; i < READ_ONCE(vm->nr_vcpus); i++)
		WRITE_ONCE(vm->vcpus[i]->msr.kvmclock_update, true);
}

int vireo_get_clock(struct vireo_vm *vm, void __user *argp)
{
	struct kvm_clock_data data;
	u64 tsc;

	memset(&data, 0, sizeof(data));
	mutex_lock(&vm->lock);
	data.clock = vm_kvmclock(vm, &tsc);
	mutex_unlock(&vm->lock);
	data.realtime = ktime_get_real_ns();
	data.host_tsc = tsc;
	data.flags = KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC |
		     (host_tsc_stable() ? KVM_CLOCK_TSC_STABLE : 0);
	return copy_to_user(argp, &data, sizeof(data)) ? -EFAULT : 0;
}

int vireo_set_clock(struct vireo_vm *vm, void __user *argp)
{
	struct kvm_clock_data data;
	u64 now;

	if (copy_from_user(&data, argp, sizeof(data)))
		return -EFAULT;
	/*
	 * What KVM_GET_CLOCK reports may come back (api.rst): only
	 * REALTIME means something here, unknown flags are refused.
	 */
	if (data.flags & ~(KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC |
			   KVM_CLOCK_TSC_STABLE))
		return -EINVAL;
	mutex_lock(&vm->lock);
	now = vm_kvmclock(vm, NULL);
	if (data.flags & KVM_CLOCK_REALTIME) {
		s64 since = ktime_get_real_ns() - data.realtime;

		if (since > 0)
			data.clock += since;
	}
	vm->kvmclock_ns += data.clock - now;
	request_all_kvmclock(vm);
	mutex_unlock(&vm->lock);
	return 0;
}

/*
 * Before an entry: write the vCPU's pvclock page if the guest enabled
 * one and something changed.  The guest computes its clock from its
 * TSC alone, the same function for every vCPU of the VM.
 */
void vireo_kvmclock_update(struct vireo_vcpu *vcpu)
{
	struct vireo_vm *vm = vcpu->vm;
	struct pvclock_vcpu_time_info pv;
	u64 gpa = vcpu->msr.kvmclock_system_time & ~1ULL;
	u32 version;

	if (!READ_ONCE(vcpu->msr.kvmclock_update))
		return;
	WRITE_ONCE(vcpu->msr.kvmclock_update, false);
	if (!(vcpu->msr.kvmclock_system_time & 1))
		return;
	if (vireo_read_guest(vm, gpa, &version, sizeof(version)))
		return;
	memset(&pv, 0, sizeof(pv));
	/* odd while we write, as the protocol asks */
	pv.version = (version | 1) + 1;
	version = pv.version - 1;
	if (vireo_write_guest(vm, gpa, &version, sizeof(version)))
		return;
	/* the odd version is visible before any other field changes */
	smp_wmb();
	pv.tsc_timestamp = vm->kvmclock_tsc + vcpu->msr.tsc_offset;
	pv.system_time = vm->kvmclock_ns;
	tsc_scale(tsc_khz, &pv.tsc_to_system_mul, &pv.tsc_shift);
	pv.flags = host_tsc_stable() ? PVCLOCK_TSC_STABLE_BIT : 0;
	vireo_write_guest(vm, gpa, &pv, sizeof(pv));
}

/* The wall clock at the moment the VM's kvmclock read 0. */
static void write_wall_clock(struct vireo_vcpu *vcpu, u64 gpa)
{
	struct pvclock_wall_clock wc;
	u64 boot_ns;
	u32 version = 0, rem;

	boot_ns = ktime_get_real_ns() - vm_kvmclock(vcpu->vm, NULL);
	if (vireo_read_guest(vcpu->vm, gpa, &version, sizeof(version)))
		return;
	memset(&wc, 0, sizeof(wc));
	wc.version = (version | 1) + 1;
	version = wc.version - 1;
	vireo_write_guest(vcpu->vm, gpa, &version, sizeof(version));
	/* as above: the odd version first */
	smp_wmb();
	wc.sec = div_u64_rem(boot_ns, NSEC_PER_SEC, &rem);
	wc.nsec = rem;
	vireo_write_guest(vcpu->vm, gpa, &wc, sizeof(wc));
}

int vireo_get_tsc_khz(struct vireo_vcpu *vcpu)
{
	return tsc_khz ? tsc_khz : -EIO;
}

int vireo_set_tsc_khz(struct vireo_vcpu *vcpu, unsigned long khz)
{
	/*
	 * No TSC scaling yet: only the host's rate, within 250 ppm; 0 asks
	 * for the host's rate, as in KVM.
	 */
	if (khz && abs((long)khz - (long)tsc_khz) > tsc_khz / 4000)
		return -EINVAL;
	return 0;
}

/* ---- reset ---- */

void vireo_msrs_reset(struct vireo_vcpu *vcpu)
{
	struct vireo_msrs *m = &vcpu->msr;

	memset(m, 0, sizeof(*m));
	m->apic_base = APIC_BASE_DEFAULT | APIC_BASE_ENABLE_ |
		       (vcpu->id == 0 ? APIC_BASE_BSP_ : 0);
	m->tsc_offset = vcpu->vm->tsc_offset;
	m->misc_enable = MISC_ENABLE_DEFAULT;
	m->ucode_rev = UCODE_REV_DEFAULT;
	m->feat_ctl = FEAT_CTL_LOCKED;
}

/*
 * The offset that makes the guest's TSC read @data now.  A VMM sets
 * every vCPU's TSC to the same value one after the other (QEMU writes
 * 0 to each at reset): as KVM, the VMM writing 0 again, or the same
 * value within a second, means the same offset, or the guest would see
 * its TSCs out of step and give up on them.
 */
static u64 tsc_offset_for(struct vireo_vcpu *vcpu, u64 data, bool host)
{
	struct vireo_vm *vm = vcpu->vm;
	u64 now = ktime_get_ns(), offset;

	spin_lock(&vm->tsc_lock);
	if (host && vm->tsc_write_ns && data == vm->tsc_write_data &&
	    (!data || now - vm->tsc_write_ns < NSEC_PER_SEC)) {
		offset = vm->tsc_write_offset;
	} else {
		offset = data - rdtsc();
		if (host) {
			vm->tsc_write_data = data;
			vm->tsc_write_offset = offset;
			vm->tsc_write_ns = now;
		}
	}
	spin_unlock(&vm->tsc_lock);
	return offset;
}

/* ---- machine checks ---- */

/* KVM_X86_GET_MCE_CAP_SUPPORTED on the device fd */
long vireo_get_mce_cap_supported(void __user *argp)
{
	u64 cap = MCE_CAP_SUPPORTED;

	return copy_to_user(argp, &cap, sizeof(cap)) ? -EFAULT : 0;
}

/* KVM_X86_SETUP_MCE: the vCPU's MCG_CAP, with 1 to 32 banks */
long vireo_setup_mce(struct vireo_vcpu *vcpu, void __user *argp)
{
	unsigned int banks, i;
	u64 cap;

	if (copy_from_user(&cap, argp, sizeof(cap)))
		return -EFAULT;
	banks = cap & MCG_BANKS;
	if (!banks || banks > VIREO_MCE_BANKS ||
	    (cap & ~(MCE_CAP_SUPPORTED | MCG_BANKS | MCG_EXT_CNT)))
		return -EINVAL;
	memset(&vcpu->mce, 0, sizeof(vcpu->mce));
	vcpu->mce.cap = cap;
	if (cap & MCG_CTL_P_)
		vcpu->mce.ctl = ~0ULL;
	for (i = 0; i < banks; i++)
		vcpu->mce.banks[4 * i] = ~0ULL;
	return 0;
}

/* ---- one MSR ---- */

static bool mtrr_type_ok(u8 t)
{
	return t == 0 || t == 1 || t == 4 || t == 5 || t == 6;
}

static bool mtrr_fixed_ok(u64 v)
{
	int i;

	for (i = 0; i < 8; i++)
		if (!mtrr_type_ok(v >> (8 * i)))
			return false;
	return true;
}

/* the fixed-range MTRRs, in the order of vireo_msrs.mtrr_fixed */
static int mtrr_fixed_slot(u32 index)
{
	switch (index) {
	case MTRR_FIX_64K_00000:
		return 0;
	case MTRR_FIX_16K_80000:
		return 1;
	case MTRR_FIX_16K_A0000:
		return 2;
	case MTRR_FIX_4K_C0000 ... MTRR_FIX_4K_F8000:
		return 3 + index - MTRR_FIX_4K_C0000;
	default:
		return -1;
	}
}

/*
 * The core's MSRs: 0 done, 1 not ours, -EINVAL refused.  @host: the VMM
 * asks, which may also set read-only values.
 */
static int core_get_msr(struct vireo_vcpu *vcpu, u32 index, u64 *data,
			bool host)
{
	struct vireo_msrs *m = &vcpu->msr;
	int slot;

	switch (index) {
	case MSR_IA32_TSC:
		*data = vireo_guest_tsc(vcpu);
		return 0;
	case MSR_IA32_TSC_ADJUST:
		*data = m->tsc_adjust;
		return 0;
	case MSR_IA32_APICBASE:
		*data = m->apic_base;
		return 0;
	case MSR_IA32_FEAT_CTL:
		*data = m->feat_ctl;
		return 0;
	case MSR_IA32_UCODE_REV:
		*data = m->ucode_rev;
		return 0;
	case MSR_IA32_PLATFORM_ID:
	case MSR_IA32_EBL_CR_POWERON:
		*data = 0;
		return 0;
	case MSR_IA32_MCG_CAP:
		*data = vcpu->mce.cap;
		return 0;
	case MSR_IA32_MCG_STATUS:
		*data = m->mcg_status;
		return 0;
	case MSR_IA32_MCG_CTL:
		if (!(vcpu->mce.cap & MCG_CTL_P_))
			return 1;
		*data = vcpu->mce.ctl;
		return 0;
	case MSR_IA32_MC0_CTL ... MSR_IA32_MCx_MISC(VIREO_MCE_BANKS - 1):
		if (index - MSR_IA32_MC0_CTL >= 4 * (vcpu->mce.cap & MCG_BANKS))
			return 1;
		*data = vcpu->mce.banks[index - MSR_IA32_MC0_CTL];
		return 0;
	case MTRR_CAP:
		*data = MTRR_CAP_VALUE;
		return 0;
	case MTRR_DEF_TYPE:
		*data = m->mtrr_def_type;
		return 0;
	case MTRR_FIX_64K_00000:
	case MTRR_FIX_16K_80000:
	case MTRR_FIX_16K_A0000:
	case MTRR_FIX_4K_C0000 ... MTRR_FIX_4K_F8000:
		slot = mtrr_fixed_slot(index);
		if (slot < 0)
			return 1;
		*data = m->mtrr_fixed[slot];
		return 0;
	case MTRR_VAR_FIRST ... MTRR_VAR_LAST:
		*data = m->mtrr_var[index - MTRR_VAR_FIRST];
		return 0;
	case MSR_IA32_MISC_ENABLE:
		*data = m->misc_enable;
		return 0;
	case MSR_IA32_TSC_DEADLINE:
		*data = m->tsc_deadline;
		return 0;
	case MSR_IA32_SPEC_CTRL:
		if (!host_has_msr(index))
			return 1;
		*data = m->spec_ctrl;
		return 0;
	case MSR_TSC_AUX:
		if (!host_has_msr(index))
			return 1;
		*data = m->tsc_aux;
		return 0;
	case MSR_K7_HWCR:
		*data = m->hwcr;
		return 0;
	case MSR_AMD64_DE_CFG:
		*data = m->de_cfg;
		return 0;
	/*
	 * AMD's system and northbridge configuration, which Linux reads
	 * and tweaks at boot: nothing is configurable here, all reads 0.
	 */
	case MSR_AMD64_SYSCFG:
	case MSR_AMD64_NB_CFG:
	case MSR_FAM10H_MMIO_CONF_BASE:
		*data = 0;
		return 0;
	case MSR_KVM_SYSTEM_TIME_NEW_:
	case MSR_KVM_SYSTEM_TIME_OLD:
		*data = m->kvmclock_system_time;
		return 0;
	case MSR_KVM_WALL_CLOCK_NEW_:
	case MSR_KVM_WALL_CLOCK_OLD:
		*data = m->kvmclock_wall_clock;
		return 0;
	default:
		return 1;
	}
}

static int core_set_msr(struct vireo_vcpu *vcpu, u32 index, u64 data,
			bool host)
{
	struct vireo_msrs *m = &vcpu->msr;
	int slot;

	switch (index) {
	case MSR_IA32_TSC: {
		u64 offset = tsc_offset_for(vcpu, data, host);

		/* the guest moving its TSC moves TSC_ADJUST with it (SDM) */
		if (!host)
			m->tsc_adjust += offset - m->tsc_offset;
		m->tsc_offset = offset;
		m->kvmclock_update = true;
		return 0;
	}
	case MSR_IA32_TSC_ADJUST:
		/* the guest's write moves its TSC; the VMM's restores state */
		if (!host) {
			m->tsc_offset += data - m->tsc_adjust;
			m->kvmclock_update = true;
		}
		m->tsc_adjust = data;
		return 0;
	case MSR_IA32_APICBASE:
		/* reserved: below bit 8, bit 9, above the address width */
		if (data & (0xffULL | BIT_ULL(9) |
			    ~GENMASK_ULL(boot_cpu_data.x86_phys_bits - 1, 0)))
			return -EINVAL;
		if ((data & APIC_BASE_EXTD) && !(data & APIC_BASE_ENABLE_))
			return -EINVAL;
		m->apic_base = data;
		return 0;
	case MSR_IA32_FEAT_CTL:
		if (!host)
			return -EINVAL;		/* locked */
		m->feat_ctl = data;
		return 0;
	case MSR_IA32_UCODE_REV:
		/* a guest writes 0 before asking CPUID for the revision */
		if (host)
			m->ucode_rev = data;
		return 0;
	case MSR_IA32_MCG_STATUS:
		m->mcg_status = data;
		return 0;
	case MSR_IA32_MCG_CAP:
		/* the VMM may restore it, with the banks it set up */
		if (!host || (data & MCG_BANKS) != (vcpu->mce.cap & MCG_BANKS) ||
		    (data & ~(MCE_CAP_SUPPORTED | MCG_BANKS | MCG_EXT_CNT)))
			return -EINVAL;
		vcpu->mce.cap = data;
		return 0;
	case MSR_IA32_MCG_CTL:
		if (!(vcpu->mce.cap & MCG_CTL_P_))
			return 1;
		if (data && data != ~0ULL)
			return -EINVAL;
		vcpu->mce.ctl = data;
		return 0;
	case MSR_IA32_MC0_CTL ... MSR_IA32_MCx_MISC(VIREO_MCE_BANKS - 1):
		slot = index - MSR_IA32_MC0_CTL;
		if (slot >= 4 * (vcpu->mce.cap & MCG_BANKS))
			return 1;
		/* MCi_CTL: all or nothing (AMD's MC4_CTL may keep bit 10 off) */
		if (slot % 4 == 0 && data && (data | BIT_ULL(10)) != ~0ULL)
			return -EINVAL;
		/* MCi_STATUS: software may only clear it */
		if (slot % 4 == 1 && data && !host)
			return -EINVAL;
		vcpu->mce.banks[slot] = data;
		return 0;
	case MTRR_CAP:
		return host && data == MTRR_CAP_VALUE ? 0 : -EINVAL;
	case MTRR_DEF_TYPE:
		if ((data & ~0xcffULL) || !mtrr_type_ok(data & 0xff))
			return -EINVAL;
		m->mtrr_def_type = data;
		return 0;
	case MTRR_FIX_64K_00000:
	case MTRR_FIX_16K_80000:
	case MTRR_FIX_16K_A0000:
	case MTRR_FIX_4K_C0000 ... MTRR_FIX_4K_F8000:
		slot = mtrr_fixed_slot(index);
		if (slot < 0)
			return 1;
		if (!mtrr_fixed_ok(data))
			return -EINVAL;
		m->mtrr_fixed[slot] = data;
		return 0;
	case MTRR_VAR_FIRST ... MTRR_VAR_LAST:
		if (data & ~GENMASK_ULL(boot_cpu_data.x86_phys_bits - 1, 0) &
		    ~0xfffULL)
			return -EINVAL;
		if (!(index & 1) && !mtrr_type_ok(data & 0xff))
			return -EINVAL;
		m->mtrr_var[index - MTRR_VAR_FIRST] = data;
		return 0;
	case MSR_IA32_MISC_ENABLE:
		m->misc_enable = data;
		return 0;
	case MSR_IA32_TSC_DEADLINE:
		m->tsc_deadline = data;
		return 0;
	case MSR_IA32_SPEC_CTRL:
		if (!host_has_msr(index))
			return 1;
		if (data & ~(u64)(SPEC_CTRL_IBRS | SPEC_CTRL_STIBP |
				  SPEC_CTRL_SSBD))
			return -EINVAL;
		m->spec_ctrl = data;
		return 0;
	case MSR_IA32_PRED_CMD:
		if (host)
			return 0;
		if (data & ~(u64)PRED_CMD_IBPB)
			return -EINVAL;
		if (data && boot_cpu_has(X86_FEATURE_IBPB))
			wrmsrl(MSR_IA32_PRED_CMD, PRED_CMD_IBPB);
		return 0;
	case MSR_TSC_AUX:
		if (!host_has_msr(index))
			return 1;
		if (data >> 32)
			return -EINVAL;
		m->tsc_aux = data;
		return 0;
	case MSR_K7_HWCR:
		m->hwcr = data;
		return 0;
	case MSR_AMD64_DE_CFG:
		m->de_cfg = data;
		return 0;
	case MSR_AMD64_SYSCFG:
	case MSR_AMD64_NB_CFG:
	case MSR_FAM10H_MMIO_CONF_BASE:
		return 0;	/* ignored, as KVM */

	case MSR_KVM_SYSTEM_TIME_NEW_:
	case MSR_KVM_SYSTEM_TIME_OLD:
		m->kvmclock_system_time = data;
		m->kvmclock_update = true;
		return 0;
	case MSR_KVM_WALL_CLOCK_NEW_:
	case MSR_KVM_WALL_CLOCK_OLD:
		m->kvmclock_wall_clock = data;
		if (!host)
			write_wall_clock(vcpu, data);
		return 0;
	default:
		return 1;
	}
}

/* CPUID registers, for vireo_cpuid_has() */
enum { R_EAX, R_EBX, R_ECX, R_EDX };

/* A guest may only touch the MSRs of features its CPUID grants. */
static bool guest_granted(struct vireo_vcpu *vcpu, u32 index)
{
	switch (index) {
	case MSR_TSC_AUX:
		return vireo_cpuid_has(vcpu, 0x80000001, 0, R_EDX, 27) ||
		       vireo_cpuid_has(vcpu, 7, 0, R_ECX, 22);
	case MSR_IA32_SPEC_CTRL:
		return vireo_cpuid_has(vcpu, 7, 0, R_EDX, 26) ||
		       vireo_cpuid_has(vcpu, 0x80000008, 0, R_EBX, 14);
	case MSR_IA32_PRED_CMD:
		return vireo_cpuid_has(vcpu, 7, 0, R_EDX, 26) ||
		       vireo_cpuid_has(vcpu, 0x80000008, 0, R_EBX, 12);
	case MSR_IA32_TSC_DEADLINE:
		return vireo_cpuid_has(vcpu, 1, 0, R_ECX, 24);
	case MSR_IA32_TSC_ADJUST:
		return vireo_cpuid_has(vcpu, 7, 0, R_EBX, 1);
	case APIC_BASE_MSR ... APIC_BASE_MSR + 0xff:
		return vireo_cpuid_has(vcpu, 1, 0, R_ECX, 21);
	case MSR_KVM_SYSTEM_TIME_NEW_:
	case MSR_KVM_WALL_CLOCK_NEW_:
		return vireo_cpuid_has(vcpu, 0x40000001, 0, R_EAX, 3);
	case MSR_KVM_SYSTEM_TIME_OLD:
	case MSR_KVM_WALL_CLOCK_OLD:
		return vireo_cpuid_has(vcpu, 0x40000001, 0, R_EAX, 0);
	default:
		return true;
	}
}

/*
 * With the in-kernel irqchip the local APIC owns IA32_APIC_BASE, the
 * x2APIC MSRs and IA32_TSC_DEADLINE.  0 done, 1 not its, -EINVAL.
 */
static int apic_get_msr(struct vireo_vcpu *vcpu, u32 index, u64 *data)
{
	if (!vcpu->apic)
		return 1;
	if (index == MSR_IA32_APICBASE) {
		*data = vireo_lapic_get_base(vcpu);
		return 0;
	}
	return vireo_lapic_get_msr(vcpu, index, data);
}

static int apic_set_msr(struct vireo_vcpu *vcpu, u32 index, u64 data,
			bool host)
{
	if (!vcpu->apic)
		return 1;
	if (index == MSR_IA32_APICBASE) {
		/* x2APIC mode only where CPUID offers it */
		if (!host && (data & APIC_BASE_EXTD) &&
		    !vireo_cpuid_has(vcpu, 1, 0, R_ECX, 21))
			return -EINVAL;
		return vireo_lapic_set_base(vcpu, data, host);
	}
	return vireo_lapic_set_msr(vcpu, index, data, host);
}

/* 0, or -EINVAL (#GP for the guest, a short count for the VMM) */
int vireo_get_msr(struct vireo_vcpu *vcpu, u32 index, u64 *data, bool host)
{
	int ret;

	if (!host && !guest_granted(vcpu, index))
		return -EINVAL;
	ret = apic_get_msr(vcpu, index, data);
	if (ret == 1)
		ret = core_get_msr(vcpu, index, data, host);

	if (ret == 1)
		ret = vcpu->vm->backend->get_msr(vcpu, index, data);
	if (ret == 1) {
		if (!ignore_msrs || host)
			return -EINVAL;
		pr_info_ratelimited("guest RDMSR %#x ignored\n", index);
		*data = 0;
		return 0;
	}
	return ret;
}

int vireo_set_msr(struct vireo_vcpu *vcpu, u32 index, u64 data, bool host)
{
	int ret;

	if (!host && !guest_granted(vcpu, index))
		return -EINVAL;
	ret = apic_set_msr(vcpu, index, data, host);
	if (ret == 1)
		ret = core_set_msr(vcpu, index, data, host);

	if (ret == 1)
		ret = vcpu->vm->backend->set_msr(vcpu, index, data, host);
	if (ret == 1) {
		if (!ignore_msrs || host)
			return -EINVAL;
		pr_info_ratelimited("guest WRMSR %#x = %#llx ignored\n",
				    index, data);
		return 0;
	}
	return ret;
}

/*
 * KVM_GET_MSRS / KVM_SET_MSRS: the number of entries done, stopping at
 * the first that fails.
 */
long vireo_msrs_ioctl(struct vireo_vcpu *vcpu, void __user *argp, bool set)
{
	struct kvm_msrs __user *user = argp;
	struct kvm_msr_entry *e;
	struct kvm_msrs hdr;
	long ret;
	u32 i;

	if (copy_from_user(&hdr, user, sizeof(hdr)))
		return -EFAULT;
	if (hdr.nmsrs >= MAX_IO_MSRS)
		return -E2BIG;
	if (!hdr.nmsrs)
		return 0;
	e = memdup_user(user->entries, hdr.nmsrs * sizeof(*e));
	if (IS_ERR(e))
		return PTR_ERR(e);
	for (i = 0; i < hdr.nmsrs; i++) {
		ret = set ? vireo_set_msr(vcpu, e[i].index, e[i].data, true) :
			    vireo_get_msr(vcpu, e[i].index, &e[i].data, true);
		if (ret)
			break;
	}
	ret = i;
	if (!set && copy_to_user(user->entries, e, i * sizeof(*e)))
		ret = -EFAULT;
	kfree(e);
	return ret;
}

/* KVM_GET_MSRS on the device fd: the feature MSRs */
long vireo_get_feature_msrs(void __user *argp)
{
	struct kvm_msrs __user *user = argp;
	struct kvm_msr_entry *e;
	struct kvm_msrs hdr;
	long ret;
	u32 i;

	if (copy_from_user(&hdr, user, sizeof(hdr)))
		return -EFAULT;
	if (hdr.nmsrs >= MAX_IO_MSRS)
		return -E2BIG;
	if (!hdr.nmsrs)
		return 0;
	e = memdup_user(user->entries, hdr.nmsrs * sizeof(*e));
	if (IS_ERR(e))
		return PTR_ERR(e);
	for (i = 0; i < hdr.nmsrs; i++) {
		if (e[i].index != MSR_IA32_UCODE_REV)
			break;
		e[i].data = UCODE_REV_DEFAULT;
	}
	ret = i;
	if (copy_to_user(user->entries, e, i * sizeof(*e)))
		ret = -EFAULT;
	kfree(e);
	return ret;
}
