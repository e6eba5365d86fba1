"""Measuring for real, on a device: `verify` runs the model and checks the analytic report module by module
(`probe` hooks every module and scope; `verify_component` does the same for the pipeline's other components),
`counters` reads Nsight Compute hardware counters (`ncu_metrics`: which ones), and `device` checks and describes
the device a measurement runs on.

May import: wantrace.timing, wantrace.hardware, wantrace.work, wantrace.rules, wan_reference
"""
