// SPDX-License-Identifier: GPL-2.0-only
/*
 * Two-dimensional paging: the nested page tables (EPT on Intel, NPT on
 * AMD) that map guest-physical to host-physical memory, built on demand
 * from the memslots, and the core's own access to guest memory.
 *
 * The tables are 4 levels of 512 entries.  The backend encodes entries
 * (tdp_entry); the core only relies on two facts true of both formats as
 * we write them: a zero entry is not present, and bits 51:12 of a
 * present entry hold the address it points to, and bit 1 of a leaf
 * allows writes (EPT's W, NPT's R/W).
 *
 * A guest page is pinned (pin_user_pages_fast, FOLL_LONGTERM) while a leaf
 * entry maps it, and unpinned only after every vCPU has flushed the
 * translation, so the host never frees a page a guest can still reach.
 */
#define pr_fmt(fmt) "vireo: " fmt

#include <linux/gfp.h>
#include <linux/list.h>
#include <linux/mm.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <asm/io.h>

#include <vireo/core.h>
#include <vireo/mmu.h>

#define TDP_LEVELS		4
#define TDP_ENTRIES		512
#define TDP_ADDR_MASK		GENMASK_ULL(51, 12)
#define TDP_WRITABLE		BIT_ULL(1)
/* guest pages unpinned per flush when zapping */
#define ZAP_BATCH		64

static inline u64 *tdp_table(u64 entry)
{
	return phys_to_virt(entry & TDP_ADDR_MASK);
}

static inline unsigned int tdp_index(u64 gfn, int level)
{
	return (gfn >> (9 * (level - 1))) & (TDP_ENTRIES - 1);
}

static struct page *tdp_alloc_table(struct vireo_tdp *tdp)
{
	struct page *page = alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO);

	if (page) {
		list_add(&page->lru, &tdp->pages);
		tdp->nr_pages++;
	}
	return page;
}

int vireo_tdp_init(struct vireo_vm *vm)
{
	struct vireo_tdp *tdp = &vm->tdp;

	INIT_LIST_HEAD(&tdp->pages);
	tdp->root = tdp_alloc_table(tdp);
	if (!tdp->root)
		return -ENOMEM;
	vm->backend->set_tdp_root(vm, page_to_phys(tdp->root));
	return 0;
}

/* Unpin every guest page below @table, a table at @level. */
static void tdp_unpin_all(struct vireo_tdp *tdp, u64 *table, int level)
{
	struct page *page;
	int i;

	for (i = 0; i < TDP_ENTRIES; i++) {
		if (!table[i])
			continue;
		if (level > 1) {
			tdp_unpin_all(tdp, tdp_table(table[i]), level - 1);
			continue;
		}
		page = pfn_to_page((table[i] & TDP_ADDR_MASK) >> PAGE_SHIFT);
		unpin_user_pages_dirty_lock(&page, 1, true);
		tdp->nr_mapped--;
	}
}

/* The VM is dying: no vCPU can run any more. */
void vireo_tdp_destroy(struct vireo_vm *vm)
{
	struct vireo_tdp *tdp = &vm->tdp;
	struct page *page, *next;

	if (tdp->root)
		tdp_unpin_all(tdp, page_address(tdp->root), TDP_LEVELS);
	WARN_ON_ONCE(tdp->nr_mapped);
	list_for_each_entry_safe(page, next, &tdp->pages, lru) {
		list_del(&page->lru);
		__free_page(page);
	}
	tdp->root = NULL;
	tdp->nr_pages = 0;
}

/* The leaf entry for @gfn, allocating tables on the way; NULL on ENOMEM. */
static u64 *tdp_leaf(struct vireo_vm *vm, u64 gfn)
{
	const struct vireo_backend *b = vm->backend;
	u64 *table = page_address(vm->tdp.root);
	struct page *page;
	u64 *entry;
	int level;

	for (level = TDP_LEVELS; level > 1; level--) {
		entry = &table[tdp_index(gfn, level)];
		if (!*entry) {
			page = tdp_alloc_table(&vm->tdp);
			if (!page)
				return NULL;
			*entry = b->tdp_entry(page_to_phys(page), false, true,
					      true);
		}
		table = tdp_table(*entry);
	}
	return &table[tdp_index(gfn, 1)];
}

static void mark_dirty(struct vireo_memslot *slot, u64 gfn)
{
	if (slot->dirty_bitmap)
		set_bit(gfn - slot->base_gfn, slot->dirty_bitmap);
}

/*
 * Make the mapping of @gfn read-only (dirty logging).  True if it was
 * writable: the caller flushes the vCPUs before trusting it.
 */
bool vireo_tdp_wrprotect(struct vireo_vm *vm, u64 gfn)
{
	u64 *table = page_address(vm->tdp.root), *leaf;
	int level;

	lockdep_assert_held(&vm->lock);
	for (level = TDP_LEVELS; level > 1; level--) {
		if (!table[tdp_index(gfn, level)])
			return false;
		table = tdp_table(table[tdp_index(gfn, level)]);
	}
	leaf = &table[tdp_index(gfn, 1)];
	if (!(*leaf & TDP_WRITABLE))
		return false;
	*leaf &= ~TDP_WRITABLE;
	return true;
}

