/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Every difference between the kernels Vireo builds against (Debian's 6.1
 * and 6.12) lives in this one header.
 */
#ifndef _VIREO_COMPAT_H
#define _VIREO_COMPAT_H

#include <linux/eventfd.h>
#include <linux/mm.h>
#include <linux/smp.h>
#include <linux/syscore_ops.h>

/*
 * vm_flags became read-only behind accessors in 6.3; Kbuild defines
 * VIREO_HAVE_VM_FLAGS_SET when the headers have vm_flags_set().
 */
#ifdef VIREO_HAVE_VM_FLAGS_SET
static inline void vireo_vm_flags_set(struct vm_area_struct *vma,
				      unsigned long flags)
{
	vm_flags_set(vma, flags);
}
#else
static inline void vireo_vm_flags_set(struct vm_area_struct *vma,
				      unsigned long flags)
{
	vma->vm_flags |= flags;
}
#endif

/*
 * Syscore callbacks gained a data pointer and a struct syscore to hang
 * them on (upstream 6.18, backported into Debian's 6.12.y).  Kbuild
 * defines VIREO_SYSCORE_HAS_DATA when the headers have register_syscore().
 */
#ifdef VIREO_SYSCORE_HAS_DATA
#define VIREO_SYSCORE_ARGS void *data
struct vireo_syscore {
	struct syscore_ops ops;
	struct syscore core;
};

static inline void vireo_register_syscore(struct vireo_syscore *s)
{
	s->core.ops = &s->ops;
	register_syscore(&s->core);
}

static inline void vireo_unregister_syscore(struct vireo_syscore *s)
{
	unregister_syscore(&s->core);
}
#else
#define VIREO_SYSCORE_ARGS void
struct vireo_syscore {
	struct syscore_ops ops;
};

static inline void vireo_register_syscore(struct vireo_syscore *s)
{
	register_syscore_ops(&s->ops);
}

static inline void vireo_unregister_syscore(struct vireo_syscore *s)
{
	unregister_syscore_ops(&s->ops);
}
#endif

/*
 * Inside the kernel, 6.12 spells kvm_run's immediate_exit
 * immediate_exit__unsafe (userspace may change it at any time: read it
 * once).  Kbuild defines VIREO_IMMEDIATE_EXIT_UNSAFE when it does.
 */
#ifdef VIREO_IMMEDIATE_EXIT_UNSAFE
#define vireo_run_immediate_exit(run)	READ_ONCE((run)->immediate_exit__unsafe)
#else
#define vireo_run_immediate_exit(run)	READ_ONCE((run)->immediate_exit)
#endif

/*
 * eventfd_signal() lost its count argument in 6.8 (it always adds 1
 * now).  Kbuild defines VIREO_EVENTFD_SIGNAL_ONE when it has.
 */
#ifdef VIREO_EVENTFD_SIGNAL_ONE
static inline void vireo_eventfd_signal(struct eventfd_ctx *ctx)
{
	eventfd_signal(ctx);
}
#else
static inline void vireo_eventfd_signal(struct eventfd_ctx *ctx)
{
	eventfd_signal(ctx, 1);
}
#endif

/*
 * A reschedule IPI forces a CPU out of a guest.  6.6 made
 * smp_send_reschedule() a macro that traces through a tracepoint of the
 * core kernel; the x86 function under it is arch_smp_send_reschedule().
 * Kbuild defines VIREO_ARCH_SEND_RESCHEDULE when the headers have it.
 */
#ifdef VIREO_ARCH_SEND_RESCHEDULE
#define vireo_send_reschedule(cpu)	arch_smp_send_reschedule(cpu)
#else
#define vireo_send_reschedule(cpu)	smp_send_reschedule(cpu)
#endif

#endif /* _VIREO_COMPAT_H */
