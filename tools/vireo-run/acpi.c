// SPDX-License-Identifier: GPL-2.0-only
/*
 * The ACPI tables a Linux guest needs to find its CPUs and IOAPIC (MADT)
 * and to power off (FADT with a PM1a control block, DSDT with \_S5):
 *
 *   RSDP -> RSDT, XSDT -> FADT -> FACS, DSDT (\_S5, virtio-mmio devices)
 *                      -> MADT
 *
 * Layouts from the ACPI specification, 6.x (FADT revision 3 layout,
 * 244 bytes, with the 64-bit X_ fields left zero so the 32-bit ones
 * count).
 */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "vmm.h"

struct sdt_header {
	char signature[4];
	uint32_t length;
	uint8_t revision;
	uint8_t checksum;
	char oem_id[6];
	char oem_table_id[8];
	uint32_t oem_revision;
	char creator_id[4];
	uint32_t creator_revision;
} __attribute__((packed));

struct rsdp {
	char signature[8];
	uint8_t checksum;
	char oem_id[6];
	uint8_t revision;
	uint32_t rsdt;
	uint32_t length;
	uint64_t xsdt;
	uint8_t ext_checksum;
	uint8_t reserved[3];
} __attribute__((packed));

struct fadt {
	struct sdt_header h;
	uint32_t facs;
	uint32_t dsdt;
	uint8_t reserved0;
	uint8_t pm_profile;
	uint16_t sci_int;
	uint32_t smi_cmd;
	uint8_t acpi_enable, acpi_disable, s4bios_req, pstate_cnt;
	uint32_t pm1a_evt_blk, pm1b_evt_blk, pm1a_cnt_blk, pm1b_cnt_blk;
	uint32_t pm2_cnt_blk, pm_tmr_blk, gpe0_blk, gpe1_blk;
	uint8_t pm1_evt_len, pm1_cnt_len, pm2_cnt_len, pm_tmr_len;
	uint8_t gpe0_blk_len, gpe1_blk_len, gpe1_base, cst_cnt;
	uint16_t p_lvl2_lat, p_lvl3_lat, flush_size, flush_stride;
	uint8_t duty_offset, duty_width, day_alrm, mon_alrm, century;
	uint16_t iapc_boot_arch;
	uint8_t reserved1;
	uint32_t flags;
	uint8_t reset_reg[12];		/* generic address structure */
	uint8_t reset_value;
	uint8_t reserved2[3];
	uint64_t x_facs, x_dsdt;
	uint8_t x_blocks[8][12];	/* X_PM1a_EVT_BLK .. X_GPE1_BLK */
} __attribute__((packed));

struct facs {
	char signature[4];
	uint32_t length;
	uint32_t hw_signature;
	uint32_t waking_vector;
	uint32_t global_lock;
	uint32_t flags;
	uint64_t x_waking_vector;
	uint8_t version;
	uint8_t reserved[31];
} __attribute__((packed));

struct madt {
	struct sdt_header h;
	uint32_t lapic_addr;
	uint32_t flags;
} __attribute__((packed));

struct madt_lapic {
	uint8_t type, length, processor_id, apic_id;
	uint32_t flags;
} __attribute__((packed));

struct madt_ioapic {
	uint8_t type, length, id, reserved;
	uint32_t addr, gsi_base;
} __attribute__((packed));

struct madt_override {
	uint8_t type, length, bus, source;
	uint32_t gsi;
	uint16_t flags;
} __attribute__((packed));

struct madt_lapic_nmi {
	uint8_t type, length, processor_id;
	uint16_t flags;
	uint8_t lint;
} __attribute__((packed));

static_assert(sizeof(struct rsdp) == 36, "RSDP");
static_assert(sizeof(struct fadt) == 244, "FADT");
static_assert(sizeof(struct facs) == 64, "FACS");

#define FADT_WBINVD		0x0001
#define FADT_PWR_BUTTON		0x0010	/* no fixed power button */
#define FADT_SLP_BUTTON		0x0020	/* no fixed sleep button */
#define FADT_RESET_REG_SUP	0x0400
#define BOOT_ARCH_NO_VGA	0x0004
#define BOOT_ARCH_NO_CMOS_RTC	0x0020

/* AML opcodes (ACPI specification, chapter 20) */
#define AML_ZERO		0x00
#define AML_NAME		0x08
#define AML_BYTE		0x0a
#define AML_STRING		0x0d
#define AML_SCOPE		0x10
#define AML_BUFFER		0x11
#define AML_PACKAGE		0x12
#define AML_EXT			0x5b
#define AML_DEVICE		0x82	/* after AML_EXT */

/* Resource descriptors */
#define RES_MEMORY32_FIXED	0x86
#define RES_EXT_IRQ		0x89
#define RES_END			0x79

struct aml {
	uint8_t *p;
	size_t len, room;
};

static void emit(struct aml *a, const void *bytes, size_t n)
{
	if (a->len + n <= a->room)
		memcpy(a->p + a->len, bytes, n);
	a->len += n;
}

