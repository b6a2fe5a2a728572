/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Tracepoints of the x86 run loop:
 *   vireo:vireo_exit       every exit from the guest, as the core sees it
 *   vireo:vireo_userspace  every return from KVM_RUN to the VMM
 *   vireo:vireo_emulate    every instruction the emulator ran (MMIO)
 */
#undef TRACE_SYSTEM
#define TRACE_SYSTEM vireo

#if !defined(_VIREO_TRACE_H) || defined(TRACE_HEADER_MULTI_READ)
#define _VIREO_TRACE_H

#include <linux/tracepoint.h>

TRACE_EVENT(vireo_exit,
	TP_PROTO(int vcpu_id, unsigned int reason, u64 rip, u64 info),
	TP_ARGS(vcpu_id, reason, rip, info),

	TP_STRUCT__entry(
		__field(int, vcpu_id)
		__field(unsigned int, reason)
		__field(u64, rip)
		__field(u64, info)
	),

	TP_fast_assign(
		__entry->vcpu_id = vcpu_id;
		__entry->reason = reason;
		__entry->rip = rip;
		__entry->info = info;
	),

	TP_printk("vcpu %d reason %s rip 0x%llx info 0x%llx",
		  __entry->vcpu_id,
		  __print_symbolic(__entry->reason,
				   { 0, "none" }, { 1, "io" },
				   { 2, "tdp_fault" }, { 3, "hlt" },
				   { 4, "cpuid" }, { 5, "msr_read" },
				   { 6, "msr_write" }, { 7, "xsetbv" },
				   { 8, "hypercall" }, { 9, "shutdown" },
				   { 10, "irq_window" }, { 11, "dr_access" },
				   { 12, "exception" }, { 13, "fail_entry" },
				   { 14, "backend" }, { 15, "unhandled" }),
		  __entry->rip, __entry->info)
);

TRACE_EVENT(vireo_userspace,
	TP_PROTO(int vcpu_id, u32 exit_reason, int ret),
	TP_ARGS(vcpu_id, exit_reason, ret),

	TP_STRUCT__entry(
		__field(int, vcpu_id)
		__field(u32, exit_reason)
		__field(int, ret)
	),

	TP_fast_assign(
		__entry->vcpu_id = vcpu_id;
		__entry->exit_reason = exit_reason;
		__entry->ret = ret;
	),

	TP_printk("vcpu %d kvm exit_reason %u ret %d", __entry->vcpu_id,
		  __entry->exit_reason, __entry->ret)
);

TRACE_EVENT(vireo_emulate,
	TP_PROTO(int vcpu_id, u64 rip, int result),
	TP_ARGS(vcpu_id, rip, result),

	TP_STRUCT__entry(
		__field(int, vcpu_id)
		__field(u64, rip)
		__field(int, result)
	),

	TP_fast_assign(
		__entry->vcpu_id = vcpu_id;
		__entry->rip = rip;
		__entry->result = result;
	),

	TP_printk("vcpu %d rip 0x%llx %s", __entry->vcpu_id, __entry->rip,
		  __print_symbolic(__entry->result,
				   { 0, "ok" }, { 1, "fault" },
				   { 2, "unhandled" }, { 3, "retry" },
				   { 4, "exit" }))
);

#endif /* _VIREO_TRACE_H */

#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_FILE trace
#include <trace/define_trace.h>
