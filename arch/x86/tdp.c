// SPDX-License-Identifier: GPL-2.0-only
/*
 * Two-dimensional paging: the nested page tables (EPT on Intel, NPT on
 * AMD) that map guest-physical to host-physical memory, built on demand
 * from the memslots, and the core's own access to guest memory.
 *
 * The tables are 4 levels of 512 entries.  The backend encodes entries
 * (tdp_entry); the core only relies on facts true of both formats as we
 * write them: a zero entry is not present, bits 51:12 of a present entry
 * hold the address it points to, bit 1 of a leaf allows writes (EPT's W,
 * NPT's R/W), bit 7 of a level-2 entry makes it a 2 MiB leaf (EPT's and
 * NPT's PS), and the hardware ignores bit 11 of a leaf (ours to use).
 *
 * Guest memory is the VMM's ordinary memory and stays that way: no page
 * is pinned.  A fault takes a reference on the page only while it puts
 * the entry in; an MMU notifier on the VMM's address space unmaps guest
 * pages before the host swaps, migrates, compacts, merges or frees them,
 * and every vCPU has flushed the translation before the notifier
 * returns.  A fault that raced with such a change (vm->mmu_seq moved, or
 * an invalidation is in progress) drops what it found and looks again.
 *
 * Where the VMM's memory is a 2 MiB page (THP or hugetlbfs) and the slot
 * lines up, one 2 MiB entry maps it; a slot that logs dirty pages is
 * mapped 4 KiB at a time.
 */
#define pr_fmt(fmt) "vireo: " fmt

#include <linux/gfp.h>
#include <linux/list.h>
#include <linux/mm.h>
#include <linux/mmu_notifier.h>
#include <linux/pgtable.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <asm/io.h>

#include <vireo/core.h>
#include <vireo/mmu.h>

#define TDP_LEVELS		4
#define TDP_ENTRIES		512
#define TDP_ADDR_MASK		GENMASK_ULL(51, 12)
#define TDP_WRITABLE		BIT_ULL(1)
#define TDP_HUGE		BIT_ULL(7)
/* ours (ignored by EPT and NPT): the VMM's page was had for writing */
#define TDP_HOST_WRITABLE	BIT_ULL(11)
/* 4 KiB pages in a 2 MiB one */
#define HUGE_PAGES		512

static inline u64 *tdp_table(u64 entry)
{
	return phys_to_virt(entry & TDP_ADDR_MASK);
}

static inline unsigned int tdp_index(u64 gfn, int level)
{
	return (gfn >> (9 * (level - 1))) & (TDP_ENTRIES - 1);
}

static void tdp_add_table(struct vireo_tdp *tdp, struct page *page)
{
	list_add(&page->lru, &tdp->pages);
	tdp->nr_pages++;
}

/* A table page from the cache (mmu_lock held); NULL when it ran dry. */
static struct page *tdp_alloc_table(struct vireo_tdp *tdp)
{
	struct page *page;

	if (!tdp->cache_n)
		return NULL;
	page = tdp->cache[--tdp->cache_n];
	tdp_add_table(tdp, page);
	return page;
}

/*
 * Fill the cache with the most tables one fault can need (3), before
 * taking mmu_lock: an allocation may reclaim, and reclaim may call our
 * MMU notifier.
 */
static int tdp_topup(struct vireo_vm *vm)
{
	struct vireo_tdp *tdp = &vm->tdp;
	struct page *page;

	for (;;) {
		spin_lock(&vm->mmu_lock);
		if (tdp->cache_n >= TDP_LEVELS - 1) {
			spin_unlock(&vm->mmu_lock);
			return 0;
		}
		spin_unlock(&vm->mmu_lock);
		page = alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO);
		if (!page)
			return -ENOMEM;
		spin_lock(&vm->mmu_lock);
		if (tdp->cache_n < ARRAY_SIZE(tdp->cache)) {
			tdp->cache[tdp->cache_n++] = page;
			page = NULL;
		}
		spin_unlock(&vm->mmu_lock);
		if (page)
			__free_page(page);
	}
}

int vireo_tdp_init(struct vireo_vm *vm)
{
	struct vireo_tdp *tdp = &vm->tdp;

	INIT_LIST_HEAD(&tdp->pages);
	tdp->root = alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO);
	if (!tdp->root)
		return -ENOMEM;
	tdp_add_table(tdp, tdp->root);
	vm->backend->set_tdp_root(vm, page_to_phys(tdp->root));
	return 0;
}

