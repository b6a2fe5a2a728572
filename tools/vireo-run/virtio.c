// SPDX-License-Identifier: GPL-2.0-only
/*
 * vireo-run: virtio-mmio (version 2) devices with split virtqueues.
 *
 * Everything a device does happens under its mutex: register accesses
 * from the vCPU threads, the requests they start with a QueueNotify
 * write, and, for the network device, the receive thread's work.
 *
 * All guest-supplied ring addresses, descriptor addresses and lengths,
 * ring indexes and descriptor indexes are checked.  A driver that breaks
 * the rules gets DEVICE_NEEDS_RESET and a configuration change
 * interrupt, and the device does nothing more until it is reset.
 * Descriptors are copied out of guest memory before they are looked at,
 * and a chain may not visit more descriptors than its table holds, so a
 * driver rewriting the rings under our feet cannot make us loop or
 * step out of its RAM.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <net/if.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <linux/if_tun.h>

#include "vmm.h"
#include "virtio.h"

/* virtio-mmio registers */
#define REG_MAGIC		0x000
#define REG_VERSION		0x004
#define REG_DEVICE_ID		0x008
#define REG_VENDOR_ID		0x00c
#define REG_DEV_FEATURES	0x010
#define REG_DEV_FEATURES_SEL	0x014
#define REG_DRV_FEATURES	0x020
#define REG_DRV_FEATURES_SEL	0x024
#define REG_QUEUE_SEL		0x030
#define REG_QUEUE_NUM_MAX	0x034
#define REG_QUEUE_NUM		0x038
#define REG_QUEUE_READY		0x044
#define REG_QUEUE_NOTIFY	0x050
#define REG_INT_STATUS		0x060
#define REG_INT_ACK		0x064
#define REG_STATUS		0x070
#define REG_QUEUE_DESC_LO	0x080
#define REG_QUEUE_DESC_HI	0x084
#define REG_QUEUE_DRIVER_LO	0x090
#define REG_QUEUE_DRIVER_HI	0x094
#define REG_QUEUE_DEVICE_LO	0x0a0
#define REG_QUEUE_DEVICE_HI	0x0a4
#define REG_CONFIG_GEN		0x0fc
#define REG_CONFIG		0x100

#define MAGIC_VALUE		0x74726976	/* "virt" */
#define VENDOR_VALUE		0x4f524956	/* "VIRO" */

/* device status */
#define ST_ACKNOWLEDGE		0x01
#define ST_DRIVER		0x02
#define ST_DRIVER_OK		0x04
#define ST_FEATURES_OK		0x08
#define ST_NEEDS_RESET		0x40
#define ST_FAILED		0x80

/* InterruptStatus */
#define INT_USED_RING		0x1
#define INT_CONFIG		0x2

#define BIT_ULL(n)		(1ULL << (n))

#define F_INDIRECT_DESC		BIT_ULL(28)
#define F_VERSION_1		BIT_ULL(32)

#define DESC_F_NEXT		0x1
#define DESC_F_WRITE		0x2
#define DESC_F_INDIRECT		0x4
#define AVAIL_F_NO_INTERRUPT	0x1

#define QUEUE_MAX		256
#define CHAIN_MAX		512	/* segments of one chain */
#define NR_QUEUES_MAX		2
#define CONFIG_SIZE		64

/* virtio-blk */
#define BLK_ID			2
#define BLK_F_SEG_MAX		BIT_ULL(2)
#define BLK_F_RO		BIT_ULL(5)
#define BLK_F_BLK_SIZE		BIT_ULL(6)
#define BLK_F_FLUSH		BIT_ULL(9)
#define BLK_T_IN		0
#define BLK_T_OUT		1
#define BLK_T_FLUSH		4
#define BLK_T_GET_ID		8
#define BLK_S_OK		0
#define BLK_S_IOERR		1
#define BLK_S_UNSUPP		2
#define BLK_SECTOR		512
#define BLK_SEG_MAX		126
#define BLK_ID_LEN		20

/* virtio-net */
#define NET_ID			1
#define NET_F_MAC		BIT_ULL(5)
#define NET_F_STATUS		BIT_ULL(16)
#define NET_S_LINK_UP		1
#define NET_HDR_LEN		12	/* struct virtio_net_hdr_v1 */
#define NET_RXQ			0
#define NET_TXQ			1

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct vring_avail {
	uint16_t flags;
	uint16_t idx;
	uint16_t ring[];	/* then used_event, which we do not use */
};

