"""Features beyond neurons: directions in a layer's activation space.

* :mod:`~atlasjax.features.nmf` and :mod:`~atlasjax.features.groups`: neuron
  groups of one photo (non-negative matrix factorization of its ``[H·W, C]``
  activations, as in Building Blocks), their spatial maps and renders;
* :mod:`~atlasjax.features.positions`, :mod:`~atlasjax.features.train`,
  :mod:`~atlasjax.features.sae` and :mod:`~atlasjax.features.pipeline`: sparse
  dictionaries (TopK sparse autoencoders) trained on every spatial position of
  a layer, written as a portable ``dictionary.npz``;
* :mod:`~atlasjax.features.objectives`: a dictionary feature as an objective,
  so all features render in one batch;
* :mod:`~atlasjax.features.curves`: synthetic curve stimuli and a curve
  selectivity score.
"""
