// SPDX-License-Identifier: GPL-2.0-only
/*
 * Resource limits:
 *  - guest memory is charged to the VMM's memory cgroup: a VMM in a
 *    cgroup of its own runs a guest that writes every 4 KiB page of a
 *    64 MiB slot (32 MiB under Bochs), and the cgroup's memory.current
 *    grows by that much (less 1 MiB for the per-CPU precharges); once
 *    the VMM is gone the charge is gone and the cgroup can be removed;
 *  - what the kernel allocates for a VM is charged there too
 *    (GFP_KERNEL_ACCOUNT): VMs with a vCPU, an irqchip and a memslot
 *    each cost the cgroup at least 8 KiB; a VM can still be created
 *    outside the cgroup;
 *  - per-VM caps with clear errors: every vCPU KVM_CAP_MAX_VCPUS allows
 *    can be created and one more is EINVAL (where creating them all takes
 *    seconds at most: not KVM's 1024); every memslot KVM_CAP_NR_MEMSLOTS
 *    offers is in use at once (KVM's 32764 are too many for an emulated
 *    host: 1024 of them, 512 under Bochs), a guest reads each slot's own
 *    page, and slot id KVM_CAP_NR_MEMSLOTS after them is EINVAL.
 *
 * Usage: limits [device [nooom]]
 *
 * The cgroups also get hard limits (unless "nooom"): with memory.max
 * 16 MiB the same guest does not complete (OOM-killed, or KVM_RUN fails
 * with ENOMEM or EFAULT) and a new VM outside the cgroup writes as much
 * memory to the end; with memory.max 4 MiB, creating VMs stops (ENOMEM
 * or OOM kill) well before 2000.  Both make the kernel print a memory
 * cgroup OOM report, which scripts/tap-summary lets pass (a system-wide
 * OOM still fails a run).
 *
 * The cgroups are /sys/fs/cgroup/vireo-limits-<pid> (cgroup2 is mounted
 * there if it is not, and the memory controller enabled); all checks
 * about cgroups are skipped without the memory controller.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/magic.h>
#include <linux/vireo.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/tap.h"
#include "lib/util.h"
#include "lib/vm.h"

#define KIB		1024ULL
#define MIB		(1024 * KIB)
#define PAGE		4096UL
#define CG_ROOT		"/sys/fs/cgroup"

/* The touch guest: slot 0 at GPA 0 (code, tables), slot 1 the data */
#define LOW_SIZE	0x10000UL
#define CODE		0x1000
#define PML4		0x2000
#define PDPT		0x3000
#define PD		0x4000		/* 512 x 2 MiB: GPA 0-1 GiB */
#define DATA_GPA	0x4000000ULL
#define DONE_PORT	0x42

/* Per-VM kernel memory: at least this much per VM, give or take this */
#define VM_COST_MIN	(8 * KIB)
#define STOCK_SLACK	(256 * KIB)	/* a CPU's precharge (64 pages) */

/*
 * 64-bit: write a byte to each page from RDI up to RCX, then OUT to
 * DONE_PORT and HLT (bytes from GNU as).
 */
static const uint8_t touch_code[] = {
	0xc6, 0x07, 0x01,			/* 1: movb $1, (%rdi) */
	0x48, 0x81, 0xc7, 0x00, 0x10, 0x00, 0x00, /* add $0x1000, %rdi */
	0x48, 0x39, 0xcf,			/* cmp %rcx, %rdi */
	0x72, 0xf1,				/* jb 1b */
	0xe6, DONE_PORT,			/* out %al, $0x42 */
	0xf4,					/* hlt */
};

/*
 * 32-bit, no paging: for page i = ECX, ECX - EDI, ... down to 0, count
 * in EDX the pages whose dword at 0xf00 is EBX + i; OUT it to 0x44.
 */
static const uint8_t slots_code[] = {
	0x89, 0xc8,				/* 1: mov %ecx, %eax */
	0xc1, 0xe0, 0x0c,			/* shl $12, %eax */
	0x8b, 0x80, 0x00, 0x0f, 0x00, 0x00,	/* mov 0xf00(%eax), %eax */
	0x29, 0xc8,				/* sub %ecx, %eax */
	0x39, 0xd8,				/* cmp %ebx, %eax */
	0x75, 0x01,				/* jne 2f */
	0x42,					/* inc %edx */
	0x29, 0xf9,				/* 2: sub %edi, %ecx */
	0x79, 0xea,				/* jns 1b */
	0x89, 0xd0,				/* mov %edx, %eax */
	0xe7, 0x44,				/* out %eax, $0x44 */
	0xf4,					/* hlt */
};