struct vring_used_elem {
	uint32_t id;
	uint32_t len;
};

struct vring_used {
	uint16_t flags;
	uint16_t idx;
	struct vring_used_elem ring[];
};

static_assert(sizeof(struct vring_desc) == 16, "descriptor layout");
static_assert(sizeof(struct vring_used_elem) == 8, "used element layout");

struct virtqueue {
	uint32_t num;
	bool ready;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	uint8_t *desc;			/* host addresses, set when ready */
	struct vring_avail *avail;
	struct vring_used *used;
	uint16_t last_avail;		/* next avail ring slot to take */
	uint16_t used_idx;		/* our copy of used->idx */
};

/* A descriptor chain: its device-readable segments, then writable ones. */
struct chain {
	uint16_t head;
	int n, nout;
	uint64_t out_len, in_len;
	struct iovec iov[CHAIN_MAX + 1];	/* + one for net_rx() */
};

struct virtio_dev {
	pthread_mutex_t lock;
	uint32_t device_id;
	int irq;
	unsigned int nr_queues;
	uint64_t host_features, guest_features;
	uint32_t host_sel, guest_sel, queue_sel;
	uint32_t status, isr;
	struct virtqueue vq[NR_QUEUES_MAX];
	uint8_t config[CONFIG_SIZE];
	void (*notify)(struct virtio_dev *dev, unsigned int q);
	struct chain chain;
	struct iovec slice[CHAIN_MAX];
	int fd;				/* the image or the tap */
	uint64_t capacity;		/* blk: in sectors */
	bool read_only;			/* blk */
	int wake_fd;			/* net: eventfd for the RX thread */
};

static void isr_raise(struct virtio_dev *dev, uint32_t bits)
{
	uint32_t old = dev->isr;

	dev->isr |= bits;
	if (!old)
		irq_line(dev->irq, 1);
}

static void isr_ack(struct virtio_dev *dev, uint32_t bits)
{
	if (!dev->isr)
		return;
	dev->isr &= ~bits;
	if (!dev->isr)
		irq_line(dev->irq, 0);
}

static void device_broken(struct virtio_dev *dev, const char *why)
{
	if (dev->status & ST_NEEDS_RESET)
		return;
	fprintf(stderr, "vireo-run: virtio %u at irq %d: %s, needs reset\n",
		dev->device_id, dev->irq, why);
	dev->status |= ST_NEEDS_RESET;
	isr_raise(dev, INT_CONFIG);
}

static void device_reset(struct virtio_dev *dev)
{
	isr_ack(dev, ~0u);
	dev->status = 0;
	dev->guest_features = 0;
	dev->host_sel = 0;
	dev->guest_sel = 0;
	dev->queue_sel = 0;
	memset(dev->vq, 0, sizeof(dev->vq));
}

/* The driver is done setting up and the queue may be used. */
static bool vq_live(struct virtio_dev *dev, struct virtqueue *vq)
{
	const uint32_t need = ST_FEATURES_OK | ST_DRIVER_OK;

	return vq->ready && (dev->status & need) == need &&
	       !(dev->status & ST_NEEDS_RESET);
}

static void queue_enable(struct virtio_dev *dev, struct virtqueue *vq)
{
	uint32_t num = vq->num;

	if (vq->ready)
		return;
	if (!num || num > QUEUE_MAX || (num & (num - 1))) {
		device_broken(dev, "bad queue size");
		return;
	}
	if (vq->desc_gpa % 16 || vq->avail_gpa % 2 || vq->used_gpa % 4) {
		device_broken(dev, "misaligned ring");
		return;
	}
	vq->desc = gpa_to_hva(vq->desc_gpa, 16 * num);
	vq->avail = gpa_to_hva(vq->avail_gpa, 6 + 2 * num);
	vq->used = gpa_to_hva(vq->used_gpa, 6 + 8 * num);
	if (!vq->desc || !vq->avail || !vq->used) {
		device_broken(dev, "ring outside RAM");
		return;
	}
	vq->last_avail = 0;
	vq->used_idx = 0;
	vq->ready = true;
}

