"""What the work is: the FX trace of the model on meta and the cost of every node (`trace`), workloads and
their geometry (`workload`), the roll-up into the report (`analysis`, `report`, `metrics`), categories and
roles (`categories`, `roles`, `hotspots`), parameter inventories (`inventory`), and work across reports and
workloads (`compare`, `sweep`). Exact integers only; nothing here knows about time or GPUs.

May import: wantrace.rules, wan_reference
"""