/* Table pages go back when the VM dies; the guest's pages are not ours. */
void vireo_tdp_destroy(struct vireo_vm *vm)
{
	struct vireo_tdp *tdp = &vm->tdp;
	struct page *page, *next;

	list_for_each_entry_safe(page, next, &tdp->pages, lru) {
		list_del(&page->lru);
		__free_page(page);
	}
	while (tdp->cache_n)
		__free_page(tdp->cache[--tdp->cache_n]);
	tdp->root = NULL;
	tdp->nr_pages = 0;
}

static bool tdp_is_huge(u64 entry, int level)
{
	return level == 2 && (entry & TDP_HUGE);
}

/*
 * The entry for @gfn at @level (1: a 4 KiB leaf, 2: a 2 MiB one),
 * allocating missing tables on the way if @alloc; NULL on ENOMEM, when
 * a table is missing and not @alloc, or when a 2 MiB leaf above already
 * maps @gfn (*huge set).
 */
static u64 *tdp_entry_at(struct vireo_vm *vm, u64 gfn, int level,
			 bool alloc, bool *huge)
{
	const struct vireo_backend *b = vm->backend;
	u64 *table = page_address(vm->tdp.root);
	struct page *page;
	u64 *entry;
	int l;

	*huge = false;
	for (l = TDP_LEVELS; l > level; l--) {
		entry = &table[tdp_index(gfn, l)];
		if (tdp_is_huge(*entry, l)) {
			*huge = true;
			return NULL;
		}
		if (!*entry) {
			if (!alloc)
				return NULL;
			page = tdp_alloc_table(&vm->tdp);
			if (!page)
				return NULL;
			*entry = b->tdp_entry(page_to_phys(page), false, true,
					      true);
		}
		table = tdp_table(*entry);
	}
	return &table[tdp_index(gfn, level)];
}

static void mark_dirty(struct vireo_memslot *slot, u64 gfn)
{
	if (slot->dirty_bitmap)
		set_bit(gfn - slot->base_gfn, slot->dirty_bitmap);
}

/*
 * Make the mapping of @gfn read-only (dirty logging).  True if it was
 * writable: the caller flushes the vCPUs before trusting it.  A slot that
 * logs has no 2 MiB mappings.
 */
bool vireo_tdp_wrprotect(struct vireo_vm *vm, u64 gfn)
{
	bool huge;
	u64 *leaf;

	lockdep_assert_held(&vm->mmu_lock);
	leaf = tdp_entry_at(vm, gfn, 1, false, &huge);
	if (!leaf || !(*leaf & TDP_WRITABLE))
		return false;
	*leaf &= ~TDP_WRITABLE;
	return true;
}

/*
 * Whether the VMM's memory at @hva is mapped by a 2 MiB (or larger) page
 * of its own: a transparent huge page or hugetlbfs.  The page tables are
 * read under mmap_lock; the caller's sequence check catches any change
 * after.
 */
static bool host_maps_huge(struct mm_struct *mm, unsigned long hva)
{
	bool huge = false;
	pgd_t *pgd;
	p4d_t *p4d;
	pud_t *pud, pudv;
	pmd_t *pmd, pmdv;

	mmap_read_lock(mm);
	pgd = pgd_offset(mm, hva);
	if (pgd_none(*pgd) || pgd_bad(*pgd))
		goto out;
	p4d = p4d_offset(pgd, hva);
	if (p4d_none(*p4d) || p4d_bad(*p4d))
		goto out;
	pud = pud_offset(p4d, hva);
	pudv = READ_ONCE(*pud);
	if (!pud_present(pudv))
		goto out;
	if (pud_leaf(pudv)) {
		huge = true;
		goto out;
	}
	pmd = pmd_offset(pud, hva);
	pmdv = READ_ONCE(*pmd);
	huge = pmd_present(pmdv) && pmd_leaf(pmdv);
out:
	mmap_read_unlock(mm);
	return huge;
}

