"""FX-trace the wan_reference model on meta and cost every graph node with the rule book.

The result is a flat list of `NodeCost`s in execution order, each knowing the module path (official ids,
plus the model's named functional scopes) it ran in."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.fx
import torch.nn.functional as F
from torch.fx.node import map_aggregate

from wan_reference import WanConfig, build_model, make_inputs
from wan_reference.build import trace_args
from wan_reference.precision import PrecisionPolicy

from .. import rules
from ..rules import Cost, OpCall, TensorSpec
from .lean import lean_meta_run

ROOT = "model"
STRUCTURAL = ("placeholder", "get_attr", "output")


class WanTracer(torch.fx.Tracer):
    """Traces through every module (nothing is a leaf), so each Linear is an F.linear node under its own
    module path, and proxies buffers so the RoPE tables are graph inputs rather than constants."""

    proxy_buffer_attributes = True

    def is_leaf_module(self, m: torch.nn.Module, qualname: str) -> bool:
        return False

    def create_arg(self, a):
        """FX's own answer, sooner for the arguments most nodes take (a third of a trace's time went to
        asking each int whether it is a Parameter, a module, a constant tensor or an opaque object)."""
        kind = type(a)
        if kind in _AS_IS:
            return a
        if kind is torch.fx.Proxy:
            return a.node
        if kind is tuple:
            return tuple([self.create_arg(x) for x in a])
        if kind is list:
            return [self.create_arg(x) for x in a]
        return super().create_arg(a)


_AS_IS = frozenset({int, float, bool, str, type(None), torch.dtype, torch.device, torch.memory_format, torch.layout})


@dataclass(frozen=True)
class NodeCost:
    index: int
    op: str  # the FX node kind: call_function, call_method, placeholder, get_attr, output
    name: str  # the op's name, e.g. "linear", "to"
    kind: str  # "costed", "metadata", "structural" or "unknown"
    family: str  # the rule's family ("cast", "matmul", ...); "" when no rule applies
    module: str  # innermost module or scope path; ROOT for the model itself
    stack: tuple[str, ...]  # call keys, outermost first, unique per call
    cost: Cost
    output_bytes: int  # bytes of the node's result (what a module returning it hands back)
    note: str = ""  # why a node is unknown
    in_dtype: torch.dtype | None = None  # dtype of the first tensor input (what a matmul computes in)
    layout: str = ""  # how an elementwise kernel reads its inputs: "", "bcast", "bcastcol", "mixed-..." (layout_of)


def _spec(t: torch.Tensor) -> TensorSpec:
    return TensorSpec(tuple(t.shape), t.dtype, tuple(t.stride()))


def _tensors(value) -> list[torch.Tensor]:
    found: list[torch.Tensor] = []
    map_aggregate(value, lambda v: found.append(v) if isinstance(v, torch.Tensor) else None)
    return found


def op_key(value: object) -> object:
    """A hashable stand-in for an op's arguments, equal for calls a kernel cannot tell apart: tensors by
    layout (shape, strides, dtype, storage offset), slices by their bounds."""
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), value.stride(), value.dtype, value.storage_offset())
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, *(op_key(v) for v in value))
    if isinstance(value, dict):
        return ("dict", *((k, op_key(v)) for k, v in value.items()))
    if isinstance(value, slice):
        return ("slice", value.start, value.stop, value.step)
    return value


def layout_of(inputs: list[torch.Tensor], outputs: list[TensorSpec]) -> str:
    """What decides an elementwise kernel's speed beyond its bytes: an input broadcast along rows (a [1, C]
    vector: "bcast") or along the last dim ([L, 1]: "bcastcol"), a full-size input read through a strided view
    ("strided": a chunk of Wan2.2's per-token modulation [B, L, 6, C]), and inputs of another dtype than the
    output ("mixed-", computed in the kernel). "" for same-shape, contiguous, same-dtype operands."""
    if not outputs or not inputs:
        return ""
    out = outputs[0]
    small = [t for t in inputs if t.numel() < out.numel]
    shape = "bcastcol" if any(t.dim() and t.shape[-1] == 1 and out.shape[-1] > 1 for t in small) else (
        "bcast" if small else "strided" if any(t.numel() == out.numel > 1 and not t.is_contiguous() for t in inputs)
        else "")
    mixed = any(t.dtype != out.dtype for t in inputs)
    return ("mixed-" + (shape or "dense")) if mixed else shape


def _op_name(node: torch.fx.Node) -> str:
    if node.op == "call_method":
        return str(node.target)
    return getattr(node.target, "__name__", str(node.target))


class CostInterpreter(torch.fx.Interpreter):
    """Runs the graph on meta tensors and costs each node as it goes."""

    def __init__(self, gm: torch.nn.Module, strict: bool, graph: torch.fx.Graph | None = None):
        """`gm`: a GraphModule, or the traced module itself with its `graph` (no GraphModule code to generate)."""
        # keep every value alive: storage identities must stay unique for alias and liveness tracking
        # (meta tensors cost no memory)
        super().__init__(gm, garbage_collect_values=False, graph=graph)
        self.strict = strict
        self.records: list[NodeCost] = []
        self.calls: list[OpCall | None] = []  # what each costed or metadata record's rule saw (symbolic costs)
        self._call: OpCall | None = None
        # liveness bookkeeping for the peak activation estimate
        self._owner: dict[int, torch.fx.Node | None] = {}  # storage -> node that allocated it (None: weights)
        self._group: dict[torch.fx.Node, torch.fx.Node | None] = {}
        self._alloc: dict[torch.fx.Node, int] = {}
        self.new_specs: dict[torch.fx.Node, list[TensorSpec]] = {}  # the tensors each node allocated
        # Repeated ops (a model's blocks, a VAE's chunks) run the same op on the same layouts: each runs its meta
        # kernel (slow Python for many) and its rule once. A result that owns fresh storage is re-created from
        # its recorded layout; views and in-place ops always run, so storage identities stay exact.
        self._results: dict[object, tuple | None] = {}  # op key -> (shape, stride, dtype) of a fresh result
        self._costs: dict[object, tuple] = {}  # (op key, result aliases an input) -> the rule's answer
        self._key: object = None  # the running node's op key (None: not memoizable)

    def run(self, *args):
        """torch.fx's run without its progress bar: it opens a tqdm bar on every call (disabled, but where tqdm is
        installed the first one starts tqdm's monitor thread, and a process with another thread must not fork:
        wantrace.work.beside) and appends the node to an error's message (ours are one line)."""
        self.env = {}
        self.args_iter = iter(args)
        for node in self.graph.nodes:
            self.env[node] = self.run_node(node)
            if node.op == "output":
                return self.env[node]
        return None

    def call_function(self, target, args, kwargs):
        return self._memoized("call_function", target, args, kwargs)

    def call_method(self, target, args, kwargs):
        return self._memoized("call_method", target, args, kwargs)

    def _memoized(self, kind: str, target, args, kwargs):
        try:
            key = (kind, target, op_key(args), op_key(kwargs))
            spec = self._results.get(key, False)
        except TypeError:  # an unhashable argument
            return self._run_op(kind, target, args, kwargs)
        self._key = key
        if isinstance(spec, tuple):
            shape, stride, dtype = spec
            return torch.empty_strided(shape, stride, dtype=dtype, device="meta")
        result = self._run_op(kind, target, args, kwargs)
        if spec is False:
            inputs = {t.untyped_storage()._cdata for t in _tensors((args, kwargs))}
            fresh = (isinstance(result, torch.Tensor) and result.untyped_storage()._cdata not in inputs
                     and result.storage_offset() == 0)
            self._results[key] = (tuple(result.shape), result.stride(), result.dtype) if fresh else None
        return result

    def _run_op(self, kind: str, target, args, kwargs):
        if kind == "call_method":
            return super().call_method(target, args, kwargs)
        result = super().call_function(target, args, kwargs)
        if target is F.scaled_dot_product_attention:
            # flash-attention layout: O is written as [B, Sq, H, Dv] and viewed as [B, H, Sq, Dv]
            b, h, sq, dv = result.shape
            result = torch.empty(b, sq, h, dv, dtype=result.dtype, device=result.device).transpose(1, 2)
        return result

    def run_node(self, node: torch.fx.Node):
        self._key = None
        with self._set_current_node(node):
            args, kwargs = self.fetch_args_kwargs_from_env(node)
            result = getattr(self, node.op)(node.target, args, kwargs)
        self._call = None
        record = self._cost(node, args, kwargs, result)
        self.records.append(record)
        self.calls.append(self._call)
        self._track(node, result, record)
        return result

    def _track(self, node, result, record: NodeCost) -> None:
        tensors = _tensors(result)
        if node.op == "get_attr":
            self._group[node] = None
            self._owner.update({t.untyped_storage()._cdata: None for t in tensors})
            return
        new = [t for t in tensors if t.untyped_storage()._cdata not in self._owner]
        old = [t for t in tensors if t.untyped_storage()._cdata in self._owner]
        if new:
            self._group[node] = node
            self.new_specs[node] = [_spec(t) for t in new]
            self._alloc[node] = sum(s.nbytes for s in self.new_specs[node])
            self._owner.update({t.untyped_storage()._cdata: node for t in new})
        elif old:
            self._group[node] = self._owner[old[0].untyped_storage()._cdata]

    def peak_activation_bytes(self) -> int:
        """Most bytes of activations alive at once when the graph runs in order, each freed after its last
        use (weights are not activations; a weight cast is)."""
        return max(self.liveness(lambda node: self._alloc.get(node, 0)), default=0)

    def liveness(self, alloc):
        """Bytes alive after each node, in order, given each node's allocation (`alloc(node)`: an int, or a
        polynomial for a sweep); the schedule (what is freed when) does not depend on the sizes."""
        order = {n: i for i, n in enumerate(self.graph.nodes)}
        last_use: dict[torch.fx.Node, int] = {}
        for node in self.graph.nodes:
            owner = self._group.get(node)
            if owner is None:
                continue
            end = max([order[node]] + [order[u] for u in node.users])
            last_use[owner] = max(last_use.get(owner, 0), end)
        frees: dict[int, list[torch.fx.Node]] = {}
        for owner, end in last_use.items():
            frees.setdefault(end, []).append(owner)
        live = 0
        levels = []
        for node, i in order.items():
            live = live + alloc(node)
            levels.append(live)
            for owner in frees.get(i, ()):
                live = live - alloc(owner)
        return levels

    def _cost(self, node, args, kwargs, result) -> NodeCost:
        stack_meta = node.meta.get("nn_module_stack") or {}
        stack = tuple(stack_meta.keys())
        module = next(reversed(stack_meta.values()))[0] if stack_meta else ROOT
        outputs = [_spec(t) for t in _tensors(result)]
        output_bytes = sum(s.nbytes for s in outputs)
        name = _op_name(node)
        base = dict(index=len(self.records), op=node.op, name=name, module=module, stack=stack,
                    output_bytes=output_bytes)
        if node.op in STRUCTURAL:
            return NodeCost(kind="structural", family="", cost=rules.METADATA, **base)
        inputs = _tensors((args, kwargs))
        if not inputs and not outputs:  # shape arithmetic on Python ints (f * h * w)
            return NodeCost(kind="metadata", family="", cost=rules.METADATA, **{**base, "name": f"python {name}"})
        rule = rules.lookup(node.op, node.target)
        if rule is None:
            return self._unknown(base, f"no rule for {name}")
        storages = {t.untyped_storage()._cdata for t in inputs}
        aliases = any(t.untyped_storage()._cdata in storages for t in _tensors(result))
        key = (self._key, aliases) if self._key is not None else None
        answer = self._costs.get(key) if key is not None else None
        if answer is None:
            call = OpCall(
                name=name,
                args=map_aggregate(args, lambda v: _spec(v) if isinstance(v, torch.Tensor) else v),
                kwargs=map_aggregate(kwargs, lambda v: _spec(v) if isinstance(v, torch.Tensor) else v),
                outputs=tuple(outputs),
                aliases_input=aliases,
            )
            try:
                cost = rule(call)
            except NotImplementedError as exc:
                return self._unknown(base, f"{rule.name}: {exc}")
            answer = (call, dict(kind="metadata" if cost.metadata else "costed", family=rule.family, cost=cost,
                                 in_dtype=inputs[0].dtype if inputs else None, layout=layout_of(inputs, outputs)))
            if key is not None:
                self._costs[key] = answer
        self._call = answer[0]
        return NodeCost(**answer[1], **base)

    def _unknown(self, base: dict, note: str) -> NodeCost:
        if self.strict:
            raise UnknownOpError(f"{note} (in {base['module']}); --strict makes unknown ops errors")
        return NodeCost(kind="unknown", family="", cost=Cost(), note=note, **base)


