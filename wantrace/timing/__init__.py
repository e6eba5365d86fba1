"""How long the work takes on a GPU: the tiles a kernel pads each matrix product to (`tiles`).

May import: wantrace.work, wantrace.rules, wan_reference
"""