#define SLOT_MAGIC	0x5107d000U

/* Where the children say how far they got: shared, charged to the parent */
struct report {
	int stage;
	int err;		/* errno of what failed */
	uint32_t exit_reason;
	long count;		/* VMs created */
	unsigned long long cur0, cur1;	/* memory.current before, after */
};

enum { STAGE_START, STAGE_IN_CGROUP, STAGE_RUNNING, STAGE_DONE };

/* child exit codes */
#define CHILD_OK	0
#define CHILD_SETUP	2
#define CHILD_FAILED	3	/* report->err */
#define CHILD_EXIT	4	/* an unexpected exit: report->exit_reason */

static bool is_vmx(void)
{
	return cpu_backend() == VIREO_BACKEND_VMX;
}

static int set_slot(int vmfd, uint32_t slot, uint64_t gpa, uint64_t size,
		    void *mem)
{
	struct kvm_userspace_memory_region mr = {
		.slot = slot, .guest_phys_addr = gpa, .memory_size = size,
		.userspace_addr = (uintptr_t)mem,
	};

	return ioctl(vmfd, KVM_SET_USER_MEMORY_REGION, &mr);
}

/* ---- cgroup v2 ---- */

static char cg_dir[96];

static bool cg_write(const char *file, const char *val)
{
	char path[160];
	ssize_t n;
	int fd, saved;

	snprintf(path, sizeof(path), "%s/%s", cg_dir, file);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = write(fd, val, strlen(val));
	saved = errno;
	close(fd);
	errno = saved;
	return n == (ssize_t)strlen(val);
}

/* The whole of a (small) cgroup file; false if it cannot be read. */
static bool cg_read(const char *dir, const char *file, char *buf,
		    size_t size)
{
	char path[160];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		return false;
	buf[n] = 0;
	return true;
}

static unsigned long long cg_current(void)
{
	char buf[32];

	if (!cg_read(cg_dir, "memory.current", buf, sizeof(buf)))
		return 0;
	return strtoull(buf, NULL, 10);
}

/* The count of @key in memory.events. */
static unsigned long long cg_event(const char *key)
{
	char buf[256], *p;
	size_t len = strlen(key);

	if (!cg_read(cg_dir, "memory.events", buf, sizeof(buf)))
		return 0;
	for (p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, key, len) && p[len] == ' ')
			return strtoull(p + len + 1, NULL, 10);
	return 0;
}

static bool has_word(const char *list, const char *word)
{
	size_t len = strlen(word);
	const char *p;

	for (p = list; (p = strstr(p, word)); p += len)
		if ((p == list || p[-1] == ' ') &&
		    (!p[len] || p[len] == ' ' || p[len] == '\n'))
			return true;
	return false;
}

/* cgroup2 at CG_ROOT with the memory controller for its children */
static bool cg_available(void)
{
	char buf[256];
	struct statfs st;
	int fd;

	if (statfs(CG_ROOT, &st) || st.f_type != CGROUP2_SUPER_MAGIC) {
		mkdir(CG_ROOT, 0755);
		if (mount("none", CG_ROOT, "cgroup2", 0, NULL)) {
			tap_diag("mount cgroup2 on %s: %s", CG_ROOT,
				 strerror(errno));
			return false;
		}
	}
	if (!cg_read(CG_ROOT, "cgroup.controllers", buf, sizeof(buf)) ||
	    !has_word(buf, "memory")) {
		tap_diag("no memory controller in %s/cgroup.controllers",
			 CG_ROOT);
		return false;
	}
	if (cg_read(CG_ROOT, "cgroup.subtree_control", buf, sizeof(buf)) &&
	    has_word(buf, "memory"))
		return true;
	fd = open(CG_ROOT "/cgroup.subtree_control", O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, "+memory", 7) != 7) {
		tap_diag("enabling the memory controller: %s",
			 strerror(errno));
		if (fd >= 0)
			close(fd);
		return false;
	}
	close(fd);
	return true;
}