/*
 * Take the next available chain into c: 1 when there is one, 0 when the
 * ring is empty, -1 when the driver broke the rules.
 */
static int vq_pop(struct virtio_dev *dev, struct virtqueue *vq,
		  struct chain *c)
{
	const uint8_t *table = vq->desc;
	uint32_t max = vq->num, seen = 0;
	bool indirect = false;
	struct vring_desc d;
	uint16_t avail, idx;
	void *p;

	avail = __atomic_load_n(&vq->avail->idx, __ATOMIC_ACQUIRE);
	if (avail == vq->last_avail)
		return 0;
	if ((uint16_t)(avail - vq->last_avail) > vq->num)
		return -1;
	idx = __atomic_load_n(&vq->avail->ring[vq->last_avail & (vq->num - 1)],
			      __ATOMIC_RELAXED);
	if (idx >= vq->num)
		return -1;
	vq->last_avail++;

	c->head = idx;
	c->n = 0;
	c->nout = 0;
	c->out_len = 0;
	c->in_len = 0;
	for (;;) {
		if (seen++ == max)
			return -1;	/* more than the table holds: a loop */
		memcpy(&d, table + 16 * idx, sizeof(d));
		if (d.flags & DESC_F_INDIRECT) {
			if (indirect || (d.flags & DESC_F_NEXT) ||
			    !(dev->guest_features & F_INDIRECT_DESC) ||
			    !d.len || d.len % 16 || d.len / 16 > CHAIN_MAX)
				return -1;
			table = gpa_to_hva(d.addr, d.len);
			if (!table)
				return -1;
			indirect = true;
			max = d.len / 16;
			seen = 0;
			idx = 0;
			continue;
		}
		if (d.len) {
			p = gpa_to_hva(d.addr, d.len);
			if (!p || c->n == CHAIN_MAX)
				return -1;
			if (d.flags & DESC_F_WRITE) {
				c->in_len += d.len;
			} else {
				/* readable after writable */
				if (c->n > c->nout)
					return -1;
				c->out_len += d.len;
				c->nout++;
			}
			c->iov[c->n].iov_base = p;
			c->iov[c->n].iov_len = d.len;
			c->n++;
		}
		if (!(d.flags & DESC_F_NEXT))
			break;
		idx = d.next;
		if (idx >= max)
			return -1;
	}
	/* the used ring cannot say how much was written to more */
	if (c->in_len > UINT32_MAX || c->out_len > UINT32_MAX)
		return -1;
	return 1;
}

static void vq_push(struct virtqueue *vq, uint16_t head, uint32_t len)
{
	struct vring_used_elem *e;

	e = &vq->used->ring[vq->used_idx & (vq->num - 1)];
	e->id = head;
	e->len = len;
	vq->used_idx++;
	__atomic_store_n(&vq->used->idx, vq->used_idx, __ATOMIC_RELEASE);
}

/* After vq_push(): tell the driver, unless it asked us not to. */
static void vq_interrupt(struct virtio_dev *dev, struct virtqueue *vq)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!(__atomic_load_n(&vq->avail->flags, __ATOMIC_RELAXED) &
	      AVAIL_F_NO_INTERRUPT))
		isr_raise(dev, INT_USED_RING);
}

/* Copy between buf and the first len bytes that iov describes. */
static uint64_t iov_copy(const struct iovec *iov, int n, void *buf,
			 uint64_t len, bool to_iov)
{
	uint64_t done = 0, k;
	int i;

	for (i = 0; i < n && done < len; i++) {
		k = iov[i].iov_len < len - done ? iov[i].iov_len : len - done;
		if (to_iov)
			memcpy(iov[i].iov_base, (uint8_t *)buf + done, k);
		else
			memcpy((uint8_t *)buf + done, iov[i].iov_base, k);
		done += k;
	}
	return done;
}

/* Make dst describe len bytes of what src does, from skip bytes in. */
static int iov_slice(const struct iovec *src, int n, uint64_t skip,
		     uint64_t len, struct iovec *dst)
{
	uint64_t seg;
	int i, cnt = 0;

	for (i = 0; i < n && len; i++) {
		seg = src[i].iov_len;
		if (skip >= seg) {
			skip -= seg;
			continue;
		}
		seg -= skip;
		if (seg > len)
			seg = len;
		dst[cnt].iov_base = (uint8_t *)src[i].iov_base + skip;
		dst[cnt].iov_len = seg;
		cnt++;
		skip = 0;
		len -= seg;
	}
	return cnt;
}