/* Can @gfn of @slot be mapped by one 2 MiB entry, as far as the slot goes? */
static bool slot_allows_huge(const struct vireo_memslot *slot, u64 gfn)
{
	u64 first = gfn & ~(u64)(HUGE_PAGES - 1);
	u64 hva_pfn = slot->userspace_addr >> PAGE_SHIFT;

	return !slot->dirty_bitmap &&
	       ((hva_pfn - slot->base_gfn) & (HUGE_PAGES - 1)) == 0 &&
	       first >= slot->base_gfn &&
	       first + HUGE_PAGES <= slot->base_gfn + slot->npages;
}

/* What a fault found, under vm->mmu_lock. */
struct tdp_fault {
	u64 gfn;
	bool write, readonly, writable, huge;
	bool host_writable;	/* the page was had with FOLL_WRITE */
	bool replace;		/* a read-only leaf gives way to a writable one */
	unsigned long hva;
	unsigned long seq;
};

/*
 * Look at @f->gfn under vm->mmu_lock: -ENOENT for MMIO, 1 when there is
 * nothing left to do, 0 when the page must be had from the VMM.
 */
static int tdp_fault_check(struct vireo_vm *vm, struct tdp_fault *f)
{
	struct vireo_memslot *slot = vireo_find_slot(vm, f->gfn);
	bool huge;
	u64 *leaf;

	f->readonly = slot && (slot->flags & KVM_MEM_READONLY);
	/* a write to a read-only slot is the VMM's business: MMIO */
	if (!slot || (f->write && f->readonly))
		return -ENOENT;
	f->replace = false;
	leaf = tdp_entry_at(vm, f->gfn, 1, false, &huge);
	if (huge) {
		leaf = tdp_entry_at(vm, f->gfn, 2, false, &huge);
		if (!f->write || (*leaf & TDP_WRITABLE))
			return 1;	/* another vCPU mapped it first */
		if (*leaf & TDP_HOST_WRITABLE) {
			*leaf |= TDP_WRITABLE;
			return 1;
		}
		/* a write to 2 MiB the VMM had read-only: map it again */
		*leaf = 0;
		vm->tdp.nr_huge--;
		vireo_flush_all_vcpus(vm);
		leaf = NULL;
	}
	if (leaf && *leaf) {
		if (!f->write || (*leaf & TDP_WRITABLE))
			return 1;	/* another vCPU mapped it first */
		/* a write to a page mapped read-only while logging */
		if (*leaf & TDP_HOST_WRITABLE) {
			*leaf |= TDP_WRITABLE;
			mark_dirty(slot, f->gfn);
			return 1;
		}
		/* the VMM's page was read-only (for now): have it for writing */
		f->replace = true;
	}
	f->hva = slot->userspace_addr +
		 ((f->gfn - slot->base_gfn) << PAGE_SHIFT);
	/* while logging, a page is writable only once it is marked dirty */
	f->writable = !f->readonly && (f->write || !slot->dirty_bitmap);
	f->huge = !f->replace && slot_allows_huge(slot, f->gfn);
	f->seq = vm->mmu_seq;
	return 0;
}

/* Install the page the VMM gave, unless an invalidation came in between. */
static int tdp_fault_install(struct vireo_vm *vm, struct tdp_fault *f,
			     struct page *page)
{
	const struct vireo_backend *b = vm->backend;
	struct vireo_memslot *slot;
	u64 *entry, hpa, first, old;
	bool huge;

	if (atomic_read(&vm->mmu_invalidating) || vm->mmu_seq != f->seq)
		return -EAGAIN;
	slot = vireo_find_slot(vm, f->gfn);
	if (f->huge) {
		first = f->gfn & ~(u64)(HUGE_PAGES - 1);
		entry = tdp_entry_at(vm, first, 2, true, &huge);
		/* 4 KiB mappings there already: stay with those */
		if (entry && !*entry) {
			hpa = page_to_phys(page) - ((f->gfn - first) << PAGE_SHIFT);
			*entry = b->tdp_entry(hpa, true, f->writable, true) |
				 TDP_HUGE |
				 (f->host_writable ? TDP_HOST_WRITABLE : 0);
			vm->tdp.nr_huge++;
			goto mapped;
		}
	}
	entry = tdp_entry_at(vm, f->gfn, 1, true, &huge);
	if (huge)
		return 0;
	if (!entry)
		return -EAGAIN;	/* another vCPU emptied the cache: refill */
	if (*entry && !f->replace)
		goto mapped;
	old = *entry;
	*entry = b->tdp_entry(page_to_phys(page), true, f->writable, true) |
		 (f->host_writable ? TDP_HOST_WRITABLE : 0);
	/* no vCPU may go on reading the page a write just copied */
	if (old && (old & TDP_ADDR_MASK) != (*entry & TDP_ADDR_MASK))
		vireo_flush_all_vcpus(vm);
mapped:
	if (f->writable && slot)
		mark_dirty(slot, f->gfn);
	return 0;
}