static bool cg_create(const char *max)
{
	snprintf(cg_dir, sizeof(cg_dir), CG_ROOT "/vireo-limits-%d",
		 (int)getpid());
	if (mkdir(cg_dir, 0755) && errno != EEXIST) {
		tap_diag("mkdir %s: %s", cg_dir, strerror(errno));
		return false;
	}
	if (!cg_write("memory.max", max)) {
		tap_diag("%s/memory.max: %s", cg_dir, strerror(errno));
		rmdir(cg_dir);
		return false;
	}
	/* no swap to escape to (a test host has none anyway) */
	cg_write("memory.swap.max", "0");
	return true;
}

/* rmdir once the last task has left (a second at most) */
static bool cg_remove(void)
{
	int i;

	for (i = 0; i < 100; i++) {
		if (!rmdir(cg_dir))
			return true;
		if (errno != EBUSY)
			break;
		usleep(10000);
	}
	tap_diag("rmdir %s: %s", cg_dir, strerror(errno));
	return false;
}

/* In a child: move there. */
static bool cg_enter(void)
{
	char pid[16];

	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	return cg_write("cgroup.procs", pid);
}

static struct report *report_alloc(void)
{
	struct report *rep = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
				  MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (rep == MAP_FAILED)
		tap_bail("mmap: %s", strerror(errno));
	memset(rep, 0, sizeof(*rep));
	return rep;
}

static __noreturn void child_exit(struct report *rep, int code, int err)
{
	rep->err = err;
	_exit(code);
}

/* What became of a child, for a diagnostic. */
static const char *child_outcome(int status, const struct report *rep,
				 char *buf, size_t size)
{
	if (WIFSIGNALED(status))
		snprintf(buf, size, "killed by signal %d (%s)",
			 WTERMSIG(status), strsignal(WTERMSIG(status)));
	else if (WEXITSTATUS(status) == CHILD_OK)
		snprintf(buf, size, "completed");
	else if (WEXITSTATUS(status) == CHILD_FAILED)
		snprintf(buf, size, "failed at stage %d: %s", rep->stage,
			 strerror(rep->err));
	else if (WEXITSTATUS(status) == CHILD_EXIT)
		snprintf(buf, size, "unexpected exit %s (%u)",
			 exit_name(rep->exit_reason), rep->exit_reason);
	else
		snprintf(buf, size, "exited %d at stage %d (%s)",
			 WEXITSTATUS(status), rep->stage, strerror(rep->err));
	return buf;
}

/* ---- the touch guest ---- */

struct touch {
	struct vm vm;
	struct vcpu vcpu;
	uint8_t *low, *data;
	size_t size;
};

static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

/* A VM whose guest writes one byte to each page of a @size slot. */
static bool touch_create(struct touch *t, const char *dev, size_t size)
{
	struct kvm_regs regs;
	int i;

	t->size = size;
	t->data = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (t->data == MAP_FAILED)
		return false;
	/* 4 KiB pages, each charged as the guest first writes it */
	madvise(t->data, size, MADV_NOHUGEPAGE);
	if (!vm_create(&t->vm, dev))
		goto unmap;
	t->low = vm_add_memory(&t->vm, 0, 0, LOW_SIZE);
	if (!t->low || set_slot(t->vm.fd, 1, DATA_GPA, size, t->data) ||
	    !vcpu_create(&t->vm, &t->vcpu, 0))
		goto destroy;
	memcpy(t->low + CODE, touch_code, sizeof(touch_code));
	put64(t->low + PML4, PDPT | 3);
	put64(t->low + PDPT, PD | 3);
	for (i = 0; i < 512; i++)
		put64(t->low + PD + i * 8, (uint64_t)i << 21 | 0x83);
	vcpu_long_mode(&t->vcpu, CODE, PML4);
	memset(&regs, 0, sizeof(regs));
	regs.rip = CODE;
	regs.rflags = 2;
	regs.rdi = DATA_GPA;
	regs.rcx = DATA_GPA + size;
	if (!ioctl(t->vcpu.fd, KVM_SET_REGS, &regs))
		return true;
	vcpu_destroy(&t->vm, &t->vcpu);
destroy:
	vm_destroy(&t->vm);
unmap:
	munmap(t->data, size);
	return false;
}