/* virtio-blk */

struct blk_req_hdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

/* Read or write all of iov (which this changes) at off in the image. */
static int blk_io(int fd, struct iovec *iov, int n, uint64_t off, bool write)
{
	ssize_t r;

	while (n) {
		if (write)
			r = pwritev(fd, iov, n, off);
		else
			r = preadv(fd, iov, n, off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		off += r;
		while (n && (size_t)r >= iov->iov_len) {
			r -= iov->iov_len;
			iov++;
			n--;
		}
		if (n) {
			iov->iov_base = (uint8_t *)iov->iov_base + r;
			iov->iov_len -= r;
		}
	}
	return 0;
}

static bool blk_in_range(struct virtio_dev *dev, uint64_t sector,
			 uint64_t bytes)
{
	return !(bytes % BLK_SECTOR) && sector <= dev->capacity &&
	       bytes / BLK_SECTOR <= dev->capacity - sector;
}

/* Carry out one request; the number of bytes written for the used ring. */
static uint32_t blk_request(struct virtio_dev *dev, struct chain *c)
{
	static const char id[BLK_ID_LEN] = "vireo-blk";
	struct iovec *in = c->iov + c->nout, *last;
	int nin = c->n - c->nout, n;
	struct blk_req_hdr req;
	uint8_t status = BLK_S_OK;
	uint64_t len, written = 0;

	/* without a header or a status byte there is no request */
	if (iov_copy(c->iov, c->nout, &req, sizeof(req), false) < sizeof(req) ||
	    !nin)
		return 0;

	switch (req.type) {
	case BLK_T_IN:
		len = c->in_len - 1;
		n = iov_slice(in, nin, 0, len, dev->slice);
		if (!blk_in_range(dev, req.sector, len) ||
		    blk_io(dev->fd, dev->slice, n, req.sector * BLK_SECTOR,
			   false))
			status = BLK_S_IOERR;
		else
			written = len;
		break;
	case BLK_T_OUT:
		len = c->out_len - sizeof(req);
		n = iov_slice(c->iov, c->nout, sizeof(req), len, dev->slice);
		if (dev->read_only || !blk_in_range(dev, req.sector, len) ||
		    blk_io(dev->fd, dev->slice, n, req.sector * BLK_SECTOR,
			   true))
			status = BLK_S_IOERR;
		break;
	case BLK_T_FLUSH:
		if (fdatasync(dev->fd))
			status = BLK_S_IOERR;
		break;
	case BLK_T_GET_ID:
		written = iov_copy(in, nin, (void *)id,
				   c->in_len - 1 < BLK_ID_LEN ?
				   c->in_len - 1 : BLK_ID_LEN, true);
		break;
	default:
		status = BLK_S_UNSUPP;
		break;
	}

	last = &in[nin - 1];
	((uint8_t *)last->iov_base)[last->iov_len - 1] = status;
	return written + 1;
}

static void blk_notify(struct virtio_dev *dev, unsigned int q)
{
	struct virtqueue *vq = &dev->vq[q];
	int r, done = 0;

	if (!vq_live(dev, vq))
		return;
	while ((r = vq_pop(dev, vq, &dev->chain)) > 0) {
		vq_push(vq, dev->chain.head, blk_request(dev, &dev->chain));
		done++;
	}
	if (r < 0)
		device_broken(dev, "bad descriptor chain");
	if (done)
		vq_interrupt(dev, vq);
}

/* virtio-net */

/*
 * Move frames from the tap into RX buffers, under the lock.  False when
 * the guest has no buffer left (or the queue is not live): the caller
 * then waits for an RX queue notify rather than for the tap.
 */
static bool net_rx(struct virtio_dev *dev, uint8_t *drop, size_t drop_len)
{
	static const uint16_t one = 1;
	struct virtqueue *vq = &dev->vq[NET_RXQ];
	struct chain *c = &dev->chain;
	bool more = true;
	int r, n, nin, done = 0;
	ssize_t len;

	for (;;) {
		if (!vq_live(dev, vq)) {
			more = false;
			break;
		}
		r = vq_pop(dev, vq, c);
		if (r <= 0) {
			if (r < 0)
				device_broken(dev, "bad RX descriptor chain");
			more = false;
			break;
		}
		/* what does not fit in the chain lands in drop[] */
		nin = c->n - c->nout;
		c->iov[c->n].iov_base = drop;
		c->iov[c->n].iov_len = drop_len;
		len = readv(dev->fd, c->iov + c->nout, nin + 1);
		if (len < 0) {
			/* nothing to read: give the chain back */
			vq->last_avail--;
			if (errno != EAGAIN && errno != EINTR) {
				perror("vireo-run: tap read");
				more = false;
			}
			break;
		}
		if ((uint64_t)len > c->in_len || len < NET_HDR_LEN) {
			len = 0;	/* dropped */
		} else {
			/* the tap leaves num_buffers alone: it is 1 here */
			n = iov_slice(c->iov + c->nout, nin, 10, 2, dev->slice);
			iov_copy(dev->slice, n, (void *)&one, 2, true);
		}
		vq_push(vq, c->head, len);
		done++;
	}
	if (done)
		vq_interrupt(dev, vq);
	return more;
}

static void *net_rx_thread(void *arg)
{
	struct virtio_dev *dev = arg;
	uint8_t drop[65536];		/* the largest frame a tap gives */
	struct pollfd pfd[2];
	bool wait_tap = true;
	eventfd_t val;

	for (;;) {
		pfd[0].fd = dev->wake_fd;
		pfd[0].events = POLLIN;
		pfd[1].fd = wait_tap ? dev->fd : -1;
		pfd[1].events = POLLIN;
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			perror("vireo-run: poll");
			return NULL;
		}
		if (pfd[0].revents & POLLIN) {
			eventfd_read(dev->wake_fd, &val);
			wait_tap = true;
		}
		if (wait_tap && pfd[1].revents) {
			pthread_mutex_lock(&dev->lock);
			wait_tap = net_rx(dev, drop, sizeof(drop));
			pthread_mutex_unlock(&dev->lock);
		}
	}
}

