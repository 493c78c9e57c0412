"""The simulation kernel: event loop, instances, scheduler, KV cache, router.

It depends on config, workload and latency models only; never on results, views or widgets.
"""