class UnknownOpError(RuntimeError):
    """An op the rule book cannot cost, under --strict."""


@dataclass
class Trace:
    model: torch.nn.Module
    records: list[NodeCost]
    peak_activation_bytes: int


@lru_cache(maxsize=4)
def meta_model(config: WanConfig, policy: PrecisionPolicy) -> torch.nn.Module:
    """The model on meta, built once per config and policy: traced, and read for the module table (never modify
    it; parallelize builds its own)."""
    return build_model(config, policy)


def trace_graph(config: WanConfig, policy: PrecisionPolicy) -> torch.fx.GraphModule:
    """Build `config` on meta and FX-trace its forward. The graph does not depend on the input shapes (they
    are read off the proxies), so one graph serves every frame count and resolution."""
    model = meta_model(config, policy)
    graph = WanTracer().trace(model, concrete_args=trace_args(config)[1])
    return torch.fx.GraphModule(model, graph)


def cost_graph(gm: torch.fx.GraphModule, config: WanConfig, policy: PrecisionPolicy, latent, batch: int,
               strict: bool = False) -> CostInterpreter:
    """Run a traced graph on meta inputs of one geometry, costing every node; the interpreter keeps the
    records and can tell the peak activation bytes."""
    inputs = make_inputs(config, latent, policy, batch=batch)
    interpreter = CostInterpreter(gm, strict)
    # placeholders follow forward's signature; concrete arguments keep a placeholder on some versions
    signature, fixed = trace_args(config)
    count = sum(n.op == "placeholder" for n in gm.graph.nodes)
    with lean_meta_run():
        interpreter.run(*(inputs[name] if name in inputs else fixed[name] for name in signature[:count]))
    return interpreter