static void net_tx(struct virtio_dev *dev)
{
	struct virtqueue *vq = &dev->vq[NET_TXQ];
	struct chain *c = &dev->chain;
	int r, done = 0;

	while ((r = vq_pop(dev, vq, c)) > 0) {
		/* the tap is a lossy link: a frame it refuses is lost */
		if (c->out_len > NET_HDR_LEN &&
		    writev(dev->fd, c->iov, c->nout) < 0 && errno != EAGAIN)
			perror("vireo-run: tap write");
		vq_push(vq, c->head, 0);
		done++;
	}
	if (r < 0)
		device_broken(dev, "bad TX descriptor chain");
	if (done)
		vq_interrupt(dev, vq);
}

static void net_notify(struct virtio_dev *dev, unsigned int q)
{
	if (q == NET_RXQ)
		eventfd_write(dev->wake_fd, 1);
	else if (vq_live(dev, &dev->vq[NET_TXQ]))
		net_tx(dev);
}

/* The transport */

static void set_status(struct virtio_dev *dev, uint32_t val)
{
	uint64_t unknown = dev->guest_features & ~dev->host_features;
	uint32_t old = dev->status;
	unsigned int q;

	if (!val) {
		device_reset(dev);
		return;
	}
	/* FEATURES_OK sticks only when we can work with the features */
	if ((val & ST_FEATURES_OK) && !(old & ST_FEATURES_OK) &&
	    (unknown || !(dev->guest_features & F_VERSION_1)))
		val &= ~ST_FEATURES_OK;
	dev->status = (val & 0xff) | (old & ST_NEEDS_RESET);
	/* buffers may have been made available before DRIVER_OK */
	if (!(old & ST_DRIVER_OK) && (dev->status & ST_DRIVER_OK))
		for (q = 0; q < dev->nr_queues; q++)
			dev->notify(dev, q);
}

static void set_half(uint64_t *addr, uint64_t reg, uint32_t val)
{
	if (reg & 4)
		*addr = (*addr & 0xffffffffULL) | (uint64_t)val << 32;
	else
		*addr = (*addr & ~0xffffffffULL) | val;
}

