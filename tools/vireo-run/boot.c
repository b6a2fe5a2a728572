// SPDX-License-Identifier: GPL-2.0-only
/*
 * Booting a bzImage through Linux's 64-bit boot protocol
 * (Documentation/arch/x86/boot.rst): the protected-mode kernel at its
 * preferred address, boot_params (the "zero page") with the setup header
 * copied from the image, the e820 map, the command line and the initrd;
 * vCPU 0 starts at the 64-bit entry in long mode with an identity map of
 * the first 4 GiB and a GDT holding __BOOT_CS (0x10) and __BOOT_DS (0x18).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm.h"

/* Guest physical layout below 1 MiB */
#define GDT_ADDR		0x500
#define BOOT_PARAMS_ADDR	0x7000
#define PML4_ADDR		0x9000	/* then the PDPT and 4 PDs */
#define CMDLINE_ADDR		0x20000
#define CMDLINE_MAX		0x10000
#define EBDA_START		0x9fc00

/* boot_params offsets */
#define BP_ACPI_RSDP		0x070
#define BP_EXT_RAMDISK_IMAGE	0x0c0
#define BP_EXT_RAMDISK_SIZE	0x0c4
#define BP_EXT_CMD_LINE_PTR	0x0c8
#define BP_E820_ENTRIES		0x1e8
#define BP_HDR			0x1f1
#define BP_E820_TABLE		0x2d0
#define BP_E820_MAX		128

/* setup header offsets (from the start of the image and of boot_params) */
#define HDR_SETUP_SECTS		0x1f1
#define HDR_JUMP_END		0x201	/* the header ends at 0x202 + this */
#define HDR_MAGIC		0x202
#define HDR_VERSION		0x206
#define HDR_TYPE_OF_LOADER	0x210
#define HDR_LOADFLAGS		0x211
#define HDR_RAMDISK_IMAGE	0x218
#define HDR_RAMDISK_SIZE	0x21c
#define HDR_HEAP_END_PTR	0x224
#define HDR_CMD_LINE_PTR	0x228
#define HDR_INITRD_ADDR_MAX	0x22c
#define HDR_XLOADFLAGS		0x236
#define HDR_CMDLINE_SIZE	0x238
#define HDR_PREF_ADDRESS	0x258
#define HDR_INIT_SIZE		0x260

#define LOADED_HIGH		0x01
#define CAN_USE_HEAP		0x80
#define XLF_KERNEL_64		0x01

#define E820_RAM		1
#define E820_RESERVED		2

static uint64_t entry64;

static uint32_t get32(const uint8_t *p, unsigned int off)
{
	uint32_t v;

	memcpy(&v, p + off, 4);
	return v;
}

static void put32(uint8_t *p, unsigned int off, uint32_t v)
{
	memcpy(p + off, &v, 4);
}