int vireo_tdp_map(struct vireo_vm *vm, u64 gpa, bool write)
{
	struct tdp_fault f = { .gfn = gpa >> PAGE_SHIFT, .write = write };
	struct page *page;
	int ret;

	for (;;) {
		spin_lock(&vm->mmu_lock);
		ret = tdp_fault_check(vm, &f);
		spin_unlock(&vm->mmu_lock);
		if (ret)
			return ret < 0 ? ret : 0;
		/* pairs with the barrier after invalidations bump mmu_seq */
		smp_rmb();

		/*
		 * A reference only while the entry goes in: from then on the
		 * MMU notifier tells us before the page changes hands.
		 */
		ret = tdp_topup(vm);
		if (ret)
			return ret;
		/*
		 * For writing when the slot allows it, even on a read: a
		 * page mapped read-only would fault again at the first
		 * write.  A read of memory the VMM has read-only maps it
		 * read-only, as the VMM sees it.
		 */
		f.host_writable = !f.readonly &&
			get_user_pages_fast(f.hva, 1, FOLL_WRITE, &page) == 1;
		if (!f.host_writable) {
			if (f.write ||
			    get_user_pages_fast(f.hva, 1, 0, &page) != 1)
				return -EFAULT;
			f.writable = false;
		}
		if (f.huge)
			f.huge = host_maps_huge(vm->mm, f.hva);

		spin_lock(&vm->mmu_lock);
		ret = tdp_fault_install(vm, &f, page);
		spin_unlock(&vm->mmu_lock);
		put_page(page);
		if (ret != -EAGAIN)
			return ret;
		/* the VMM's mapping is changing: wait for it to settle */
		if (fatal_signal_pending(current))
			return -EINTR;
		cond_resched();
	}
}

/*
 * Clear the leaves of [start, end) below @table at @level; a 2 MiB leaf
 * that overlaps goes as a whole.  The guest may have written any page
 * it could write: the page is marked dirty for the host's reclaim.
 */
static bool tdp_zap_level(struct vireo_vm *vm, u64 *table, int level,
			  u64 base, u64 start, u64 end)
{
	u64 span = 1ULL << (9 * (level - 1));	/* gfns per entry */
	u64 gfn, first, i, pfn;
	bool zapped = false;

	first = start > base ? (start - base) / span : 0;
	for (i = first; i < TDP_ENTRIES; i++) {
		gfn = base + i * span;
		if (gfn >= end)
			break;
		if (!table[i])
			continue;
		if (level > 1 && !tdp_is_huge(table[i], level)) {
			zapped |= tdp_zap_level(vm, tdp_table(table[i]),
						level - 1, gfn, start, end);
			continue;
		}
		pfn = (table[i] & TDP_ADDR_MASK) >> PAGE_SHIFT;
		if ((table[i] & TDP_WRITABLE) && pfn_valid(pfn))
			SetPageDirty(pfn_to_page(pfn));
		if (level > 1)
			vm->tdp.nr_huge--;
		table[i] = 0;
		zapped = true;
	}
	return zapped;
}

void vireo_tdp_zap(struct vireo_vm *vm, u64 gfn, u64 npages)
{
	lockdep_assert_held(&vm->mmu_lock);
	/* a fault that looked before this must not install what it found */
	vm->mmu_seq++;
	if (tdp_zap_level(vm, page_address(vm->tdp.root), TDP_LEVELS, 0, gfn,
			  gfn + npages))
		vireo_flush_all_vcpus(vm);
}

/* ---- the VMM's address space changes: follow it ---- */

static struct vireo_vm *mn_to_vm(struct mmu_notifier *mn)
{
	return container_of(mn, struct vireo_vm, mmu_notifier);
}

