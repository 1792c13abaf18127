"""`define_op`: the one way an op of ours is declared.

From an op's own math (impl, fake, setup_context, backward and, optionally, how it folds a vmapped dimension) it
makes the three things every op needs:

- a torch custom op `gankernels::<name>` (custom_op + register_fake + register_autograd + register_vmap): what
  torch.compile, opcheck and AOTAutograd see, one opaque node with exact fake shapes;
- a new-style torch.autograd.Function (`forward(*args)` + `setup_context` + `backward` + `vmap`) running the same
  impl / setup / backward, for eager calls: torch.library's Python autograd wrapper costs 2-3x the host time per call
  (benchmarks/NOTES.md), and a new-style Function is what torch.func (grad, vjp, jacrev, vmap) composes with;
- the choice between them, made once, in `Op.__call__`.

A backward calls other ops with `ctx=ctx`: it follows how its forward ran (eager Function or traced custom op).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch._C._functorch import unwrap_if_dead as _unwrap_if_dead
from torch._functorch.autograd_function import custom_function_call as _custom_function_call

# A vmap spec: (input batch axes, output batch axes). An input's axis is the dimension along which the op is
# separable (output[n] depends only on input[n] there: usually 0, the batch), None where it is not (a filter, a
# weight, a bias, a scalar). Outputs likewise. A callable spec gets the op's arguments and returns one, or None when
# the call does not fold.
VmapSpec = tuple[Sequence[int | None], Sequence[int | None]]


class Op:
    """One op: `op(*args)` runs it (eager Function, or the custom op while torch.compile traces); inside a backward
    `op(*args, ctx=ctx)` runs it the way the forward ran."""

    __slots__ = ("name", "custom", "function", "impl", "tensors", "_record")

    def __init__(self, name: str, custom, function: type[_EagerFunction], impl: Callable):
        self.name = name
        self.custom = custom  # the torch custom op (torch.ops.gankernels.<name>)
        self.function = function  # the eager autograd.Function
        self.impl = impl
        self.tensors = function.tensors
        self._record = super(torch.autograd.Function, function).apply  # function.apply without its checks

    def __call__(self, *args, ctx=None):
        if ctx is None:
            if torch.compiler.is_compiling():
                return self.custom(*args)
        elif not getattr(ctx, "eager", False):  # a backward of the traced custom op
            return self.custom(*args)
        if _functorch_active():
            return _custom_function_call(self.function, *args)
        if torch.is_grad_enabled():
            return self._record(*_unwrap_dead(args, self.tensors))
        if ctx is not None:  # a backward that records nothing, on the tensors the autograd engine gave it
            return self.impl(*args)
        # Nothing to record (inference): the impl itself, without the Function's host time (benchmarks/NOTES.md). A
        # tensor that escaped a finished torch.func transform is unwrapped first, as Function.apply does.
        return self.impl(*_unwrap_dead(args, self.tensors))

    def __repr__(self) -> str:
        return f"<gankernels op {self.name}>"


class _EagerFunction(torch.autograd.Function):
    """Base of the eager Functions: apply without torch's per-call argument binding.

    torch.autograd.Function.apply binds the arguments to forward's signature with inspect.signature on every call of
    a new-style Function (setup_context defined), to fill in defaults: 2-3x the host time of a tiny op. Ours are
    always called with every argument, positionally, so there is nothing to fill in; the rest is torch's own path.
    """

    tensors: tuple[int, ...] = ()  # the positions of the tensor arguments

    @classmethod
    def apply(cls, *args):
        if not _functorch_active():
            return super(torch.autograd.Function, cls).apply(*_unwrap_dead(args, cls.tensors))
        return _custom_function_call(cls, *args)


_functorch_active = torch._C._are_functorch_transforms_active


def _unwrap_dead(args, tensors: tuple[int, ...]) -> list:
    """torch._functorch.utils.unwrap_dead_wrappers for the arguments at positions `tensors` (tensors or None): a
    tensor that escaped a finished torch.func transform becomes the plain tensor it wraps."""
    args = list(args)
    for i in tensors:
        if args[i] is not None:
            args[i] = _unwrap_if_dead(args[i])
    return args


def _tensor_positions(schema: str) -> tuple[int, ...]:
    """The positions of the Tensor and Tensor? arguments of `schema`."""
    arguments = torch._C.parse_schema(f"f{schema}").arguments
    return tuple(i for i, a in enumerate(arguments) if a.type.isSubtypeOf(torch._C.OptionalType.ofTensor()))


def define_op(
    name: str,
    schema: str,
    impl: Callable,
    *,
    fake: Callable,
    setup_context: Callable,
    backward: Callable,
    vmap: VmapSpec | Callable | None = None,
) -> Op:
    """Declare op `gankernels::<name>`.

    schema: the op's arguments and results in torch's schema language, e.g. "(Tensor x, Tensor? b, float gain) ->
    Tensor"; impl(*args): the computation; fake(*args): empty outputs of the right shape, dtype and layout;
    setup_context(ctx, inputs, output) and backward(ctx, *grads) as torch.library.register_autograd wants them
    (backward returns one gradient or None per input); vmap: a VmapSpec (or a callable giving one per call) to fold a
    vmapped dimension into the op's batch, else the op runs once per vmapped index.
    """
    custom = torch.library.custom_op(f"gankernels::{name}", impl, mutates_args=(), schema=schema)
    custom.register_fake(fake)
    custom.register_autograd(backward, setup_context=setup_context)

    def eager_setup(ctx, inputs, output):
        setup_context(ctx, inputs, output)
        ctx.eager = True  # its backward runs the eager Functions too

    function = type(f"{_camel(name)}Function", (_EagerFunction,), {
        "tensors": _tensor_positions(schema),
        "forward": staticmethod(impl),
        "setup_context": staticmethod(eager_setup),
        "backward": staticmethod(backward),
        "vmap": staticmethod(_vmap_rule(lambda *a: function.apply(*a), vmap)),
    })  # fmt: skip
    torch.library.register_vmap(custom, _vmap_rule(custom, vmap))
    return Op(name, custom, function, impl)


def define_forward_op(
    name: str,
    schema: str,
    impl: Callable,
    *,
    fake: Callable,
    gradient: Op,
    saved: int,
    params: slice | None = None,
    save_output: bool = False,
    vmap=None,
) -> Op:
    """An op whose backward is one call of its `gradient` op: gradient(g, <its first `saved` inputs (and its output
    with save_output)>, <inputs[params]: default every input after the saved ones>) -> the gradients of the saved
    inputs (those not needed are dropped)."""
    params = slice(saved, None) if params is None else params

    def setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs[:saved], *([output] if save_output else []))
        ctx.params = inputs[params]

    def backward(ctx, g):
        tensors, needs = ctx.saved_tensors, ctx.needs_input_grad
        grads = gradient(g, *tensors, *ctx.params, ctx=ctx)
        grads = (grads,) if isinstance(grads, torch.Tensor) else grads
        return (*[gi if needs[i] and tensors[i] is not None else None for i, gi in enumerate(grads)],
                *[None] * (len(needs) - len(grads)))  # fmt: skip

    return define_op(name, schema, impl, fake=fake, setup_context=setup, backward=backward, vmap=vmap)


def define_gradient_op(
    name: str, schema: str, impl: Callable, *, fake: Callable, formula: Callable, saved: int, vmap=None
) -> Op:
    """A gradient op whose own backward is autograd through the reference `formula` (see through_reference),
    so every order of gradient is exact. Its first `saved` inputs are tensors (the formula's differentiable
    arguments), its last is the backend name, and those between are the formula's other arguments. No vmap spec
    (the default) suits gradients that sum over the batch (a weight's, a bias's): the op runs once per vmapped index."""

    def setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs[:saved])
        ctx.params = inputs[saved:-1]
        ctx.set_materialize_grads(False)

    def backward(ctx, *grad_outputs):
        grads = through_reference(formula, ctx.saved_tensors, ctx.needs_input_grad, grad_outputs, ctx.params)
        return (*grads, *[None] * (len(ctx.needs_input_grad) - saved))

    return define_op(name, schema, impl, fake=fake, setup_context=setup, backward=backward, vmap=vmap)


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


# ----------------------------------------------------------------------------------------------------------------
# vmap: fold the vmapped dimension into the op's batch where the op is separable along it, else a loop


def _vmap_rule(run: Callable, spec):
    def rule(info, in_dims, *args):
        in_dims = [d if isinstance(d, int) else None for d in in_dims]  # a list argument has a list of Nones
        folds = spec(*args) if callable(spec) else spec
        if folds is not None and _foldable(folds, in_dims, args):
            return _fold(run, info.batch_size, folds, in_dims, args)
        return _loop(run, info.batch_size, in_dims, args)

    return rule


def _foldable(folds, in_dims, args) -> bool:
    """Every output has a batch axis, and every vmapped input folds along axis 0."""
    in_axes, out_axes = folds
    return all(a is not None for a in out_axes) and all(in_axes[i] == 0 for i, d in enumerate(in_dims) if d is not None)


def _fold(run, size, folds, in_dims, args):
    in_axes = folds[0]
    first = next(i for i, d in enumerate(in_dims) if d is not None)
    inner = args[first].movedim(in_dims[first], 0).shape[1]  # the op's own batch size
    folded = list(args)
    for i, a in enumerate(args):
        if in_axes[i] is None or not isinstance(a, torch.Tensor):
            continue
        if in_dims[i] is not None:
            folded[i] = a.movedim(in_dims[i], 0).flatten(0, 1)
        else:  # a per-sample input that is not vmapped: the same for every vmapped index
            folded[i] = a.unsqueeze(0).expand(size, *a.shape).flatten(0, 1)
    out = run(*folded)
    if isinstance(out, torch.Tensor):
        return out.unflatten(0, (size, inner)), 0
    return tuple(o.unflatten(0, (size, inner)) for o in out), tuple(0 for _ in out)


def _loop(run, size, in_dims, args):
    results = []
    for index in range(size):
        sliced = [a if d is None else a.select(d, index) for a, d in zip(args, in_dims, strict=True)]
        results.append(run(*sliced))
    if isinstance(results[0], torch.Tensor):
        return torch.stack(results), 0
    outs = tuple(torch.stack([r[k] for r in results]) for k in range(len(results[0])))
    return outs, tuple(0 for _ in outs)


# ----------------------------------------------------------------------------------------------------------------
# Backward through a reference formula


def through_reference(formula, saved, needs, grad_outputs, params=()):
    """Gradients of <grad_outputs, formula(*saved, *params)> with respect to the saved tensors that need one, by
    autograd through the reference formula: differentiable again, so any order works. A saved tensor in the graph is
    differentiated through an alias (view_as), so that autograd neither follows it further back nor frees the graph.
    formula returns a tensor or a tuple (None entries allowed), matched with grad_outputs; a wanted tensor without a
    path gets zeros. The backward of every gradient op whose own backward is its reference formula."""
    wanted = [i for i, t in enumerate(saved) if needs[i] and t is not None]
    grads = [None] * len(saved)
    if not wanted:
        return grads
    create_graph = torch.is_grad_enabled()  # inside a backward: whether that backward builds a graph
    with torch.enable_grad():
        inputs = list(saved)
        for i in wanted:
            t = inputs[i]
            inputs[i] = t.view_as(t) if t.requires_grad else t.detach().requires_grad_(True)
        outs = formula(*inputs, *params)
        outs = (outs,) if isinstance(outs, torch.Tensor) else outs
        pairs = [(o, go) for o, go in zip(outs, grad_outputs, strict=True) if o is not None and go is not None]
        pairs = [(o, go) for o, go in pairs if o.requires_grad]
        if pairs:
            found = torch.autograd.grad(
                [o for o, _ in pairs], [inputs[i] for i in wanted], [go for _, go in pairs],
                create_graph=create_graph, allow_unused=True,
            )  # fmt: skip
            for i, gi in zip(wanted, found, strict=True):
                grads[i] = gi
    for i in wanted:  # no path (e.g. the mask of a clamp): zeros
        if grads[i] is None:
            grads[i] = torch.zeros_like(saved[i])
    return grads
