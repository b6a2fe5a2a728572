// SPDX-License-Identifier: GPL-2.0-only
/*
 * vireo-run: our small VMM.  It boots a Linux bzImage on /dev/vireo (or
 * any device speaking the KVM ABI) with the in-kernel irqchip and PIT,
 * a 16550A console on the terminal, ACPI tables for the CPUs and for
 * power-off, and virtio-mmio disks and NICs served in userspace.
 *
 *   vireo-run --kernel bzImage [--initrd F] [--cmdline S] [--mem M]
 *             [--cpus N] [--disk IMG]... [--net TAP] [--device PATH]
 *             [--watch STRING]
 *
 * Exit status: 0 when the guest powers off, 2 when it resets (reboot,
 * triple fault), 1 on an error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "virtio.h"
#include "vmm.h"

#define MAX_CPUS		64
#define DEFAULT_CMDLINE		"console=ttyS0 panic=-1"

struct vmm vmm;

static struct vcpu {
	int fd;
	struct kvm_run *run;
	pthread_t thread;
} vcpus[MAX_CPUS];

static struct virtio_dev *vdevs[VIRTIO_MAX_DEVS];
static int nr_vdevs;
static pthread_mutex_t io_lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t pci_addr;
static uint8_t cmos_index;
static uint16_t pm1_enable;

static void die(const char *what)
{
	fprintf(stderr, "vireo-run: %s: %s\n", what, strerror(errno));
	exit(1);
}

void vmm_exit(int status)
{
	fflush(stdout);
	fflush(stderr);
	_exit(status);
}

void *gpa_to_hva(uint64_t gpa, uint64_t len)
{
	if (!len || gpa + len < gpa)
		return NULL;
	if (gpa + len <= vmm.low_end)
		return vmm.low + gpa;
	if (vmm.high && gpa >= HIGH_RAM_BASE &&
	    gpa + len <= HIGH_RAM_BASE + vmm.high_size)
		return vmm.high + (gpa - HIGH_RAM_BASE);
	return NULL;
}

void irq_line(int irq, int level)
{
	struct kvm_irq_level l = { .irq = irq, .level = level };

	if (ioctl(vmm.vm_fd, KVM_IRQ_LINE, &l) < 0)
		fprintf(stderr, "vireo-run: KVM_IRQ_LINE %d: %s\n", irq,
			strerror(errno));
}

/* The ACPI PM1a blocks: power-off is SLP_EN in PM1a_CNT. */
static void pm_io(uint16_t port, uint8_t *data, int size, bool is_write)
{
	uint32_t v = 0;

	memcpy(&v, data, size);
	if (port == PM1A_CNT_PORT || port == PM1A_CNT_PORT + 1) {
		if (port == PM1A_CNT_PORT + 1)
			v <<= 8;
		if (is_write && (v & PM1_SLP_EN)) {
			fprintf(stderr, "vireo-run: guest powered off\n");
			vmm_exit(0);
		}
		v = 1;		/* SCI_EN: always in ACPI mode */
		if (port == PM1A_CNT_PORT + 1)
			v = 0;
	} else if (port >= PM1A_EVT_PORT + 2) {
		if (is_write)
			pm1_enable = v;
		v = pm1_enable;
	} else {
		v = 0;		/* no status bits ever */
	}
	if (!is_write)
		memcpy(data, &v, size);
}

/*
 * PCI configuration mechanism #1 with a lone host bridge at 00:00.0
 * (Linux wants one to trust the mechanism; our devices are not on PCI).
 * Its ID is a generic host bridge Linux has no quirks for.
 */
static void pci_config_read(uint16_t port, uint8_t *data, int size)
{
	static const uint32_t bridge[4] = {
		0x00081b36,	/* device, vendor */
		0,		/* status, command */
		0x06000000,	/* class: host bridge */
		0,		/* header type 0 */
	};
	unsigned int reg = (pci_addr & 0xfc) + (port & 3);
	uint32_t v = 0xffffffff;

	if ((pci_addr & 0x80ffff00) == 0x80000000) {	/* 00:00.0 */
		v = reg < sizeof(bridge) ? bridge[reg / 4] : 0;
		v >>= (reg & 3) * 8;
	}
	memcpy(data, &v, size);
}

static void cmos_io(uint16_t port, uint8_t *data, bool is_write)
{
	if (port == 0x70) {
		if (is_write)
			cmos_index = *data & 0x7f;
		else
			*data = cmos_index;
		return;
	}
	if (is_write)
		return;
	switch (cmos_index) {
	case 0x0a:
		*data = 0x26;	/* 32 kHz, no update in progress */
		break;
	case 0x0b:
		*data = 0x02;	/* 24 hours, BCD */
		break;
	case 0x0d:
		*data = 0x80;	/* valid */
		break;
	default:
		*data = 0;
	}
}