static uint32_t reg_read(struct virtio_dev *dev, uint64_t reg)
{
	struct virtqueue *vq = dev->queue_sel < dev->nr_queues ?
			       &dev->vq[dev->queue_sel] : NULL;

	switch (reg) {
	case REG_MAGIC:
		return MAGIC_VALUE;
	case REG_VERSION:
		return 2;
	case REG_DEVICE_ID:
		return dev->device_id;
	case REG_VENDOR_ID:
		return VENDOR_VALUE;
	case REG_DEV_FEATURES:
		if (dev->host_sel > 1)
			return 0;
		return dev->host_features >> (32 * dev->host_sel);
	case REG_QUEUE_NUM_MAX:
		return vq ? QUEUE_MAX : 0;
	case REG_QUEUE_READY:
		return vq && vq->ready;
	case REG_INT_STATUS:
		return dev->isr;
	case REG_STATUS:
		return dev->status;
	case REG_CONFIG_GEN:
		return 0;	/* the configuration never changes */
	}
	return 0;
}

static void reg_write(struct virtio_dev *dev, uint64_t reg, uint32_t val)
{
	struct virtqueue *vq = dev->queue_sel < dev->nr_queues ?
			       &dev->vq[dev->queue_sel] : NULL;
	uint64_t mask;

	switch (reg) {
	case REG_DEV_FEATURES_SEL:
		dev->host_sel = val;
		break;
	case REG_DRV_FEATURES:
		if (dev->guest_sel > 1 || (dev->status & ST_FEATURES_OK))
			break;
		mask = 0xffffffffULL << (32 * dev->guest_sel);
		dev->guest_features &= ~mask;
		dev->guest_features |= ((uint64_t)val << (32 * dev->guest_sel));
		break;
	case REG_DRV_FEATURES_SEL:
		dev->guest_sel = val;
		break;
	case REG_QUEUE_SEL:
		dev->queue_sel = val;
		break;
	case REG_QUEUE_NUM:
		if (vq && !vq->ready)
			vq->num = val;
		break;
	case REG_QUEUE_READY:
		if (vq && val)
			queue_enable(dev, vq);
		else if (vq)
			vq->ready = false;
		break;
	case REG_QUEUE_NOTIFY:
		if (val < dev->nr_queues)
			dev->notify(dev, val);
		break;
	case REG_INT_ACK:
		isr_ack(dev, val);
		break;
	case REG_STATUS:
		set_status(dev, val);
		break;
	case REG_QUEUE_DESC_LO:
	case REG_QUEUE_DESC_HI:
		if (vq && !vq->ready)
			set_half(&vq->desc_gpa, reg, val);
		break;
	case REG_QUEUE_DRIVER_LO:
	case REG_QUEUE_DRIVER_HI:
		if (vq && !vq->ready)
			set_half(&vq->avail_gpa, reg, val);
		break;
	case REG_QUEUE_DEVICE_LO:
	case REG_QUEUE_DEVICE_HI:
		if (vq && !vq->ready)
			set_half(&vq->used_gpa, reg, val);
		break;
	}
}

void virtio_mmio_access(struct virtio_dev *dev, uint64_t offset,
			uint8_t *data, uint32_t len, bool is_write)
{
	uint32_t val, i;

	if (!is_write)
		memset(data, 0, len);
	if (offset >= VIRTIO_MMIO_SIZE || len > VIRTIO_MMIO_SIZE - offset)
		return;

	pthread_mutex_lock(&dev->lock);
	if (offset >= REG_CONFIG) {
		/* read-only configuration: writes are dropped */
		offset -= REG_CONFIG;
		for (i = 0; !is_write && i < len; i++)
			if (offset + i < CONFIG_SIZE)
				data[i] = dev->config[offset + i];
	} else if (len == 4 && !(offset & 3)) {
		/* the registers take aligned 32-bit accesses only */
		if (is_write) {
			memcpy(&val, data, 4);
			reg_write(dev, offset, val);
		} else {
			val = reg_read(dev, offset);
			memcpy(data, &val, 4);
		}
	}
	pthread_mutex_unlock(&dev->lock);
}