int vireo_tdp_map(struct vireo_vm *vm, u64 gpa, bool write)
{
	u64 gfn = gpa >> PAGE_SHIFT;
	struct vireo_memslot *slot;
	bool readonly, writable;
	struct page *page;
	unsigned long hva;
	u64 *leaf;
	int ret = 0;

	mutex_lock(&vm->lock);
	slot = vireo_find_slot(vm, gfn);
	readonly = slot && (slot->flags & KVM_MEM_READONLY);
	/* a write to a read-only slot is the VMM's business: MMIO */
	if (!slot || (write && readonly)) {
		ret = -ENOENT;
		goto out;
	}
	leaf = tdp_leaf(vm, gfn);
	if (!leaf) {
		ret = -ENOMEM;
		goto out;
	}
	if (*leaf) {
		/* a write to a page mapped read-only while logging */
		if (write && !readonly && !(*leaf & TDP_WRITABLE)) {
			*leaf |= TDP_WRITABLE;
			mark_dirty(slot, gfn);
		}
		goto out;	/* or another vCPU mapped it first */
	}

	hva = slot->userspace_addr + ((gfn - slot->base_gfn) << PAGE_SHIFT);
	if (pin_user_pages_fast(hva, 1, FOLL_LONGTERM |
				(readonly ? 0 : FOLL_WRITE), &page) != 1) {
		ret = -EFAULT;
		goto out;
	}
	/* while logging, a page is writable only once it is marked dirty */
	writable = !readonly && (write || !slot->dirty_bitmap);
	*leaf = vm->backend->tdp_entry(page_to_phys(page), true, writable,
				       true);
	if (writable)
		mark_dirty(slot, gfn);
	vm->tdp.nr_mapped++;
out:
	mutex_unlock(&vm->lock);
	return ret;
}

struct zap_state {
	struct vireo_vm *vm;
	struct page *pages[ZAP_BATCH];
	int n;
};

/* Flush every vCPU, then let go of the pages they can no longer reach. */
static void zap_flush(struct zap_state *zs)
{
	if (!zs->n)
		return;
	vireo_flush_all_vcpus(zs->vm);
	unpin_user_pages_dirty_lock(zs->pages, zs->n, true);
	zs->vm->tdp.nr_mapped -= zs->n;
	zs->n = 0;
}

static void tdp_zap_level(struct zap_state *zs, u64 *table, int level,
			  u64 base, u64 start, u64 end)
{
	u64 span = 1ULL << (9 * (level - 1));	/* gfns per entry */
	u64 gfn, first, i;

	first = start > base ? (start - base) / span : 0;
	for (i = first; i < TDP_ENTRIES; i++) {
		gfn = base + i * span;
		if (gfn >= end)
			break;
		if (!table[i])
			continue;
		if (level > 1) {
			tdp_zap_level(zs, tdp_table(table[i]), level - 1,
				      gfn, start, end);
			continue;
		}
		zs->pages[zs->n++] =
			pfn_to_page((table[i] & TDP_ADDR_MASK) >> PAGE_SHIFT);
		table[i] = 0;
		if (zs->n == ZAP_BATCH)
			zap_flush(zs);
	}
}

void vireo_tdp_zap(struct vireo_vm *vm, u64 gfn, u64 npages)
{
	struct zap_state *zs;

	lockdep_assert_held(&vm->lock);
	zs = kzalloc(sizeof(*zs), GFP_KERNEL_ACCOUNT | __GFP_NOFAIL);
	zs->vm = vm;
	tdp_zap_level(zs, page_address(vm->tdp.root), TDP_LEVELS, 0, gfn,
		      gfn + npages);
	zap_flush(zs);
	kfree(zs);
}

static int guest_copy(struct vireo_vm *vm, u64 gpa, void *buf,
		      unsigned long len, bool write)
{
	struct vireo_memslot *slot;
	unsigned long hva, chunk;
	int ret = 0;

	mutex_lock(&vm->lock);
	while (len) {
		slot = vireo_find_slot(vm, gpa >> PAGE_SHIFT);
		if (!slot || (write && (slot->flags & KVM_MEM_READONLY))) {
			ret = -EFAULT;
			break;
		}
		if (write)
			mark_dirty(slot, gpa >> PAGE_SHIFT);
		chunk = min_t(unsigned long, len, PAGE_SIZE - offset_in_page(gpa));
		hva = slot->userspace_addr +
		      (gpa - (slot->base_gfn << PAGE_SHIFT));
		if (write ? copy_to_user((void __user *)hva, buf, chunk) :
			    copy_from_user(buf, (void __user *)hva, chunk)) {
			ret = -EFAULT;
			break;
		}
		gpa += chunk;
		buf += chunk;
		len -= chunk;
	}
	mutex_unlock(&vm->lock);
	return ret;
}

int vireo_read_guest(struct vireo_vm *vm, u64 gpa, void *buf,
		     unsigned long len)
{
	return guest_copy(vm, gpa, buf, len, false);
}
EXPORT_SYMBOL_GPL(vireo_read_guest);

int vireo_write_guest(struct vireo_vm *vm, u64 gpa, const void *buf,
		      unsigned long len)
{
	return guest_copy(vm, gpa, (void *)buf, len, true);
}
