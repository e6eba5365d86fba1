"""What a person reads: the module tree, hotspot tables and totals (`render`), comparisons (`compare`), a
sweep's files and plots (`sweep`, `plots`), verify results (`verify`), and number formatting (`units`).
Views only draw; they compute nothing a report does not already hold.

May import: wantrace.measure, wantrace.timing, wantrace.hardware, wantrace.work, wantrace.rules, wan_reference
"""