static void touch_destroy(struct touch *t)
{
	vcpu_destroy(&t->vm, &t->vcpu);
	vm_destroy(&t->vm);
	munmap(t->low, LOW_SIZE);
	munmap(t->data, t->size);
}

/* 0 when the guest got to its OUT, else an errno or -exit reason */
static int touch_run(struct touch *t)
{
	struct kvm_run *run = t->vcpu.run;

	if (vcpu_run(&t->vcpu))
		return errno;
	if (run->exit_reason != KVM_EXIT_IO || run->io.port != DONE_PORT)
		return -(int)run->exit_reason;
	return 0;
}

/* The child of the guest memory checks: a VMM in the cgroup. */
static __noreturn void touch_child(const char *dev, size_t size,
				   struct report *rep)
{
	struct touch t;
	int ret;

	if (!cg_enter())
		child_exit(rep, CHILD_SETUP, errno);
	rep->stage = STAGE_IN_CGROUP;
	rep->cur0 = cg_current();
	if (!touch_create(&t, dev, size))
		child_exit(rep, CHILD_SETUP, errno);
	rep->stage = STAGE_RUNNING;
	ret = touch_run(&t);
	if (ret > 0)
		child_exit(rep, CHILD_FAILED, ret);
	if (ret < 0) {
		rep->exit_reason = -ret;
		child_exit(rep, CHILD_EXIT, 0);
	}
	rep->stage = STAGE_DONE;
	rep->cur1 = cg_current();
	_exit(CHILD_OK);
}

static pid_t fork_child(void)
{
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		tap_bail("fork: %s", strerror(errno));
	return pid;
}

static void guest_memory(const char *dev, bool have_cg, bool oom)
{
	const size_t size = (is_vmx() ? 32 : 64) * MIB;
	unsigned long long left = 0, max_events, kills;
	struct report *rep = report_alloc();
	char why[128];
	struct touch t;
	int status, i, ret;
	bool ok, gone;
	pid_t pid;

	if (!have_cg) {
		tap_skip("no cgroup2 memory controller",
			 "a guest's writes are charged to the VMM's memory cgroup");
		tap_skip("no cgroup2 memory controller",
			 "the charge goes with the VMM, and the cgroup can be removed");
		tap_skip("no cgroup2 memory controller",
			 "with memory.max 16 MiB the guest does not complete");
		tap_skip("no cgroup2 memory controller",
			 "outside the cgroup a new VM's guest writes as much to the end");
		goto out;
	}

	/* charged: a cgroup with room for it all */
	ok = cg_create("256M");
	gone = ok;
	if (ok) {
		pid = fork_child();
		if (pid == 0)
			touch_child(dev, size, rep);
		waitpid(pid, &status, 0);
		/* give or take the per-CPU precharges */
		ok = WIFEXITED(status) && WEXITSTATUS(status) == CHILD_OK &&
		     rep->cur1 + MIB >= rep->cur0 + size;
		tap_diag("the VMM %s; memory.current %llu KiB, then %llu KiB",
			 child_outcome(status, rep, why, sizeof(why)),
			 rep->cur0 / KIB, rep->cur1 / KIB);
		/* freed memory may take a moment (RCU) to be uncharged */
		for (i = 0; i < 100; i++) {
			left = cg_current();
			if (left < 2 * MIB)
				break;
			usleep(10000);
		}
		gone = left < 2 * MIB;
		gone &= cg_remove();
	}
	tap_ok(ok,
	       "a guest's writes to every page of its %zu MiB slot are charged to the VMM's memory cgroup",
	       (size_t)(size / MIB));
	tap_ok(gone, "the charge goes with the VMM (%llu KiB left), and the cgroup can be removed",
	       left / KIB);

	if (!oom) {
		tap_skip("asked not to ('nooom')",
			 "with memory.max 16 MiB the guest does not complete");
		tap_skip("no limit was hit",
			 "outside the cgroup a new VM's guest writes as much to the end");
		goto out;
	}

	/* limited: 16 MiB for a guest writing 64 */
	memset(rep, 0, sizeof(*rep));
	ok = cg_create("16M");
	if (ok) {
		pid = fork_child();
		if (pid == 0)
			touch_child(dev, size, rep);
		waitpid(pid, &status, 0);
		max_events = cg_event("max");
		kills = cg_event("oom_kill");
		tap_diag("the VMM %s; memory.events: max %llu, oom_kill %llu",
			 child_outcome(status, rep, why, sizeof(why)),
			 max_events, kills);
		ok = rep->stage == STAGE_RUNNING &&
		     ((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL &&
		       kills) ||
		      (WIFEXITED(status) &&
		       WEXITSTATUS(status) == CHILD_FAILED &&
		       (rep->err == ENOMEM || rep->err == EFAULT) &&
		       max_events));
		ok &= cg_remove();
	}
	tap_ok(ok,
	       "with memory.max 16 MiB the guest does not complete: OOM kill, or ENOMEM/EFAULT from KVM_RUN");

	/* and the host is fine */
	ok = touch_create(&t, dev, size);
	if (ok) {
		ret = touch_run(&t);
		if (ret)
			tap_diag("KVM_RUN: %s",
				 ret > 0 ? strerror(ret) : exit_name(-ret));
		ok = !ret;
		touch_destroy(&t);
	}
	tap_ok(ok, "outside the cgroup a new VM's guest writes as much to the end");
out:
	munmap(rep, PAGE);
}

