"""Shared by the library's jaxpr interpreters (circuits, xla_cpu).

Both evaluate a traced jaxpr equation by equation, replacing a few primitives
and re-binding every other equation exactly as tracing bound it.
"""


def bind(eqn, invals) -> list:
  """Binds ``eqn``'s primitive to ``invals`` as tracing did; a list of outputs."""
  with eqn.ctx.manager:
    out = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
  return out if eqn.primitive.multiple_results else [out]
