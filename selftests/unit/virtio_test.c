// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit test of vireo-run's virtio-mmio devices, tools/vireo-run/virtio.c,
 * built as a userspace program.
 *
 * The test plays the guest driver: guest RAM is a 1 MiB heap buffer at
 * guest physical 0 (gpa_to_hva() below), the interrupt lines are
 * recorded by a fake irq_line(), and the block device is backed by a
 * temporary file that the test also reads and writes directly.  After
 * the transport registers, feature negotiation and the configuration
 * space, requests of every kind go through the queue, then rings that
 * break the rules (addresses outside RAM, loops, bad indexes, misplaced
 * descriptors), each of which must leave the device in NEEDS_RESET
 * without touching memory it was not given.  An alarm ends the test if a
 * descriptor loop makes the device spin.
 *
 * When a tap can be created (root, /dev/net/tun) the network device is
 * also tried: a frame sent by the guest is caught on the tap's interface
 * with a packet socket, and a frame sent there reaches a guest RX
 * buffer, also one made available only after the frame arrived.
 */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/capability.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "tap.h"
#include "vmm.h"
#include "virtio.h"

#define RAM_SIZE	0x100000

/* registers */
#define MAGIC		0x000
#define VERSION		0x004
#define DEVICE_ID	0x008
#define VENDOR_ID	0x00c
#define DEV_FEAT	0x010
#define DEV_FEAT_SEL	0x014
#define DRV_FEAT	0x020
#define DRV_FEAT_SEL	0x024
#define QUEUE_SEL	0x030
#define QUEUE_NUM_MAX	0x034
#define QUEUE_NUM	0x038
#define QUEUE_READY	0x044
#define QUEUE_NOTIFY	0x050
#define INT_STATUS	0x060
#define INT_ACK		0x064
#define STATUS		0x070
#define QUEUE_DESC	0x080
#define QUEUE_DRIVER	0x090
#define QUEUE_DEVICE	0x0a0
#define CONFIG		0x100

#define S_ACK		0x01
#define S_DRIVER	0x02
#define S_DRIVER_OK	0x04
#define S_FEATURES_OK	0x08
#define S_NEEDS_RESET	0x40

#define BIT_ULL(n)	(1ULL << (n))
#define F_BLK_SEG_MAX	BIT_ULL(2)
#define F_BLK_RO	BIT_ULL(5)
#define F_BLK_SIZE	BIT_ULL(6)
#define F_BLK_FLUSH	BIT_ULL(9)
#define F_NET_MAC	BIT_ULL(5)
#define F_NET_STATUS	BIT_ULL(16)
#define F_INDIRECT	BIT_ULL(28)
#define F_EVENT_IDX	BIT_ULL(29)
#define F_VERSION_1	BIT_ULL(32)

#define D_NEXT		1
#define D_WRITE		2
#define D_INDIRECT	4

#define T_IN		0
#define T_OUT		1
#define T_FLUSH		4
#define T_GET_ID	8
#define T_DISCARD	11

/* guest memory layout: queue q's rings at RING(q) */
#define QN		16
#define RING(q)		(0x1000 + (q) * 0x3000)
#define DESC_OF(q)	RING(q)
#define AVAIL_OF(q)	(RING(q) + 0x1000)
#define USED_OF(q)	(RING(q) + 0x2000)
#define HDR		0x8000		/* request header */
#define STAT		0x8100		/* status byte */
#define ITABLE		0x9000		/* an indirect table */
#define BUF		0x10000		/* data */
#define BUF2		0x20000
#define SECTORS		64		/* of the image */

struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct req_hdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

static uint8_t *ram;
static int zero_len_lookups;
static int irq_level[16], irq_rises[16];

/* not static: kept for the leak checkers, as there is no destructor */
struct virtio_dev *blk, *ro_blk, *net;
static struct virtio_dev *dev;		/* the one being driven */
static int image_fd;
static uint16_t avail_idx[2], used_seen[2];

void *gpa_to_hva(uint64_t gpa, uint64_t len)
{
	if (!len) {
		__atomic_add_fetch(&zero_len_lookups, 1, __ATOMIC_SEQ_CST);
		return NULL;
	}
	if (gpa >= RAM_SIZE || len > RAM_SIZE - gpa)
		return NULL;
	return ram + gpa;
}

