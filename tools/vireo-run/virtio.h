/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * vireo-run: virtio 1.x devices on the virtio-mmio transport (version 2,
 * no legacy interface) with split virtqueues: a block device backed by
 * an image file and a network device attached to a tap interface.
 *
 * Each device sits in one VIRTIO_MMIO_SIZE window and drives one ISA
 * interrupt line.  Requests are carried out on the QueueNotify write, in
 * the thread that made it; a network device also has a thread of its own
 * that moves frames from the tap to the guest.
 */
#ifndef VIREO_RUN_VIRTIO_H
#define VIREO_RUN_VIRTIO_H

#include <stdbool.h>
#include <stdint.h>

struct virtio_dev;

/* NULL (and a message on stderr) when the backing file/tap cannot be opened */
struct virtio_dev *virtio_blk_create(const char *image, int irq);
struct virtio_dev *virtio_net_create(const char *tap_name, int irq);

/*
 * An MMIO access to offset (0..0xfff) of the device's window, len 1, 2,
 * 4 or 8; reads fill data.  Safe to call from several threads at once.
 */
void virtio_mmio_access(struct virtio_dev *dev, uint64_t offset,
			uint8_t *data, uint32_t len, bool is_write);

#endif