static void port_io(uint16_t port, uint8_t *data, int size, bool is_write)
{
	if (port >= SERIAL_PORT && port < SERIAL_PORT + 8) {
		serial_io(port, data, is_write);
		return;
	}
	pthread_mutex_lock(&io_lock);
	if (port >= PM1A_EVT_PORT && port < PM1A_CNT_PORT + 2) {
		pm_io(port, data, size, is_write);
	} else if (port == RESET_PORT || port == 0x64) {
		if (is_write && ((port == RESET_PORT && (*data & 4)) ||
				 (port == 0x64 && *data == 0xfe))) {
			fprintf(stderr, "vireo-run: guest reset\n");
			vmm_exit(2);
		}
		if (!is_write)
			memset(data, 0, size);
	} else if (port == 0xcf8 && size == 4) {
		if (is_write)
			memcpy(&pci_addr, data, 4);
		else
			memcpy(data, &pci_addr, 4);
	} else if (port >= 0xcfc && port < 0xd00) {
		if (!is_write)
			pci_config_read(port, data, size);
	} else if (port == 0x70 || port == 0x71) {
		cmos_io(port, data, is_write);
	} else if (!is_write) {
		memset(data, 0xff, size);	/* nothing there */
	}
	pthread_mutex_unlock(&io_lock);
}

static void mmio(uint64_t addr, uint8_t *data, uint32_t len, bool is_write)
{
	uint64_t off = addr - VIRTIO_MMIO_BASE;
	uint64_t i = off / VIRTIO_MMIO_SIZE;

	/* i stays 64-bit: any guest physical address can exit here */
	if (addr >= VIRTIO_MMIO_BASE && i < (uint64_t)nr_vdevs &&
	    (off % VIRTIO_MMIO_SIZE) + len <= VIRTIO_MMIO_SIZE) {
		virtio_mmio_access(vdevs[i], off % VIRTIO_MMIO_SIZE, data, len,
				   is_write);
		return;
	}
	if (!is_write)
		memset(data, 0xff, len);
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	struct kvm_run *run = v->run;
	uint32_t i;

	for (;;) {
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			die("KVM_RUN");
		}
		switch (run->exit_reason) {
		case KVM_EXIT_IO: {
			uint8_t *p = (uint8_t *)run + run->io.data_offset;

			for (i = 0; i < run->io.count; i++) {
				port_io(run->io.port, p, run->io.size,
					run->io.direction == KVM_EXIT_IO_OUT);
				p += run->io.size;
			}
			break;
		}
		case KVM_EXIT_MMIO:
			mmio(run->mmio.phys_addr, run->mmio.data,
			     run->mmio.len, run->mmio.is_write);
			break;
		case KVM_EXIT_SHUTDOWN:
			fprintf(stderr, "vireo-run: guest shut down (triple fault)\n");
			vmm_exit(2);
		case KVM_EXIT_SYSTEM_EVENT:
			fprintf(stderr, "vireo-run: system event %u\n",
				run->system_event.type);
			vmm_exit(run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN ?
				 0 : 2);
		case KVM_EXIT_INTR:
			break;
		case KVM_EXIT_FAIL_ENTRY:
			fprintf(stderr, "vireo-run: VM entry failed, reason 0x%llx\n",
				(unsigned long long)run->fail_entry.hardware_entry_failure_reason);
			vmm_exit(1);
		case KVM_EXIT_INTERNAL_ERROR:
			fprintf(stderr, "vireo-run: internal error, suberror %u\n",
				run->internal.suberror);
			vmm_exit(1);
		default:
			fprintf(stderr, "vireo-run: unexpected exit %u\n",
				run->exit_reason);
			vmm_exit(1);
		}
	}
	return NULL;
}

static struct kvm_cpuid2 *supported_cpuid(void)
{
	struct kvm_cpuid2 *c;
	int n = 64;

	for (;;) {
		c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
		if (!c)
			die("calloc");
		c->nent = n;
		if (ioctl(vmm.sys_fd, KVM_GET_SUPPORTED_CPUID, c) == 0)
			return c;
		if (errno != E2BIG || n >= 4096)
			die("KVM_GET_SUPPORTED_CPUID");
		free(c);
		n *= 2;
	}
}