def trace_model(config: WanConfig, policy: PrecisionPolicy, latent, batch: int, strict: bool = False) -> Trace:
    """Build `config` on meta, FX-trace its forward and cost every node."""
    gm = trace_graph(config, policy)
    interpreter = cost_graph(gm, config, policy, latent, batch, strict)
    return Trace(gm, interpreter.records, interpreter.peak_activation_bytes())


REPLICATED = "blocks.1"  # the traced block that stands for blocks 1..N-1


def traced_layers(config: WanConfig, replicate: bool = True) -> int:
    """Blocks to trace: two, block 1 standing for the rest, unless the blocks differ (VACE: only some main
    blocks take a hint, so every block is traced)."""
    if not replicate or config.model_type == "vace":
        return config.num_layers
    return min(config.num_layers, 2)


def in_block1(r: NodeCost) -> bool:
    return r.module == REPLICATED or r.module.startswith(REPLICATED + ".")


def replication_weights(records: list[NodeCost], num_layers: int) -> list[int]:
    """How many times each record of a 2-block trace counts in the `num_layers`-block model: what
    `replicate_blocks` does, as multiplicities, for totals that need no per-block ids (sweeps)."""
    copies = max(num_layers - 1, 1)
    return [copies if num_layers > 2 and in_block1(r) else 1 for r in records]