void irq_line(int irq, int level)
{
	if (irq < 0 || irq >= 16)
		abort();
	if (level && !__atomic_load_n(&irq_level[irq], __ATOMIC_SEQ_CST))
		__atomic_add_fetch(&irq_rises[irq], 1, __ATOMIC_SEQ_CST);
	__atomic_store_n(&irq_level[irq], level, __ATOMIC_SEQ_CST);
}

static int level(int irq)
{
	return __atomic_load_n(&irq_level[irq], __ATOMIC_SEQ_CST);
}

static uint32_t rd(uint64_t off)
{
	uint32_t v;

	virtio_mmio_access(dev, off, (uint8_t *)&v, 4, false);
	return v;
}

static void wr(uint64_t off, uint32_t v)
{
	virtio_mmio_access(dev, off, (uint8_t *)&v, 4, true);
}

static uint64_t cfg(uint64_t off, uint32_t len)
{
	uint64_t v = 0;

	virtio_mmio_access(dev, CONFIG + off, (uint8_t *)&v, len, false);
	return v;
}

static uint64_t dev_features(void)
{
	uint64_t hi;

	wr(DEV_FEAT_SEL, 1);
	hi = rd(DEV_FEAT);
	wr(DEV_FEAT_SEL, 0);
	return hi << 32 | rd(DEV_FEAT);
}

static struct desc *desc(int q, int i)
{
	return (struct desc *)(ram + DESC_OF(q)) + i;
}

static void set_desc(struct desc *d, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	d->addr = addr;
	d->len = len;
	d->flags = flags;
	d->next = next;
}

static uint16_t *avail_ring(int q)
{
	return (uint16_t *)(ram + AVAIL_OF(q));	/* flags, idx, ring[] */
}

static uint16_t used_idx(int q)
{
	return __atomic_load_n((uint16_t *)(ram + USED_OF(q)) + 1,
			       __ATOMIC_ACQUIRE);
}

/* used ring element i: id and len */
static uint32_t *used_elem(int q, uint16_t i)
{
	return (uint32_t *)(ram + USED_OF(q) + 4) + 2 * (i % QN);
}

static void post(int q, uint16_t head)
{
	avail_ring(q)[2 + avail_idx[q] % QN] = head;
	avail_idx[q]++;
	__atomic_store_n(&avail_ring(q)[1], avail_idx[q], __ATOMIC_RELEASE);
}