#define CPUID_HYPERVISOR	0x80000000	/* leaf 1, ECX */
#define CPUID_INVARIANT_TSC	0x00000100	/* leaf 0x80000007, EDX */
#define BRAND_FIRST		0x80000002
#define BRAND_LAST		0x80000004

static const char brand[48] = "vireo-run virtual CPU";

static struct kvm_cpuid_entry2 *cpuid_entry(struct kvm_cpuid2 *c, uint32_t fn)
{
	uint32_t i;

	for (i = 0; i < c->nent; i++)
		if (c->entries[i].function == fn)
			return &c->entries[i];
	return NULL;
}

/*
 * Each vCPU's CPUID: the supported set, with its own APIC ID, the
 * hypervisor bit (the guest then looks for KVM's paravirtual leaves:
 * kvm-clock) and our own brand string.  No invariant TSC, as QEMU by
 * default: with it, Linux prefers the bare TSC to kvm-clock.
 */
static void set_cpuid(int fd, const struct kvm_cpuid2 *sup, int id)
{
	size_t size = sizeof(*sup) +
		(sup->nent + 3) * sizeof(sup->entries[0]);
	struct kvm_cpuid_entry2 *e;
	struct kvm_cpuid2 *c = calloc(1, size);
	uint32_t i, fn;

	if (!c)
		die("calloc");
	memcpy(c, sup, sizeof(*sup) + sup->nent * sizeof(sup->entries[0]));
	for (fn = BRAND_FIRST; fn <= BRAND_LAST; fn++) {
		e = cpuid_entry(c, fn);
		if (!e) {
			e = &c->entries[c->nent++];
			e->function = fn;
		}
		memcpy(&e->eax, brand + (fn - BRAND_FIRST) * 16, 16);
	}
	e = cpuid_entry(c, 0x80000000);
	if (e && e->eax < BRAND_LAST)
		e->eax = BRAND_LAST;
	for (i = 0; i < c->nent; i++) {
		e = &c->entries[i];
		switch (e->function) {
		case 1:
			e->ebx = (e->ebx & 0x00ffffff) | (uint32_t)id << 24;
			e->ecx |= CPUID_HYPERVISOR;
			break;
		case 0xb:
		case 0x1f:
			e->edx = id;
			break;
		case 0x80000007:
			e->edx &= ~CPUID_INVARIANT_TSC;
			break;
		case 0x8000001e:
			e->eax = id;
			break;
		}
	}
	if (ioctl(fd, KVM_SET_CPUID2, c) < 0)
		die("KVM_SET_CPUID2");
	free(c);
}

/* A size with an optional K, M or G suffix (MiB by default); 0 if bad */
static uint64_t parse_size(const char *s)
{
	unsigned int shift = 20;
	uint64_t v;
	char *end;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || strchr(s, '-'))
		return 0;
	switch (*end) {
	case 'G': case 'g':
		shift = 30;
		end++;
		break;
	case 'M': case 'm':
		end++;
		break;
	case 'K': case 'k':
		shift = 10;
		end++;
		break;
	}
	if (*end || v > UINT64_MAX >> shift)
		return 0;
	return v << shift;
}

/* A decimal count; -1 if bad */
static int parse_count(const char *s)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 0 || v > INT32_MAX)
		return -1;
	return v;
}

static void *guest_ram(uint64_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED)
		die("mmap guest memory");
	madvise(p, size, MADV_HUGEPAGE);
	return p;
}