def replicate_blocks(records: list[NodeCost], num_layers: int) -> list[NodeCost]:
    """Records of a 2-block trace -> records of `num_layers` blocks. Block 0 is traced on its own (in the
    official path it sees the bf16 stream; later blocks see fp32); block 1 stands for blocks 1..N-1, whose
    graphs are identical. Each copy gets its own ids."""
    if num_layers <= 2:
        return records
    prefix = REPLICATED

    block1 = [r for r in records if in_block1(r)]
    first = next(i for i, r in enumerate(records) if in_block1(r))
    last = first + len(block1)
    if records[first:last] != block1:
        raise AssertionError("block 1's nodes are not contiguous")

    def renamed(r: NodeCost, k: int, index: int) -> NodeCost:
        swap = f"blocks.{k}"
        stack = tuple(swap + key[len(prefix):] if key.startswith(prefix) and key[len(prefix):len(prefix) + 1] in
                      ("", ".", "@", "#") else key for key in r.stack)
        return _replaced(r, module=swap + r.module[len(prefix):], stack=stack, index=index)

    copies = [renamed(r, k, last + (k - 2) * len(block1) + j) for k in range(2, num_layers)
              for j, r in enumerate(block1)]
    shift = len(copies)
    return [r if r.index == i else _replaced(r, index=i) for i, r in enumerate(records[:last])] + copies + [
        _replaced(r, index=last + shift + j) for j, r in enumerate(records[last:])]