/* Unmap every guest page backed by [start, end) of the VMM (vm->mmu_lock). */
static void zap_hva_range(struct vireo_vm *vm, unsigned long start,
			  unsigned long end)
{
	struct vireo_memslot *slot;
	unsigned long s, e;
	int i;

	for (i = 0; i < vm->nr_slots; i++) {
		slot = &vm->slots[vm->slot_ids[i]];
		s = max_t(unsigned long, start, slot->userspace_addr);
		e = min_t(unsigned long, end, slot->userspace_addr +
			  (slot->npages << PAGE_SHIFT));
		if (s >= e)
			continue;
		vireo_tdp_zap(vm, slot->base_gfn +
			      ((s - slot->userspace_addr) >> PAGE_SHIFT),
			      (PAGE_ALIGN(e) - (s & PAGE_MASK)) >> PAGE_SHIFT);
	}
}

/*
 * Never fails, so it may not sleep: the OOM reaper calls it where it
 * must not, and the core then calls invalidate_range_end even for a
 * notifier whose start failed (and warns that such a notifier has one).
 */
static int tdp_invalidate_start(struct mmu_notifier *mn,
				const struct mmu_notifier_range *range)
{
	struct vireo_vm *vm = mn_to_vm(mn);

	spin_lock(&vm->mmu_lock);
	atomic_inc(&vm->mmu_invalidating);
	vm->mmu_seq++;
	zap_hva_range(vm, range->start, range->end);
	spin_unlock(&vm->mmu_lock);
	return 0;
}

static void tdp_invalidate_end(struct mmu_notifier *mn,
			       const struct mmu_notifier_range *range)
{
	struct vireo_vm *vm = mn_to_vm(mn);

	/* faults that saw it in progress look again */
	atomic_dec(&vm->mmu_invalidating);
}

/* The VMM's address space is going away: the guest loses all of it. */
static void tdp_release(struct mmu_notifier *mn, struct mm_struct *mm)
{
	struct vireo_vm *vm = mn_to_vm(mn);

	spin_lock(&vm->mmu_lock);
	vm->mmu_seq++;
	zap_hva_range(vm, 0, ULONG_MAX);
	spin_unlock(&vm->mmu_lock);
}

static const struct mmu_notifier_ops tdp_mmu_notifier_ops = {
	.invalidate_range_start = tdp_invalidate_start,
	.invalidate_range_end = tdp_invalidate_end,
	.release = tdp_release,
};

int vireo_tdp_register(struct vireo_vm *vm)
{
	vm->mmu_notifier.ops = &tdp_mmu_notifier_ops;
	return mmu_notifier_register(&vm->mmu_notifier, vm->mm);
}

void vireo_tdp_unregister(struct vireo_vm *vm)
{
	mmu_notifier_unregister(&vm->mmu_notifier, vm->mm);
}

/*
 * The VMM's address of @gpa and how much of it can be copied from there
 * in one go (to the end of the page); 0 when no slot holds it, or the
 * slot is read-only and @write.
 */
static unsigned long guest_hva(struct vireo_vm *vm, u64 gpa, bool write,
			       unsigned long *hva)
{
	struct vireo_memslot *slot;
	unsigned long chunk = 0;

	spin_lock(&vm->mmu_lock);
	slot = vireo_find_slot(vm, gpa >> PAGE_SHIFT);
	if (slot && !(write && (slot->flags & KVM_MEM_READONLY))) {
		if (write)
			mark_dirty(slot, gpa >> PAGE_SHIFT);
		*hva = slot->userspace_addr +
		       (gpa - (slot->base_gfn << PAGE_SHIFT));
		chunk = PAGE_SIZE - offset_in_page(gpa);
	}
	spin_unlock(&vm->mmu_lock);
	return chunk;
}

/*
 * The copy itself runs without vm->mmu_lock: it may fault, and a fault may
 * call our MMU notifier, which takes the lock.
 */
static int guest_copy(struct vireo_vm *vm, u64 gpa, void *buf,
		      unsigned long len, bool write)
{
	unsigned long hva, chunk;

	while (len) {
		chunk = min(len, guest_hva(vm, gpa, write, &hva));
		if (!chunk)
			return -EFAULT;
		if (write ? copy_to_user((void __user *)hva, buf, chunk) :
			    copy_from_user(buf, (void __user *)hva, chunk))
			return -EFAULT;
		gpa += chunk;
		buf += chunk;
		len -= chunk;
	}
	return 0;
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
