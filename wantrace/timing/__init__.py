"""How long the work takes on a GPU: hardware profiles (`profile`), measured curves (`series`), the predictor
that times every node of a forward as eager PyTorch runs it (`predictor`), and the tiles a kernel pads each
matrix product to (`tiles`).

May import: wantrace.work, wantrace.rules, wantrace.hardware, wan_reference
"""
