"""The rule book: one small cost rule per op family (installed as `wantrace.rules`).

Rules turn a graph node's shapes and dtypes into FLOPs and bytes; they import neither the model
(`wan_reference`) nor the machinery (`wantrace`)."""