/* ---- kernel memory per VM ---- */

/* A VM with one vCPU, an irqchip and a 4 KiB slot; 0 or an errno. */
static int small_vm(int kvm, void *page)
{
	int vmfd;

	vmfd = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vmfd < 0)
		return errno;
	if (ioctl(vmfd, KVM_CREATE_IRQCHIP, 0) ||
	    set_slot(vmfd, 0, 0, PAGE, page) ||
	    ioctl(vmfd, KVM_CREATE_VCPU, 0) < 0)
		return errno;
	return 0;
}

static __noreturn void vms_child(const char *dev, long max,
				 struct report *rep)
{
	struct rlimit rl = { 8192, 8192 };
	cpu_set_t cpus;
	void *page;
	int kvm, err;
	long i;

	if (!cg_enter())
		child_exit(rep, CHILD_SETUP, errno);
	rep->stage = STAGE_IN_CGROUP;
	/* one CPU, so one per-CPU precharge muddles memory.current */
	CPU_ZERO(&cpus);
	CPU_SET(sched_getcpu() < 0 ? 0 : sched_getcpu(), &cpus);
	sched_setaffinity(0, sizeof(cpus), &cpus);
	if (max > 500 && setrlimit(RLIMIT_NOFILE, &rl))
		child_exit(rep, CHILD_SETUP, errno);
	kvm = open(dev, O_RDWR | O_CLOEXEC);
	page = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (kvm < 0 || page == MAP_FAILED)
		child_exit(rep, CHILD_SETUP, errno);
	memset(page, 0xf4, PAGE);
	rep->stage = STAGE_RUNNING;
	rep->cur0 = cg_current();
	for (i = 0; i < max; i++) {
		err = small_vm(kvm, page);
		if (err)
			child_exit(rep, CHILD_FAILED, err);
		rep->count = i + 1;
	}
	rep->cur1 = cg_current();
	rep->stage = STAGE_DONE;
	_exit(CHILD_OK);
}

/* Outside any cgroup of ours: the same small VM, and its guest runs. */
static bool vm_outside(const char *dev)
{
	static const uint8_t out[] = { 0xe6, 0x99 };	/* out %al, $0x99 */
	struct vcpu vcpu;
	struct vm vm;
	uint8_t *mem;
	bool ok;

	if (!vm_create(&vm, dev))
		return false;
	ok = !ioctl(vm.fd, KVM_CREATE_IRQCHIP, 0);
	mem = ok ? vm_add_memory(&vm, 0, 0, PAGE) : NULL;
	if (!mem || !vcpu_create(&vm, &vcpu, 0)) {
		tap_diag("irqchip, slot or vCPU: %s", strerror(errno));
		vm_destroy(&vm);
		return false;
	}
	memcpy(mem, out, sizeof(out));
	vcpu_real_mode(&vcpu, 0);
	ok = !vcpu_run(&vcpu) && vcpu.run->exit_reason == KVM_EXIT_IO &&
	     vcpu.run->io.port == 0x99;
	if (!ok)
		tap_diag("its guest: exit %s (%s), suberror %u, data %#llx %#llx%s",
			 exit_name(vcpu.run->exit_reason), strerror(errno),
			 vcpu.run->internal.suberror,
			 (unsigned long long)vcpu.run->internal.data[0],
			 (unsigned long long)vcpu.run->internal.data[1],
			 lost_state_note(vcpu.run));
	vcpu_destroy(&vm, &vcpu);
	vm_destroy(&vm);
	munmap(mem, PAGE);
	return ok;
}

