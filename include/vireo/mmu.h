/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Guest physical memory: memslots, access from the core, and the nested
 * page tables (arch/x86/tdp.c).
 */
#ifndef _VIREO_MMU_H
#define _VIREO_MMU_H

#include <vireo/vireo.h>

/* The slot holding @gfn, or NULL: guest memory there is MMIO. */
struct vireo_memslot *vireo_find_slot(struct vireo_vm *vm, u64 gfn);

/*
 * Copy guest physical memory from/to the VMM's mapping of it.  Called in
 * the VMM's process context (a vCPU or VM ioctl).  -EFAULT when part of
 * the range is outside every memslot or the VMM's mapping is gone.
 */
int vireo_read_guest(struct vireo_vm *vm, u64 gpa, void *buf,
		     unsigned long len);
int vireo_write_guest(struct vireo_vm *vm, u64 gpa, const void *buf,
		      unsigned long len);

/* Nested page tables. */
int vireo_tdp_init(struct vireo_vm *vm);
void vireo_tdp_destroy(struct vireo_vm *vm);
/* Follow the VMM's address space (mmu_notifier); before/after the rest. */
int vireo_tdp_register(struct vireo_vm *vm);
void vireo_tdp_unregister(struct vireo_vm *vm);
/*
 * Map the page behind @gpa: 0; -ENOENT when no slot holds it (or @write
 * and the slot is read-only): MMIO; -EFAULT when the VMM's memory there
 * cannot be had; -EINTR on a fatal signal.  Takes vm->mmu_lock.
 */
int vireo_tdp_map(struct vireo_vm *vm, u64 gpa, bool write);
/*
 * Unmap [gfn, gfn + npages) and make every vCPU forget it; write-protect
 * one page for dirty logging (true: flush before trusting it).  Both with
 * vm->mmu_lock held.
 */
void vireo_tdp_zap(struct vireo_vm *vm, u64 gfn, u64 npages);
bool vireo_tdp_wrprotect(struct vireo_vm *vm, u64 gfn);

#endif /* _VIREO_MMU_H */
