/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * vireo-run: what the parts of the VMM share.
 *
 * Guest physical memory: [0, low_end) and, when the guest has more than
 * fits below the PCI hole, [4 GiB, 4 GiB + high_size).  Devices live in
 * the hole: virtio-mmio windows from VIRTIO_MMIO_BASE, the IOAPIC and
 * the local APICs (in the kernel).
 */
#ifndef VIREO_RUN_VMM_H
#define VIREO_RUN_VMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LOW_RAM_MAX		0xc0000000ULL	/* the hole starts here */
#define HIGH_RAM_BASE		0x100000000ULL

#define VIRTIO_MMIO_BASE	0xd0000000ULL	/* one 4 KiB window each */
#define VIRTIO_MMIO_SIZE	0x1000
#define VIRTIO_MAX_DEVS		4
#define VIRTIO_IRQ_BASE		5	/* ISA IRQs 5, 6, ... (edge, high) */

#define ACPI_TABLES_ADDR	0xe0000	/* to 1 MiB, reserved in e820 */
#define ACPI_TABLES_SIZE	0x20000

#define SERIAL_PORT		0x3f8
#define SERIAL_IRQ		4

/* ACPI fixed hardware, in I/O space */
#define PM1A_EVT_PORT		0x600	/* status (2 bytes), enable (2) */
#define PM1A_CNT_PORT		0x604	/* control (2) */
#define PM1_SLP_EN		0x2000	/* in PM1a_CNT: enter SLP_TYP */
#define ACPI_SCI_IRQ		9
#define RESET_PORT		0xcf9	/* FADT reset register */

struct vmm {
	int sys_fd;		/* /dev/vireo or /dev/kvm */
	int vm_fd;
	int ncpus;
	uint8_t *low;		/* host mapping of [0, low_end) */
	uint64_t low_end;
	uint8_t *high;		/* host mapping of [4 GiB, ...), or NULL */
	uint64_t high_size;
};

extern struct vmm vmm;

/*
 * The host address of guest physical [gpa, gpa + len), or NULL when
 * that range is not all guest RAM (a guest-supplied address: always
 * check).  len 0 is not allowed.
 */
void *gpa_to_hva(uint64_t gpa, uint64_t len);

/* Drive an ISA interrupt line of the in-kernel PIC/IOAPIC (thread-safe). */
void irq_line(int irq, int level);

/* Stop the VMM: status 0 for a guest power-off. */
void vmm_exit(int status) __attribute__((noreturn));

/* serial.c: a 16550A on the terminal */
void serial_init(void);
void serial_io(uint16_t port, uint8_t *data, bool is_write);
/* Report on stderr how long after the first KVM_RUN the guest printed s */
void serial_watch(const char *s);

/*
 * acpi.c: RSDP, XSDT/RSDT, FADT, FACS, DSDT (\_S5 and nr_virtio
 * virtio-mmio devices) and MADT at gpa; returns the RSDP's address, 0
 * when they do not fit
 */
uint64_t acpi_build(uint64_t gpa, size_t room, int nr_virtio);

/* boot.c: load a bzImage, its initrd and command line; set up vCPU 0 */
int boot_load(const char *kernel, const char *initrd, const char *cmdline,
	      uint64_t rsdp);
int boot_setup_vcpu(int vcpu_fd);

#endif
