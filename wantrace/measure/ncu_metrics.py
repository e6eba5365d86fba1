"""What `verify --counters` asks Nsight Compute for: the metrics, the sets of them it can read, and how ncu
replays the forward. Apart from counters.py (which imports torch and the rule book) so that the command line
can offer the choices without loading either."""

METRICS = {
    "tensor_bf16": "sm__ops_path_tensor_src_bf16_dst_fp32.sum",
    "tensor_tf32": "sm__ops_path_tensor_src_tf32_dst_fp32.sum",
    "fadd": "smsp__sass_thread_inst_executed_op_fadd_pred_on.sum",
    "fmul": "smsp__sass_thread_inst_executed_op_fmul_pred_on.sum",
    "ffma": "smsp__sass_thread_inst_executed_op_ffma_pred_on.sum",
    "dadd": "smsp__sass_thread_inst_executed_op_dadd_pred_on.sum",
    "dmul": "smsp__sass_thread_inst_executed_op_dmul_pred_on.sum",
    "dfma": "smsp__sass_thread_inst_executed_op_dfma_pred_on.sum",
    "dram_read": "dram__bytes_read.sum",
    "dram_write": "dram__bytes_write.sum",
    "time_ns": "gpu__time_duration.sum",
}
# Which metrics to read: ncu groups metrics into replay passes, so the full set costs several passes per kernel
# and the tensor set fewer.
METRIC_SETS = {
    "all": tuple(METRICS),
    "tensor": ("tensor_bf16", "tensor_tf32", "time_ns"),
}
# application: the whole forward is re-run once per pass; kernel: each kernel is replayed in place, with the
# device memory it can reach saved and restored around it (the 40-block 14B ran for over 11 minutes so).
REPLAY_MODES = ("application", "kernel")
