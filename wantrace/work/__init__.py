"""What the work is: the FX trace of the model on meta and the cost of every node (`trace`), workloads and
their geometry (`workload`), the roll-up into the report (`analysis`, `report`, `metrics`), categories and
roles (`categories`, `roles`, `hotspots`), parameter inventories (`inventory`), work across reports and
workloads (`compare`, `sweep`), and the pipeline's other components traced the same way (`vae`,
`text_encoder`), with a disk cache of their traced costs keyed by the code (`cache`) and the VAE traced in a
forked child beside the DiT (`beside`). Exact integers only; nothing here knows about time or GPUs.

May import: wantrace.rules, wan_reference
"""