def _replaced(r: NodeCost, **changes) -> NodeCost:
    """`dataclasses.replace(r, **changes)` at a fifth of the cost (7,600 records of the 14B): NodeCost is a frozen
    dataclass without __post_init__, so a copy of its fields with the changes is what `replace` would build."""
    new = object.__new__(NodeCost)
    new.__dict__.update(r.__dict__, **changes)
    return new


@dataclass(frozen=True)
class ModuleTable:
    """What a roll-up reads of a model: every module's type, in registration order, and the parameters (count,
    bytes) each owns itself. `with_blocks` copies block 1's entries for blocks 2..N-1 as replicate_blocks copies
    its records, so a report needs only the 2-block model it traced (a 40-block meta build is a fifth of the
    14B's analysis)."""

    types: dict[str, str]
    params: dict[str, tuple[int, int]]

    @classmethod
    def of(cls, model: torch.nn.Module) -> ModuleTable:
        params: dict[str, tuple[int, int]] = {}
        for name, p in model.named_parameters():
            owner = name.rpartition(".")[0] or ROOT
            n, b = params.get(owner, (0, 0))
            params[owner] = (n + p.numel(), b + p.numel() * p.element_size())
        return cls({name or ROOT: type(module).__name__ for name, module in model.named_modules()}, params)

    def with_blocks(self, num_layers: int) -> ModuleTable:
        """The table of the `num_layers`-block model whose blocks 0 and 1 this one holds."""
        return ModuleTable(_with_blocks(self.types, num_layers), _with_blocks(self.params, num_layers))


def _with_blocks(table: dict, num_layers: int) -> dict:
    """`table` with block 1's entries copied for blocks 2..N-1, right after block 1's last (registration order)."""
    block1 = [(i, v) for i, v in table.items() if i == REPLICATED or i.startswith(REPLICATED + ".")]
    out = {}
    for i, v in table.items():
        out[i] = v
        if block1 and i == block1[-1][0]:
            for k in range(2, num_layers):
                out.update((f"blocks.{k}{j[len(REPLICATED):]}", w) for j, w in block1)
    return out


def module_table(config: WanConfig, policy: PrecisionPolicy, traced: int) -> ModuleTable:
    """The whole model's table from the `traced`-block model the trace ran (its blocks copied, as its records)."""
    table = ModuleTable.of(meta_model(config.with_layers(traced), policy))
    return table.with_blocks(config.num_layers) if traced < config.num_layers else table