static int read_file(const char *path, uint8_t **buf, size_t *len)
{
	struct stat st;
	ssize_t n;
	size_t got = 0;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(stderr, "vireo-run: %s: %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	*len = st.st_size;
	*buf = malloc(*len ? *len : 1);
	if (!*buf) {
		close(fd);
		return -1;
	}
	while (got < *len) {
		n = read(fd, *buf + got, *len - got);
		if (n <= 0) {
			fprintf(stderr, "vireo-run: %s: short read\n", path);
			close(fd);
			return -1;
		}
		got += n;
	}
	close(fd);
	return 0;
}

static void e820_add(uint8_t *bp, uint64_t addr, uint64_t size, uint32_t type)
{
	uint8_t n = bp[BP_E820_ENTRIES];
	uint8_t *e = bp + BP_E820_TABLE + n * 20;

	if (n >= BP_E820_MAX)
		return;
	memcpy(e, &addr, 8);
	memcpy(e + 8, &size, 8);
	memcpy(e + 16, &type, 4);
	bp[BP_E820_ENTRIES] = n + 1;
}

int boot_load(const char *kernel, const char *initrd, const char *cmdline,
	      uint64_t rsdp)
{
	uint64_t load, init_size, ird_at = 0, ird_max;
	size_t len, setup_len, hdr_end, ird_len = 0;
	uint8_t *img, *bp, *ird = NULL, *dst;
	unsigned int setup_sects;
	uint16_t version;

	if (read_file(kernel, &img, &len) < 0)
		return -1;
	if (len < 0x1000 || memcmp(img + HDR_MAGIC, "HdrS", 4)) {
		fprintf(stderr, "vireo-run: %s is not a bzImage\n", kernel);
		return -1;
	}
	memcpy(&version, img + HDR_VERSION, 2);
	if (version < 0x020c || !(img[HDR_XLOADFLAGS] & XLF_KERNEL_64)) {
		fprintf(stderr, "vireo-run: %s has no 64-bit entry (boot protocol %x)\n",
			kernel, version);
		return -1;
	}
	setup_sects = img[HDR_SETUP_SECTS] ? img[HDR_SETUP_SECTS] : 4;
	setup_len = (setup_sects + 1) * 512;
	hdr_end = 0x202 + img[HDR_JUMP_END];
	if (setup_len >= len || hdr_end > 0x1000) {
		fprintf(stderr, "vireo-run: %s: bad setup header\n", kernel);
		return -1;
	}
	memcpy(&load, img + HDR_PREF_ADDRESS, 8);
	init_size = get32(img, HDR_INIT_SIZE);
	if (init_size < len - setup_len)
		init_size = len - setup_len;
	if (load < 0x100000 || load > vmm.low_end ||
	    init_size > vmm.low_end - load) {
		fprintf(stderr, "vireo-run: the kernel needs %llu MiB of RAM from %llu MiB\n",
			(unsigned long long)(init_size >> 20),
			(unsigned long long)(load >> 20));
		return -1;
	}
	dst = gpa_to_hva(load, len - setup_len);
	memcpy(dst, img + setup_len, len - setup_len);
	entry64 = load + 0x200;

	bp = gpa_to_hva(BOOT_PARAMS_ADDR, 0x1000);
	memset(bp, 0, 0x1000);
	memcpy(bp + BP_HDR, img + BP_HDR, hdr_end - BP_HDR);
	bp[HDR_TYPE_OF_LOADER] = 0xff;
	bp[HDR_LOADFLAGS] |= LOADED_HIGH | CAN_USE_HEAP;
	bp[HDR_HEAP_END_PTR] = 0x00;	/* 0xfe00: the heap ends in setup */
	bp[HDR_HEAP_END_PTR + 1] = 0xfe;
	memcpy(bp + BP_ACPI_RSDP, &rsdp, 8);

	/* cmdline_size does not count the terminating NUL */
	if (strlen(cmdline) + 1 > CMDLINE_MAX ||
	    strlen(cmdline) > get32(img, HDR_CMDLINE_SIZE)) {
		fprintf(stderr, "vireo-run: the command line is too long\n");
		return -1;
	}
	strcpy(gpa_to_hva(CMDLINE_ADDR, CMDLINE_MAX), cmdline);
	put32(bp, HDR_CMD_LINE_PTR, CMDLINE_ADDR);
	free(img);

	if (initrd) {
		if (read_file(initrd, &ird, &ird_len) < 0)
			return -1;
		if (!ird_len) {
			fprintf(stderr, "vireo-run: %s is empty\n", initrd);
			return -1;
		}
		/* as high as the kernel allows, above the kernel's room */
		ird_max = get32(bp, HDR_INITRD_ADDR_MAX);
		if (ird_max >= vmm.low_end)
			ird_max = vmm.low_end - 1;
		ird_at = (ird_max + 1 - ird_len) & ~0xfffULL;
		if (ird_len > ird_max || ird_at < load + init_size) {
			fprintf(stderr, "vireo-run: no room for the initrd\n");
			return -1;
		}
		memcpy(gpa_to_hva(ird_at, ird_len), ird, ird_len);
		put32(bp, HDR_RAMDISK_IMAGE, ird_at);
		put32(bp, HDR_RAMDISK_SIZE, ird_len);
		free(ird);
	}

	e820_add(bp, 0, EBDA_START, E820_RAM);
	e820_add(bp, EBDA_START, 0xa0000 - EBDA_START, E820_RESERVED);
	e820_add(bp, ACPI_TABLES_ADDR, 0x100000 - ACPI_TABLES_ADDR, E820_RESERVED);
	e820_add(bp, 0x100000, vmm.low_end - 0x100000, E820_RAM);
	if (vmm.high_size)
		e820_add(bp, HIGH_RAM_BASE, vmm.high_size, E820_RAM);
	return 0;
}

/* vCPU 0: long mode, paging on an identity map, at the 64-bit entry */
int boot_setup_vcpu(int fd)
{
	uint64_t gdt[4] = {
		0, 0,
		0x00af9b000000ffffULL,	/* 0x10: 64-bit code */
		0x00cf93000000ffffULL,	/* 0x18: flat data */
	};
	struct kvm_segment code = {
		.base = 0, .limit = 0xffffffff, .selector = 0x10,
		.type = 11, .present = 1, .s = 1, .l = 1, .g = 1,
	};
	struct kvm_segment data = {
		.base = 0, .limit = 0xffffffff, .selector = 0x18,
		.type = 3, .present = 1, .s = 1, .db = 1, .g = 1,
	};
	uint64_t *pml4 = gpa_to_hva(PML4_ADDR, 6 * 0x1000);
	uint64_t *pdpt = pml4 + 512, *pd = pml4 + 1024;
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	int i;

	memcpy(gpa_to_hva(GDT_ADDR, sizeof(gdt)), gdt, sizeof(gdt));
	memset(pml4, 0, 6 * 0x1000);
	pml4[0] = (PML4_ADDR + 0x1000) | 3;
	for (i = 0; i < 4; i++)
		pdpt[i] = (PML4_ADDR + 0x2000 + i * 0x1000) | 3;
	for (i = 0; i < 4 * 512; i++)
		pd[i] = ((uint64_t)i << 21) | 0x83;	/* 2 MiB, RW, P */

	if (ioctl(fd, KVM_GET_SREGS, &sregs) < 0)
		return -1;
	sregs.cs = code;
	sregs.ds = data;
	sregs.es = data;
	sregs.fs = data;
	sregs.gs = data;
	sregs.ss = data;
	sregs.gdt.base = GDT_ADDR;
	sregs.gdt.limit = sizeof(gdt) - 1;
	sregs.cr3 = PML4_ADDR;
	sregs.cr4 = 0x20;			/* PAE */
	sregs.cr0 = 0x80000011;			/* PG, ET, PE */
	sregs.efer = 0x500;			/* LMA, LME */
	if (ioctl(fd, KVM_SET_SREGS, &sregs) < 0)
		return -1;

	memset(&regs, 0, sizeof(regs));
	regs.rflags = 2;
	regs.rip = entry64;
	regs.rsi = BOOT_PARAMS_ADDR;
	regs.rsp = BOOT_PARAMS_ADDR;	/* below the zero page, unused */
	return ioctl(fd, KVM_SET_REGS, &regs);
}