static void emit8(struct aml *a, uint8_t b)
{
	emit(a, &b, 1);
}

static void emit32(struct aml *a, uint32_t v)
{
	emit(a, &v, 4);
}

/*
 * Close a package opened at start: move its body up to make room for the
 * PkgLength (which counts itself) and write it, in 1 or 2 bytes.
 */
static void pkg_close(struct aml *a, size_t start)
{
	size_t body = a->len - start, n = body + 1 < 0x40 ? 1 : 2;
	size_t total = body + n;

	emit(a, "\0\0", n);	/* grow */
	if (a->len > a->room)
		return;
	memmove(a->p + start + n, a->p + start, body);
	if (n == 1) {
		a->p[start] = total;
	} else {
		a->p[start] = 0x40 | (total & 0xf);
		a->p[start + 1] = total >> 4;
	}
}

/*
 * The DSDT's body:
 *   Name (_S5, Package (4) { 5, 5, 0, 0 })   -- SLP_TYP 5 powers off
 *   Scope (\_SB) { Device (VRnn) { _HID "LNRO0005", _UID, _CRS } ... }
 * one virtio-mmio device per window: its registers and its edge IRQ.
 */
static void dsdt_body(struct aml *a, int nr_virtio)
{
	static const uint8_t s5[] = {
		AML_NAME, '_', 'S', '5', '_',
		AML_PACKAGE, 0x08, 0x04,
		AML_BYTE, 0x05, AML_BYTE, 0x05, AML_ZERO, AML_ZERO,
	};
	size_t scope, dev, buf;
	char name[4] = { 'V', 'R' };
	int i;

	emit(a, s5, sizeof(s5));
	if (!nr_virtio)
		return;
	emit8(a, AML_SCOPE);
	scope = a->len;
	emit(a, "\\_SB_", 5);
	for (i = 0; i < nr_virtio; i++) {
		emit8(a, AML_EXT);
		emit8(a, AML_DEVICE);
		dev = a->len;
		name[2] = '0' + i / 10 % 10;
		name[3] = '0' + i % 10;
		emit(a, name, 4);
		emit8(a, AML_NAME);
		emit(a, "_HID", 4);
		emit8(a, AML_STRING);
		emit(a, "LNRO0005", 9);
		emit8(a, AML_NAME);
		emit(a, "_UID", 4);
		emit8(a, AML_BYTE);
		emit8(a, i);
		emit8(a, AML_NAME);
		emit(a, "_CRS", 4);
		emit8(a, AML_BUFFER);
		buf = a->len;
		emit8(a, AML_BYTE);
		emit8(a, 12 + 9 + 2);	/* the descriptors' size */
		emit8(a, RES_MEMORY32_FIXED);
		emit8(a, 9);
		emit8(a, 0);
		emit8(a, 1);		/* read/write */
		emit32(a, VIRTIO_MMIO_BASE + i * VIRTIO_MMIO_SIZE);
		emit32(a, VIRTIO_MMIO_SIZE);
		emit8(a, RES_EXT_IRQ);
		emit8(a, 6);
		emit8(a, 0);
		emit8(a, 0x03);		/* consumer, edge, high, exclusive */
		emit8(a, 1);
		emit32(a, VIRTIO_IRQ_BASE + i);
		emit8(a, RES_END);
		emit8(a, 0);		/* checksum: none */
		pkg_close(a, buf);
		pkg_close(a, dev);
	}
	pkg_close(a, scope);
}

static uint8_t checksum(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint8_t sum = 0;

	while (len--)
		sum += *b++;
	return -sum;
}

static void header(struct sdt_header *h, const char *sig, uint32_t len,
		   uint8_t rev)
{
	memcpy(h->signature, sig, 4);
	h->length = len;
	h->revision = rev;
	memcpy(h->oem_id, "VIREO ", 6);
	memcpy(h->oem_table_id, "VIREORUN", 8);
	h->oem_revision = 1;
	memcpy(h->creator_id, "VRUN", 4);
	h->creator_revision = 1;
	h->checksum = 0;
	h->checksum = checksum(h, len);
}