static bool set_features(uint64_t f)
{
	wr(STATUS, 0);
	wr(STATUS, S_ACK);
	wr(STATUS, S_ACK | S_DRIVER);
	wr(DRV_FEAT_SEL, 0);
	wr(DRV_FEAT, f);
	wr(DRV_FEAT_SEL, 1);
	wr(DRV_FEAT, f >> 32);
	wr(STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
	return rd(STATUS) & S_FEATURES_OK;
}

static bool setup_queue(int q, uint32_t num)
{
	memset(ram + RING(q), 0, 0x3000);
	avail_idx[q] = 0;
	used_seen[q] = 0;
	wr(QUEUE_SEL, q);
	wr(QUEUE_NUM, num);
	wr(QUEUE_DESC, DESC_OF(q));
	wr(QUEUE_DESC + 4, 0);
	wr(QUEUE_DRIVER, AVAIL_OF(q));
	wr(QUEUE_DRIVER + 4, 0);
	wr(QUEUE_DEVICE, USED_OF(q));
	wr(QUEUE_DEVICE + 4, 0);
	wr(QUEUE_READY, 1);
	return rd(QUEUE_READY) == 1;
}

/* The whole driver initialisation, nqueues queues */
static bool driver_init(uint64_t f, int nqueues)
{
	int q;

	if (!set_features(f))
		return false;
	for (q = 0; q < nqueues; q++)
		if (!setup_queue(q, QN))
			return false;
	wr(STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
	return rd(STATUS) == (S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
}

static void ack_all(void)
{
	wr(INT_ACK, rd(INT_STATUS));
}

/* Notify queue 0 and take the one completion, -1 if there is none. */
static int complete(uint16_t head, uint32_t *len)
{
	uint32_t *e;

	wr(QUEUE_NOTIFY, 0);
	if (used_idx(0) != (uint16_t)(used_seen[0] + 1))
		return -1;
	e = used_elem(0, used_seen[0]++);
	if (e[0] != head)
		return -1;
	if (len)
		*len = e[1];
	return ram[STAT];
}

static void put_hdr(uint32_t type, uint64_t sector)
{
	struct req_hdr h = { .type = type, .sector = sector };

	memcpy(ram + HDR, &h, sizeof(h));
	ram[STAT] = 0xff;
}

/*
 * A request in three descriptors from head 0: header, data (none when
 * len is 0), status.  Its status byte, -1 when it did not complete.
 */
static int request(uint32_t type, uint64_t sector, uint64_t buf, uint32_t len,
		   uint32_t *used_len)
{
	uint16_t write = type == T_OUT ? 0 : D_WRITE;

	put_hdr(type, sector);
	set_desc(desc(0, 0), HDR, sizeof(struct req_hdr), D_NEXT, 1);
	if (len) {
		set_desc(desc(0, 1), buf, len, D_NEXT | write, 2);
		set_desc(desc(0, 2), STAT, 1, D_WRITE, 0);
	} else {
		set_desc(desc(0, 1), STAT, 1, D_WRITE, 0);
	}
	post(0, 0);
	return complete(0, used_len);
}

static void fill(uint8_t *p, size_t len, unsigned int seed)
{
	size_t i;

	for (i = 0; i < len; i++)
		p[i] = (uint8_t)(seed + i * 7 + (i >> 8));
}

/* The device went to NEEDS_RESET with a config interrupt, nothing used */
static bool broken(void)
{
	return (rd(STATUS) & S_NEEDS_RESET) && (rd(INT_STATUS) & 2) &&
	       level(5) && used_idx(0) == used_seen[0];
}

static void test_transport(void)
{
	uint64_t f;
	uint8_t b[2] = { 0xaa, 0xaa };

	tap_ok(rd(MAGIC) == 0x74726976, "MagicValue 0x%x", rd(MAGIC));
	tap_ok(rd(VERSION) == 2, "Version 2");
	tap_ok(rd(DEVICE_ID) == 2, "DeviceID 2 (block)");
	tap_ok(rd(VENDOR_ID) == 0x4f524956, "VendorID");
	wr(QUEUE_SEL, 0);
	tap_ok(rd(QUEUE_NUM_MAX) == 256, "QueueNumMax 256 for queue 0");
	wr(QUEUE_SEL, 1);
	tap_ok(rd(QUEUE_NUM_MAX) == 0 && rd(QUEUE_READY) == 0,
	       "no queue 1 on the block device");
	f = dev_features();
	tap_ok((f & (F_VERSION_1 | F_BLK_SEG_MAX | F_BLK_SIZE | F_BLK_FLUSH |
		     F_INDIRECT)) ==
	       (F_VERSION_1 | F_BLK_SEG_MAX | F_BLK_SIZE | F_BLK_FLUSH |
		F_INDIRECT) && !(f & (F_BLK_RO | F_EVENT_IDX)),
	       "device features 0x%llx", (unsigned long long)f);
	virtio_mmio_access(dev, MAGIC, b, 2, false);
	tap_ok(!b[0] && !b[1], "a 16-bit register read gives 0");

	tap_ok(cfg(0, 8) == SECTORS && cfg(0, 4) == SECTORS && !cfg(4, 4) &&
	       cfg(0, 1) == SECTORS, "capacity %d sectors", SECTORS);
	tap_ok(cfg(12, 4) == 126 && cfg(20, 4) == 512,
	       "seg_max 126, blk_size 512");
	b[0] = 0x55;
	virtio_mmio_access(dev, CONFIG, b, 1, true);
	tap_ok(cfg(0, 8) == SECTORS && cfg(0xefc, 4) == 0,
	       "config writes are ignored, past the end reads 0");

	tap_ok(!set_features(F_BLK_FLUSH),
	       "FEATURES_OK refused without VERSION_1");
	tap_ok(!set_features(F_VERSION_1 | F_EVENT_IDX),
	       "FEATURES_OK refused with a feature not offered");
	tap_ok(set_features(F_VERSION_1 | F_BLK_FLUSH),
	       "FEATURES_OK kept with VERSION_1");
	wr(QUEUE_SEL, 0);
	tap_ok(!setup_queue(0, 12) && (rd(STATUS) & S_NEEDS_RESET),
	       "queue size 12 (not a power of 2) refused");
	set_features(F_VERSION_1);
	wr(QUEUE_SEL, 0);
	wr(QUEUE_NUM, QN);
	wr(QUEUE_DESC, RAM_SIZE - 16 * QN + 16);
	wr(QUEUE_READY, 1);
	tap_ok(rd(QUEUE_READY) == 0 && (rd(STATUS) & S_NEEDS_RESET),
	       "a ring partly outside RAM refused");
	wr(STATUS, 0);
	tap_ok(rd(STATUS) == 0 && rd(INT_STATUS) == 0 && level(5) == 0,
	       "reset clears NEEDS_RESET and the interrupt");
}

static void test_requests(void)
{
	uint8_t disk[1024], id[20] = "vireo-blk";
	struct desc *t = (struct desc *)(ram + ITABLE);
	uint32_t len = 0;
	int st, rises;

	tap_ok(driver_init(F_VERSION_1 | F_BLK_FLUSH | F_INDIRECT, 1),
	       "driver initialisation, DRIVER_OK");

	/* write sectors 3-4 from two data descriptors */
	fill(ram + BUF, 1024, 1);
	put_hdr(T_OUT, 3);
	set_desc(desc(0, 5), HDR, 16, D_NEXT, 7);
	set_desc(desc(0, 7), BUF, 512, D_NEXT, 6);
	set_desc(desc(0, 6), BUF + 512, 512, D_NEXT, 9);
	set_desc(desc(0, 9), STAT, 1, D_WRITE, 0);
	post(0, 5);
	rises = irq_rises[5];
	st = complete(5, &len);
	tap_ok(st == 0 && len == 1, "OUT sectors 3-4: status %d, used len %u",
	       st, len);
	tap_ok(pread(image_fd, disk, 1024, 3 * 512) == 1024 &&
	       !memcmp(disk, ram + BUF, 1024), "the data is in the image");
	tap_ok(level(5) == 1 && irq_rises[5] == rises + 1 &&
	       rd(INT_STATUS) == 1, "completion raised the line, status 1");
	wr(INT_ACK, 1);
	tap_ok(level(5) == 0 && rd(INT_STATUS) == 0,
	       "InterruptACK lowered the line");

	/* read them back: 100 + 0 + 924 bytes, status in the same desc */
	memset(ram + BUF2, 0, 2048);
	put_hdr(T_IN, 3);
	set_desc(desc(0, 0), HDR, 8, D_NEXT, 1);
	set_desc(desc(0, 1), HDR + 8, 8, D_NEXT, 2);
	set_desc(desc(0, 2), BUF2, 100, D_NEXT | D_WRITE, 3);
	set_desc(desc(0, 3), BUF2 + 100, 0, D_NEXT | D_WRITE, 4);
	set_desc(desc(0, 4), BUF2 + 100, 925, D_WRITE, 0);
	post(0, 0);
	st = complete(0, &len);
	tap_ok(st == -1 ? false : ram[BUF2 + 1024] == 0 && len == 1025 &&
	       !memcmp(ram + BUF2, disk, 1024),
	       "IN sectors 3-4, split header and data: used len %u", len);
	ack_all();

	memset(ram + BUF2, 0xee, 64);
	st = request(T_GET_ID, 0, BUF2, 21, &len);
	tap_ok(st == 0 && len == 21 && !memcmp(ram + BUF2, id, 20),
	       "GET_ID \"vireo-blk\", used len %u", len);
	memset(ram + BUF2, 0xee, 64);
	st = request(T_GET_ID, 0, BUF2, 4, &len);
	tap_ok(st == 0 && len == 5 && !memcmp(ram + BUF2, id, 4) &&
	       ram[BUF2 + 4] == 0xee, "GET_ID into 4 bytes");
	tap_ok(request(T_FLUSH, 0, 0, 0, &len) == 0 && len == 1, "FLUSH");
	tap_ok(request(T_DISCARD, 0, BUF, 16, NULL) == 2, "DISCARD: UNSUPP");

	memset(ram + BUF2, 0x11, 1024);
	tap_ok(request(T_IN, SECTORS - 1, BUF2, 1024, NULL) == 1 &&
	       ram[BUF2] == 0x11, "IN past the capacity: IOERR");
	tap_ok(request(T_OUT, SECTORS - 1, BUF, 1024, NULL) == 1 &&
	       lseek(image_fd, 0, SEEK_END) == SECTORS * 512,
	       "OUT past the capacity: IOERR, the image did not grow");
	tap_ok(request(T_IN, ~0ULL, BUF2, 512, NULL) == 1,
	       "IN at sector 2^64-1: IOERR");
	tap_ok(request(T_OUT, 0, BUF, 100, NULL) == 1,
	       "OUT of 100 bytes: IOERR");
	tap_ok(request(T_IN, SECTORS - 1, BUF2, 512, NULL) == 0,
	       "IN of the last sector");

	/* an indirect table with the whole IN request */
	memset(ram + BUF2, 0, 1024);
	put_hdr(T_IN, 3);
	set_desc(&t[0], HDR, 16, D_NEXT, 2);
	set_desc(&t[2], BUF2, 1024, D_NEXT | D_WRITE, 1);
	set_desc(&t[1], STAT, 1, D_WRITE, 0);
	set_desc(desc(0, 4), ITABLE, 3 * 16, D_INDIRECT, 0);
	post(0, 4);
	tap_ok(complete(4, &len) == 0 && len == 1025 &&
	       !memcmp(ram + BUF2, disk, 1024), "IN through an indirect table");

	/* two requests, one notify, one interrupt */
	ack_all();
	rises = irq_rises[5];
	put_hdr(T_FLUSH, 0);
	set_desc(desc(0, 10), HDR, 16, D_NEXT, 11);
	set_desc(desc(0, 11), STAT, 1, D_WRITE, 0);
	set_desc(desc(0, 12), HDR, 16, D_NEXT, 13);
	set_desc(desc(0, 13), STAT + 1, 1, D_WRITE, 0);
	post(0, 10);
	post(0, 12);
	wr(QUEUE_NOTIFY, 0);
	tap_ok(used_idx(0) == used_seen[0] + 2 &&
	       used_elem(0, used_seen[0])[0] == 10 &&
	       used_elem(0, used_seen[0] + 1)[0] == 12 &&
	       irq_rises[5] == rises + 1, "two requests, one notify");
	used_seen[0] += 2;
	ack_all();

	/* VIRTQ_AVAIL_F_NO_INTERRUPT */
	avail_ring(0)[0] = 1;
	tap_ok(request(T_FLUSH, 0, 0, 0, NULL) == 0 && level(5) == 0 &&
	       rd(INT_STATUS) == 0, "no interrupt when the driver asks so");
	avail_ring(0)[0] = 0;
}

/*
 * From a working device, the chain at head must break it (driver_init()
 * clears the descriptor table afterwards).
 */
static bool bad_chain(uint16_t head)
{
	int st;

	post(0, head);
	wr(QUEUE_NOTIFY, 0);
	st = broken();
	/* and nothing more happens until the reset */
	put_hdr(T_FLUSH, 0);
	set_desc(desc(0, 14), HDR, 16, D_NEXT, 15);
	set_desc(desc(0, 15), STAT, 1, D_WRITE, 0);
	post(0, 14);
	wr(QUEUE_NOTIFY, 0);
	st = st && used_idx(0) == used_seen[0] && ram[STAT] == 0xff;
	wr(STATUS, 0);
	return st && rd(STATUS) == 0 && rd(INT_STATUS) == 0 && !level(5) &&
	       driver_init(F_VERSION_1 | F_INDIRECT, 1);
}

static void test_bad_rings(void)
{
	uint8_t before[512];
	struct desc *t = (struct desc *)(ram + ITABLE);
	int i;

	/* a data descriptor beyond RAM */
	if (pread(image_fd, before, 512, 0) != 512)
		tap_bail("cannot read the image");
	put_hdr(T_IN, 0);
	set_desc(desc(0, 0), HDR, 16, D_NEXT, 1);
	set_desc(desc(0, 1), 2 * RAM_SIZE, 512, D_NEXT | D_WRITE, 2);
	set_desc(desc(0, 2), STAT, 1, D_WRITE, 0);
	post(0, 0);
	wr(QUEUE_NOTIFY, 0);
	tap_ok(broken() && ram[STAT] == 0xff,
	       "descriptor outside RAM: NEEDS_RESET, config interrupt");
	post(0, 0);
	wr(QUEUE_NOTIFY, 0);
	tap_ok(used_idx(0) == used_seen[0] && ram[STAT] == 0xff,
	       "a broken device does nothing on notify");
	wr(STATUS, 0);
	tap_ok(rd(STATUS) == 0 && rd(INT_STATUS) == 0 && !level(5) &&
	       rd(QUEUE_READY) == 0, "Status 0: reset, queue not ready");
	tap_ok(driver_init(F_VERSION_1 | F_INDIRECT, 1) &&
	       request(T_FLUSH, 0, 0, 0, NULL) == 0 && used_idx(0) == 1,
	       "after the reset the queue starts again at index 0");
	ack_all();

	set_desc(desc(0, 0), HDR, 16, D_NEXT, 1);
	set_desc(desc(0, 1), RAM_SIZE - 4, 8, D_WRITE, 0);
	tap_ok(bad_chain(0), "descriptor straddling the end of RAM");

	put_hdr(T_IN, 0);
	set_desc(desc(0, 0), HDR, 16, D_NEXT, 1);
	set_desc(desc(0, 1), BUF2, 512, D_NEXT | D_WRITE, 0);
	tap_ok(bad_chain(0), "descriptor loop 0 -> 1 -> 0");
	set_desc(desc(0, 3), HDR, 16, D_NEXT, 3);
	tap_ok(bad_chain(3), "descriptor pointing at itself");
	for (i = 0; i < QN; i++)
		set_desc(desc(0, i), HDR, 0, D_NEXT, (i + 1) % QN);
	tap_ok(bad_chain(0), "loop through the whole table, zero lengths");
	set_desc(&t[0], HDR, 16, D_NEXT, 1);
	set_desc(&t[1], BUF2, 16, D_NEXT | D_WRITE, 0);
	set_desc(desc(0, 0), ITABLE, 2 * 16, D_INDIRECT, 0);
	tap_ok(bad_chain(0), "loop in an indirect table");
	set_desc(&t[1], ITABLE, 16, D_INDIRECT, 0);
	set_desc(desc(0, 0), ITABLE, 2 * 16, D_INDIRECT, 0);
	tap_ok(bad_chain(0), "indirect table in an indirect table");
	set_desc(desc(0, 0), ITABLE, 2 * 16, D_INDIRECT | D_NEXT, 1);
	tap_ok(bad_chain(0), "INDIRECT with NEXT");
	set_desc(desc(0, 0), ITABLE, 20, D_INDIRECT, 0);
	tap_ok(bad_chain(0), "indirect table of 20 bytes");
	set_desc(desc(0, 0), HDR, 16, D_NEXT, QN);
	tap_ok(bad_chain(0), "next index = queue size");
	tap_ok(bad_chain(QN + 3), "head index past the queue size");
	set_desc(desc(0, 0), STAT, 1, D_WRITE | D_NEXT, 1);
	set_desc(desc(0, 1), HDR, 16, 0, 0);
	tap_ok(bad_chain(0), "readable descriptor after a writable one");
	avail_idx[0] += QN;
	tap_ok(bad_chain(0), "avail index more than the queue size ahead");

	/* indirect descriptors that were not negotiated */
	wr(STATUS, 0);
	driver_init(F_VERSION_1, 1);
	wr(DRV_FEAT_SEL, 0);
	wr(DRV_FEAT, F_INDIRECT);	/* too late: ignored */
	put_hdr(T_FLUSH, 0);
	set_desc(&t[0], HDR, 16, D_NEXT, 1);
	set_desc(&t[1], STAT, 1, D_WRITE, 0);
	set_desc(desc(0, 0), ITABLE, 2 * 16, D_INDIRECT, 0);
	tap_ok(bad_chain(0), "indirect descriptor without the feature");

	tap_ok(pread(image_fd, ram + BUF2, 512, 0) == 512 &&
	       !memcmp(ram + BUF2, before, 512),
	       "the image was not written by the broken requests");
	tap_ok(!zero_len_lookups, "gpa_to_hva() never asked for 0 bytes");
}

static bool dac_override(bool on)
{
	struct __user_cap_header_struct h = {
		.version = _LINUX_CAPABILITY_VERSION_3,
	};
	struct __user_cap_data_struct d[2];

	if (syscall(SYS_capget, &h, d))
		return false;
	if (on)
		d[0].effective |= 1u << CAP_DAC_OVERRIDE;
	else
		d[0].effective &= ~(1u << CAP_DAC_OVERRIDE);
	return !syscall(SYS_capset, &h, d);
}

static void test_read_only(const char *path)
{
	int fd;

	chmod(path, 0444);
	dac_override(false);
	fd = open(path, O_RDWR);
	if (fd < 0)
		ro_blk = virtio_blk_create(path, 6);
	dac_override(true);
	if (fd >= 0) {
		close(fd);
		tap_skip("cannot make the image read-only", "read-only image");
		tap_skip("cannot make the image read-only", "OUT on it");
		return;
	}
	dev = ro_blk;
	tap_ok(dev && (dev_features() & F_BLK_RO) &&
	       driver_init(F_VERSION_1 | F_BLK_RO, 1) &&
	       request(T_IN, 3, BUF2, 512, NULL) == 0,
	       "read-only image: RO offered, IN works");
	tap_ok(dev && request(T_OUT, 3, BUF, 512, NULL) == 1,
	       "OUT on it: IOERR");
}

/* virtio-net, through a tap made for the test */

#define NET_TESTS	5
#define ETH_TYPE	0x88b5		/* local experimental */

static int wait_used(int q, uint16_t want)
{
	int i;

	for (i = 0; i < 300; i++) {
		if (used_idx(q) == want)
			return 0;
		usleep(10000);
	}
	return -1;
}

static void post_rx_buffer(uint16_t head, uint64_t gpa)
{
	memset(ram + gpa, 0, 2048);
	/* header and frame in two pieces */
	set_desc(desc(0, head), gpa, 12, D_WRITE | D_NEXT, head + 1);
	set_desc(desc(0, head + 1), gpa + 12, 1514, D_WRITE, 0);
	post(0, head);
	wr(QUEUE_NOTIFY, 0);
}

/* the payload of our frame in a used RX buffer at gpa, len bytes */
static bool got_frame(uint64_t gpa, uint32_t len, const char *msg)
{
	uint8_t *f = ram + gpa + 12;

	/* num_buffers 1 */
	return len == 12 + 14 + strlen(msg) && f[-2] == 1 && !f[-1] &&
	       f[12] == ETH_TYPE >> 8 &&
	       f[13] == (ETH_TYPE & 0xff) && !memcmp(f + 14, msg, strlen(msg));
}

static void test_net(void)
{
	static const uint8_t mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x57 };
	struct sockaddr_ll sll = { .sll_family = AF_PACKET };
	uint8_t frame[64], got[2048];
	const char *msg = "vireo-run tx", *p;
	struct pollfd pfd;
	struct ifreq ifr;
	char name[IFNAMSIZ], path[96];
	int s, ps = -1, fd, i, n;
	bool ok;

	/*
	 * The RX thread outlives the test, and valgrind takes the thread
	 * data of a thread alive at exit for a possible leak.
	 */
	p = getenv("LD_PRELOAD");
	if (p && strstr(p, "vgpreload")) {
		for (i = 0; i < NET_TESTS; i++)
			tap_skip("not under valgrind", "virtio-net");
		return;
	}
	snprintf(name, sizeof(name), "vvt%d", (int)getpid() % 100000);
	net = virtio_net_create(name, 7);
	if (!net) {
		for (i = 0; i < NET_TESTS; i++)
			tap_skip("no tap", "virtio-net");
		return;
	}
	dev = net;
	tap_ok(rd(DEVICE_ID) == 1 && (dev_features() & (F_NET_MAC |
	       F_NET_STATUS | F_VERSION_1)) == (F_NET_MAC | F_NET_STATUS |
	       F_VERSION_1) && cfg(0, 4) == 0x12005452 && cfg(4, 2) == 0x5734 &&
	       cfg(6, 2) == 1, "net: DeviceID 1, MAC, link up");

	/* bring the interface up, without IPv6 chatter */
	snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/disable_ipv6",
		 name);
	fd = open(path, O_WRONLY);
	if (fd >= 0) {
		if (write(fd, "1", 1) != 1)
			tap_diag("cannot disable IPv6 on %s", name);
		close(fd);
	}
	s = socket(AF_INET, SOCK_DGRAM, 0);
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, name);
	ok = s >= 0 && !ioctl(s, SIOCGIFFLAGS, &ifr);
	ifr.ifr_flags |= IFF_UP;
	ok = ok && !ioctl(s, SIOCSIFFLAGS, &ifr);
	if (s >= 0)
		close(s);
	sll.sll_protocol = htons(ETH_TYPE);
	sll.sll_ifindex = if_nametoindex(name);
	if (ok)
		ps = socket(AF_PACKET, SOCK_RAW, htons(ETH_TYPE));
	if (ps < 0 || bind(ps, (struct sockaddr *)&sll, sizeof(sll))) {
		tap_ok(false, "net: interface up, packet socket");
		for (i = 1; i < NET_TESTS; i++)
			tap_skip("no packet socket", "virtio-net");
		return;
	}
	tap_ok(driver_init(F_VERSION_1 | F_NET_MAC | F_NET_STATUS, 2),
	       "net: driver initialisation, two queues");

	/* TX: header + frame in one descriptor */
	memset(ram + BUF, 0, 12);
	memset(ram + BUF + 12, 0xff, 6);
	memcpy(ram + BUF + 18, mac, 6);
	ram[BUF + 24] = ETH_TYPE >> 8;
	ram[BUF + 25] = ETH_TYPE & 0xff;
	memcpy(ram + BUF + 26, msg, strlen(msg));
	set_desc(desc(1, 0), BUF, 26 + strlen(msg), 0, 0);
	post(1, 0);
	wr(QUEUE_NOTIFY, 1);
	pfd.fd = ps;
	pfd.events = POLLIN;
	n = poll(&pfd, 1, 3000) == 1 ? recv(ps, got, sizeof(got), 0) : -1;
	tap_ok(used_idx(1) == 1 && n == 14 + (int)strlen(msg) &&
	       !memcmp(got + 14, msg, strlen(msg)),
	       "net: TX frame seen on the tap (%d bytes)", n);

	/* RX into a buffer made available first */
	post_rx_buffer(0, BUF);
	memset(frame, 0xff, 6);
	memcpy(frame + 6, mac, 6);
	frame[12] = ETH_TYPE >> 8;
	frame[13] = ETH_TYPE & 0xff;
	strcpy((char *)frame + 14, "vireo-run rx 1");
	sendto(ps, frame, 28, 0, (struct sockaddr *)&sll, sizeof(sll));
	ok = !wait_used(0, 1) && used_elem(0, 0)[0] == 0 &&
	     got_frame(BUF, used_elem(0, 0)[1], "vireo-run rx 1");
	tap_ok(ok && level(7), "net: RX frame in the guest buffer, interrupt");
	ack_all();

	/* RX with no buffer: the frame waits for one */
	strcpy((char *)frame + 14, "vireo-run rx 2");
	sendto(ps, frame, 28, 0, (struct sockaddr *)&sll, sizeof(sll));
	usleep(100000);
	ok = used_idx(0) == 1;
	post_rx_buffer(2, BUF2);
	ok = ok && !wait_used(0, 2) && used_elem(0, 1)[0] == 2 &&
	     got_frame(BUF2, used_elem(0, 1)[1], "vireo-run rx 2");
	tap_ok(ok, "net: RX frame waits for a buffer");
	close(ps);
}

static void timeout(int sig)
{
	static const char msg[] = "Bail out! the device did not return\n";
	ssize_t r;

	(void)sig;
	r = write(1, msg, sizeof(msg) - 1);
	(void)r;
	_exit(KSFT_FAIL);
}

int main(void)
{
	char path[] = "/tmp/virtio_test.XXXXXX";

	tap_plan(62);
	signal(SIGALRM, timeout);
	alarm(60);	/* a device that loops fails the test */
	ram = calloc(1, RAM_SIZE);
	image_fd = mkstemp(path);
	if (!ram || image_fd < 0 || ftruncate(image_fd, SECTORS * 512))
		tap_bail("no RAM or image");

	tap_ok(!virtio_blk_create("/nonexistent/image", 5),
	       "no device without an image");
	errno = 0;
	blk = virtio_blk_create(path, 5);
	if (!blk)
		tap_bail("virtio_blk_create(%s)", path);
	tap_diag("the device's complaints on stderr are expected");
	dev = blk;
	test_transport();
	test_requests();
	test_bad_rings();
	test_read_only(path);
	test_net();

	unlink(path);
	tap_done();
}