static void kernel_memory(const char *dev, bool have_cg, bool oom)
{
	const long n = is_vmx() ? 16 : 32;
	struct report *rep = report_alloc();
	unsigned long long delta = 0, max_events, kills;
	char why[128];
	int status;
	bool ok;
	pid_t pid;

	if (!have_cg) {
		tap_skip("no cgroup2 memory controller",
			 "the kernel memory of each VM is charged to the VMM's cgroup");
		tap_skip("no cgroup2 memory controller",
			 "with memory.max 4 MiB creating VMs stops well before 2000");
		tap_skip("no cgroup2 memory controller",
			 "a VM can still be created outside the cgroup");
		goto out;
	}

	ok = cg_create("256M");
	if (ok) {
		pid = fork_child();
		if (pid == 0)
			vms_child(dev, n, rep);
		waitpid(pid, &status, 0);
		if (rep->cur1 > rep->cur0)
			delta = rep->cur1 - rep->cur0;
		tap_diag("the VMM %s after %ld VMs; memory.current grew %llu KiB, %llu KiB a VM",
			 child_outcome(status, rep, why, sizeof(why)),
			 rep->count, delta / KIB, delta / KIB / n);
		ok = WIFEXITED(status) && WEXITSTATUS(status) == CHILD_OK &&
		     delta >= n * VM_COST_MIN + STOCK_SLACK;
		ok &= cg_remove();
	}
	tap_ok(ok,
	       "the kernel memory of each VM (vCPU, irqchip, memslot) is charged to the VMM's cgroup");

	if (!oom) {
		tap_skip("asked not to ('nooom')",
			 "with memory.max 4 MiB creating VMs stops well before 2000");
	} else {
		memset(rep, 0, sizeof(*rep));
		ok = cg_create("4M");
		if (ok) {
			pid = fork_child();
			if (pid == 0)
				vms_child(dev, 2000, rep);
			waitpid(pid, &status, 0);
			max_events = cg_event("max");
			kills = cg_event("oom_kill");
			tap_diag("the VMM %s after %ld VMs; memory.events: max %llu, oom_kill %llu",
				 child_outcome(status, rep, why, sizeof(why)),
				 rep->count, max_events, kills);
			ok = rep->stage == STAGE_RUNNING && rep->count < 1000 &&
			     ((WIFSIGNALED(status) &&
			       WTERMSIG(status) == SIGKILL && kills) ||
			      (WIFEXITED(status) &&
			       WEXITSTATUS(status) == CHILD_FAILED &&
			       rep->err == ENOMEM && max_events));
			ok &= cg_remove();
		}
		tap_ok(ok,
		       "with memory.max 4 MiB creating VMs stops well before 2000: ENOMEM or an OOM kill");
	}
	tap_ok(vm_outside(dev),
	       "a VM with a vCPU, an irqchip and a memslot can still be created outside the cgroup");
out:
	munmap(rep, PAGE);
}

/* ---- per-VM caps ---- */