/* Build every table in [gpa, gpa + room); the RSDP comes first. */
uint64_t acpi_build(uint64_t gpa, size_t room, int nr_virtio)
{
	size_t madt_len = sizeof(struct madt) +
		vmm.ncpus * sizeof(struct madt_lapic) +
		sizeof(struct madt_ioapic) + sizeof(struct madt_override) +
		sizeof(struct madt_lapic_nmi);
	uint64_t rsdp_at = gpa, rsdt_at = gpa + 0x40, xsdt_at = gpa + 0x80;
	uint64_t facs_at = gpa + 0xc0, fadt_at = gpa + 0x100;
	uint64_t dsdt_at = gpa + 0x200, madt_at = gpa + 0x800;
	uint8_t *base = gpa_to_hva(gpa, room), *p;
	struct sdt_header *sdt;
	struct rsdp *rsdp;
	struct fadt *fadt;
	struct facs *facs;
	struct aml aml = { 0 };
	struct madt *madt;
	int i;

	if (!base || madt_at + madt_len > gpa + room) {
		fprintf(stderr, "vireo-run: no room for the ACPI tables\n");
		return 0;
	}
	memset(base, 0, room);

	/* MADT: CPUs, the IOAPIC, SCI level/high, NMI on LINT1 */
	madt = (void *)(base + (madt_at - gpa));
	madt->lapic_addr = 0xfee00000;
	madt->flags = 1;	/* PC-AT compatible: two 8259s */
	p = (uint8_t *)(madt + 1);
	for (i = 0; i < vmm.ncpus; i++) {
		struct madt_lapic *l = (void *)p;

		l->type = 0;
		l->length = sizeof(*l);
		l->processor_id = i;
		l->apic_id = i;
		l->flags = 1;
		p += sizeof(*l);
	}
	{
		struct madt_ioapic *io = (void *)p;
		struct madt_override *o;
		struct madt_lapic_nmi *n;

		io->type = 1;
		io->length = sizeof(*io);
		io->id = vmm.ncpus;
		io->addr = 0xfec00000;
		io->gsi_base = 0;
		p += sizeof(*io);
		o = (void *)p;
		o->type = 2;
		o->length = sizeof(*o);
		o->source = ACPI_SCI_IRQ;
		o->gsi = ACPI_SCI_IRQ;
		o->flags = 0x000d;	/* active high, level */
		p += sizeof(*o);
		n = (void *)p;
		n->type = 4;
		n->length = sizeof(*n);
		n->processor_id = 0xff;	/* all */
		n->lint = 1;
	}
	header(&madt->h, "APIC", madt_len, 3);

	sdt = (void *)(base + (dsdt_at - gpa));
	aml.p = (uint8_t *)(sdt + 1);
	aml.room = madt_at - dsdt_at - sizeof(*sdt);
	dsdt_body(&aml, nr_virtio);
	if (aml.len > aml.room) {
		fprintf(stderr, "vireo-run: the DSDT does not fit\n");
		return 0;
	}
	header(sdt, "DSDT", sizeof(*sdt) + aml.len, 2);

	facs = (void *)(base + (facs_at - gpa));
	memcpy(facs->signature, "FACS", 4);
	facs->length = sizeof(*facs);
	facs->version = 1;

	fadt = (void *)(base + (fadt_at - gpa));
	fadt->facs = facs_at;
	fadt->dsdt = dsdt_at;
	fadt->sci_int = ACPI_SCI_IRQ;
	fadt->pm1a_evt_blk = PM1A_EVT_PORT;
	fadt->pm1a_cnt_blk = PM1A_CNT_PORT;
	fadt->pm1_evt_len = 4;
	fadt->pm1_cnt_len = 2;
	fadt->p_lvl2_lat = 101;		/* no C2 */
	fadt->p_lvl3_lat = 1001;	/* no C3 */
	fadt->iapc_boot_arch = BOOT_ARCH_NO_VGA | BOOT_ARCH_NO_CMOS_RTC;
	fadt->flags = FADT_WBINVD | FADT_PWR_BUTTON | FADT_SLP_BUTTON |
		      FADT_RESET_REG_SUP;
	fadt->reset_reg[0] = 1;		/* system I/O */
	fadt->reset_reg[1] = 8;		/* bit width */
	fadt->reset_reg[3] = 1;		/* byte access */
	fadt->reset_reg[4] = RESET_PORT & 0xff;
	fadt->reset_reg[5] = RESET_PORT >> 8;
	fadt->reset_value = 0x06;
	header(&fadt->h, "FACP", sizeof(*fadt), 3);

	sdt = (void *)(base + (rsdt_at - gpa));
	((uint32_t *)(sdt + 1))[0] = fadt_at;
	((uint32_t *)(sdt + 1))[1] = madt_at;
	header(sdt, "RSDT", sizeof(*sdt) + 8, 1);

	sdt = (void *)(base + (xsdt_at - gpa));
	memcpy((uint8_t *)(sdt + 1), &fadt_at, 8);
	memcpy((uint8_t *)(sdt + 1) + 8, &madt_at, 8);
	header(sdt, "XSDT", sizeof(*sdt) + 16, 1);

	rsdp = (void *)(base + (rsdp_at - gpa));
	memcpy(rsdp->signature, "RSD PTR ", 8);
	memcpy(rsdp->oem_id, "VIREO ", 6);
	rsdp->revision = 2;
	rsdp->rsdt = rsdt_at;
	rsdp->length = sizeof(*rsdp);
	rsdp->xsdt = xsdt_at;
	rsdp->checksum = checksum(rsdp, 20);
	rsdp->ext_checksum = checksum(rsdp, sizeof(*rsdp));
	return rsdp_at;
}