static void add_slot(int slot, uint64_t gpa, uint64_t size, void *hva)
{
	struct kvm_userspace_memory_region r = {
		.slot = slot, .guest_phys_addr = gpa, .memory_size = size,
		.userspace_addr = (uintptr_t)hva,
	};

	if (ioctl(vmm.vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
		die("KVM_SET_USER_MEMORY_REGION");
}

static void usage(void)
{
	fprintf(stderr,
		"Usage: vireo-run --kernel bzImage [--initrd F] [--cmdline S] [--mem M]\n"
		"                 [--cpus N] [--disk IMG]... [--net TAP] [--device PATH]\n"
		"                 [--watch STRING]\n");
	exit(1);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "kernel", required_argument, NULL, 'k' },
		{ "initrd", required_argument, NULL, 'i' },
		{ "cmdline", required_argument, NULL, 'c' },
		{ "mem", required_argument, NULL, 'm' },
		{ "cpus", required_argument, NULL, 'p' },
		{ "disk", required_argument, NULL, 'd' },
		{ "net", required_argument, NULL, 'n' },
		{ "device", required_argument, NULL, 'D' },
		{ "watch", required_argument, NULL, 'w' },
		{ "help", no_argument, NULL, 'h' },
		{ }
	};
	const char *kernel = NULL, *initrd = NULL, *dev = "/dev/vireo";
	const char *cmdline = DEFAULT_CMDLINE, *watch = NULL;
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	uint64_t mem = 256ULL << 20, rsdp;
	struct kvm_cpuid2 *cpuid;
	long run_size;
	int opt, i;

	vmm.ncpus = 1;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'k':
			kernel = optarg;
			break;
		case 'i':
			initrd = optarg;
			break;
		case 'c':
			cmdline = optarg;
			break;
		case 'm':
			mem = parse_size(optarg);
			break;
		case 'p':
			vmm.ncpus = parse_count(optarg);
			break;
		case 'D':
			dev = optarg;
			break;
		case 'w':
			watch = optarg;
			break;
		case 'd':
		case 'n':
			if (nr_vdevs == VIRTIO_MAX_DEVS) {
				fprintf(stderr, "vireo-run: at most %d virtio devices\n",
					VIRTIO_MAX_DEVS);
				return 1;
			}
			vdevs[nr_vdevs] = opt == 'd' ?
				virtio_blk_create(optarg, VIRTIO_IRQ_BASE + nr_vdevs) :
				virtio_net_create(optarg, VIRTIO_IRQ_BASE + nr_vdevs);
			if (!vdevs[nr_vdevs])
				return 1;
			nr_vdevs++;
			break;
		default:
			usage();
		}
	}
	if (!kernel || optind != argc)
		usage();
	if (vmm.ncpus < 1 || vmm.ncpus > MAX_CPUS) {
		fprintf(stderr, "vireo-run: --cpus must be 1 to %d\n", MAX_CPUS);
		return 1;
	}
	if (mem < (64ULL << 20) || mem > (1ULL << 40) || mem & 0xfff) {
		fprintf(stderr, "vireo-run: --mem must be 64M to 1024G, in 4K pages\n");
		return 1;
	}

	vmm.sys_fd = open(dev, O_RDWR | O_CLOEXEC);
	if (vmm.sys_fd < 0)
		die(dev);
	vmm.vm_fd = ioctl(vmm.sys_fd, KVM_CREATE_VM, 0);
	if (vmm.vm_fd < 0)
		die("KVM_CREATE_VM");
	if (ioctl(vmm.vm_fd, KVM_SET_TSS_ADDR, 0xfffbd000UL) < 0)
		die("KVM_SET_TSS_ADDR");

	vmm.low_end = mem < LOW_RAM_MAX ? mem : LOW_RAM_MAX;
	vmm.low = guest_ram(vmm.low_end);
	add_slot(0, 0, vmm.low_end, vmm.low);
	if (mem > LOW_RAM_MAX) {
		vmm.high_size = mem - LOW_RAM_MAX;
		vmm.high = guest_ram(vmm.high_size);
		add_slot(1, HIGH_RAM_BASE, vmm.high_size, vmm.high);
	}

	if (ioctl(vmm.vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
		die("KVM_CREATE_IRQCHIP");
	if (ioctl(vmm.vm_fd, KVM_CREATE_PIT2, &pit) < 0)
		die("KVM_CREATE_PIT2");

	/* the guest finds the virtio devices in the DSDT */
	rsdp = acpi_build(ACPI_TABLES_ADDR, ACPI_TABLES_SIZE, nr_vdevs);
	if (!rsdp || boot_load(kernel, initrd, cmdline, rsdp) < 0)
		return 1;

	run_size = ioctl(vmm.sys_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size <= 0)
		die("KVM_GET_VCPU_MMAP_SIZE");
	cpuid = supported_cpuid();
	for (i = 0; i < vmm.ncpus; i++) {
		vcpus[i].fd = ioctl(vmm.vm_fd, KVM_CREATE_VCPU, i);
		if (vcpus[i].fd < 0)
			die("KVM_CREATE_VCPU");
		vcpus[i].run = mmap(NULL, run_size, PROT_READ | PROT_WRITE,
				    MAP_SHARED, vcpus[i].fd, 0);
		if (vcpus[i].run == MAP_FAILED)
			die("mmap kvm_run");
		set_cpuid(vcpus[i].fd, cpuid, i);
	}
	if (boot_setup_vcpu(vcpus[0].fd) < 0)
		die("vCPU 0 registers");

	serial_init();
	if (watch)
		serial_watch(watch);
	for (i = 1; i < vmm.ncpus; i++)
		if (pthread_create(&vcpus[i].thread, NULL, vcpu_thread, &vcpus[i]))
			die("pthread_create");
	vcpu_thread(&vcpus[0]);
	return 1;
}