static void vcpu_cap(const char *dev)
{
	long maxv, maxid, i, made = 0;
	struct vm vm;
	int *fds, ret;

	if (!vm_create(&vm, dev))
		tap_bail("no VM");
	maxv = ioctl(vm.fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	maxid = ioctl(vm.fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPU_ID);
	if (maxid <= 0)
		maxid = maxv;
	tap_diag("KVM_CAP_MAX_VCPUS %ld, KVM_CAP_MAX_VCPU_ID %ld", maxv,
		 maxid);
	if (maxv <= 0 || maxv > 288 || (maxv > 64 && is_vmx())) {
		tap_skip("too many vCPUs to create in an emulated host",
			 "all the vCPUs KVM_CAP_MAX_VCPUS allows can be created");
		tap_skip("too many vCPUs to create in an emulated host",
			 "one vCPU more is EINVAL");
		vm_destroy(&vm);
		return;
	}
	fds = calloc(maxv, sizeof(*fds));
	if (!fds)
		tap_bail("out of memory");
	for (i = 0; i < maxv; i++) {
		fds[i] = ioctl(vm.fd, KVM_CREATE_VCPU, i);
		if (fds[i] < 0) {
			tap_diag("vCPU %ld: %s", i, strerror(errno));
			break;
		}
		made++;
	}
	tap_ok(made == maxv,
	       "all the %ld vCPUs KVM_CAP_MAX_VCPUS allows can be created",
	       maxv);
	/* an unused id; below KVM_CAP_MAX_VCPU_ID where there is one */
	if (maxid <= maxv)
		tap_diag("no id is left below KVM_CAP_MAX_VCPU_ID: id %ld is over both limits",
			 maxv);
	ret = ioctl(vm.fd, KVM_CREATE_VCPU, maxv);
	TAP_ERRNO(ret, EINVAL, "one vCPU more (id %ld) is EINVAL", maxv);
	if (ret >= 0)
		close(ret);
	for (i = 0; i < made; i++)
		close(fds[i]);
	free(fds);
	vm_destroy(&vm);
}

static void memslot_cap(const char *dev)
{
	const long cap = is_vmx() ? 512 : 1024;
	long n, fill, i, filled = 0, stride, checked = 0;
	struct kvm_regs regs;
	struct expect x[2];
	struct vcpu vcpu;
	uint8_t *region;
	struct vm vm;
	uint32_t marker;

	if (!vm_create(&vm, dev))
		tap_bail("no VM");
	n = ioctl(vm.fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_MEMSLOTS);
	fill = n < cap ? n : cap;
	if (fill < 2)
		tap_bail("KVM_CAP_NR_MEMSLOTS is %ld", n);
	if (fill < n)
		tap_diag("filling %ld of the %ld slots (all: too slow here)",
			 fill, n);
	region = mmap(NULL, fill * PAGE, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED)
		tap_bail("mmap: %s", strerror(errno));
	for (i = 0; i < fill; i++) {
		if (set_slot(vm.fd, i, i * PAGE, PAGE, region + i * PAGE)) {
			tap_diag("slot %ld: %s", i, strerror(errno));
			break;
		}
		filled++;
	}
	tap_ok(filled == fill,
	       "%ld memslots (KVM_CAP_NR_MEMSLOTS %ld), 4 KiB each, are in use at once",
	       fill, n);

	/* each slot the guest checks holds its own marker */
	stride = fill > 512 ? (fill + 511) / 512 : 1;
	for (i = fill - 1; i >= 0; i -= stride) {
		marker = SLOT_MAGIC + i;
		memcpy(region + i * PAGE + 0xf00, &marker, 4);
		checked++;
	}
	memcpy(region + CODE, slots_code, sizeof(slots_code));
	x[0] = (struct expect){ X_OUT, 0x44, 4, checked };
	x[1] = (struct expect){ X_HLT, 0, 0, 0 };
	if (filled == fill && vcpu_create(&vm, &vcpu, 0)) {
		vcpu_prot_mode(&vcpu, CODE, 0x11, 0, 0);
		ioctl(vcpu.fd, KVM_GET_REGS, &regs);
		regs.rcx = fill - 1;
		regs.rdi = stride;
		regs.rbx = SLOT_MAGIC;
		regs.rdx = 0;
		ioctl(vcpu.fd, KVM_SET_REGS, &regs);
		tap_ok(run_expect(&vcpu, x, 2) == 2,
		       "a guest reads each slot's own page (%ld slots checked)",
		       checked);
		vcpu_destroy(&vm, &vcpu);
	} else {
		tap_ok(false, "a guest reads each slot's own page");
	}
	TAP_ERRNO(set_slot(vm.fd, n, fill * PAGE, PAGE, region), EINVAL,
		  "slot id %ld (KVM_CAP_NR_MEMSLOTS) after them is EINVAL", n);
	vm_destroy(&vm);
	munmap(region, fill * PAGE);
}

int main(int argc, char **argv)
{
	const char *dev = test_device(argc, argv);
	bool oom = !(argc > 2 && !strcmp(argv[2], "nooom"));
	bool have_cg;

	tap_plan(12);
	tap_diag("device %s%s", dev, oom ? ", with OOM checks" : "");
	have_cg = cg_available();
	guest_memory(dev, have_cg, oom);
	kernel_memory(dev, have_cg, oom);
	vcpu_cap(dev);
	memslot_cap(dev);
	tap_done();
}