static struct virtio_dev *dev_alloc(uint32_t device_id, int irq,
				    unsigned int nr_queues, uint64_t features)
{
	struct virtio_dev *dev = calloc(1, sizeof(*dev));

	if (!dev) {
		fprintf(stderr, "vireo-run: out of memory\n");
		return NULL;
	}
	pthread_mutex_init(&dev->lock, NULL);
	dev->device_id = device_id;
	dev->irq = irq;
	dev->nr_queues = nr_queues;
	dev->host_features = features | F_VERSION_1 | F_INDIRECT_DESC;
	dev->fd = -1;
	dev->wake_fd = -1;
	return dev;
}

static void put_le(uint8_t *p, uint64_t val, int bytes)
{
	while (bytes--) {
		*p++ = val;
		val >>= 8;
	}
}

struct virtio_dev *virtio_blk_create(const char *image, int irq)
{
	struct virtio_dev *dev;
	bool read_only = false;
	off_t size;
	int fd;

	fd = open(image, O_RDWR | O_CLOEXEC);
	if (fd < 0 && (errno == EACCES || errno == EROFS || errno == EPERM)) {
		fd = open(image, O_RDONLY | O_CLOEXEC);
		read_only = true;
	}
	if (fd < 0) {
		fprintf(stderr, "vireo-run: %s: %s\n", image, strerror(errno));
		return NULL;
	}
	size = lseek(fd, 0, SEEK_END);
	if (size < 0) {
		fprintf(stderr, "vireo-run: %s: %s\n", image, strerror(errno));
		close(fd);
		return NULL;
	}

	dev = dev_alloc(BLK_ID, irq, 1, BLK_F_SEG_MAX | BLK_F_BLK_SIZE |
			BLK_F_FLUSH | (read_only ? BLK_F_RO : 0));
	if (!dev) {
		close(fd);
		return NULL;
	}
	dev->notify = blk_notify;
	dev->fd = fd;
	dev->read_only = read_only;
	dev->capacity = size / BLK_SECTOR;
	put_le(dev->config + 0, dev->capacity, 8);	/* capacity */
	put_le(dev->config + 12, BLK_SEG_MAX, 4);	/* seg_max */
	put_le(dev->config + 20, BLK_SECTOR, 4);	/* blk_size */
	return dev;
}

struct virtio_dev *virtio_net_create(const char *tap_name, int irq)
{
	static const uint8_t mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x57 };
	struct virtio_dev *dev;
	struct ifreq ifr;
	sigset_t all, old;
	pthread_t thread;
	int hdr_len = NET_HDR_LEN;

	if (strlen(tap_name) >= IFNAMSIZ) {
		fprintf(stderr, "vireo-run: %s: name too long\n", tap_name);
		return NULL;
	}
	dev = dev_alloc(NET_ID, irq, 2, NET_F_MAC | NET_F_STATUS);
	if (!dev)
		return NULL;
	dev->notify = net_notify;
	memcpy(dev->config, mac, sizeof(mac));
	put_le(dev->config + 6, NET_S_LINK_UP, 2);

	dev->fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (dev->fd < 0) {
		perror("vireo-run: /dev/net/tun");
		goto fail;
	}
	memset(&ifr, 0, sizeof(ifr));
	memcpy(ifr.ifr_name, tap_name, strlen(tap_name));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (ioctl(dev->fd, TUNSETIFF, &ifr) ||
	    ioctl(dev->fd, TUNSETVNETHDRSZ, &hdr_len)) {
		fprintf(stderr, "vireo-run: tap %s: %s\n", tap_name,
			strerror(errno));
		goto fail;
	}
	dev->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (dev->wake_fd < 0) {
		perror("vireo-run: eventfd");
		goto fail;
	}

	/* the RX thread takes no signals: they are for the vCPU threads */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	errno = pthread_create(&thread, NULL, net_rx_thread, dev);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (errno) {
		perror("vireo-run: RX thread");
		goto fail;
	}
	pthread_detach(thread);
	return dev;

fail:
	if (dev->wake_fd >= 0)
		close(dev->wake_fd);
	if (dev->fd >= 0)
		close(dev->fd);
	pthread_mutex_destroy(&dev->lock);
	free(dev);
	return NULL;
}
