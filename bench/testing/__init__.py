"""Test kit for the harness and for model authors (like LensKit's ``lenskit.testing``).

- ``tiny_frames`` / ``tiny_split``: small deterministic data (no files, no network).
- ``ModelConformance``: the protocol checks every model's test class inherits (seed
  determinism, score shape and dtype, NaN policy, batch independence, empty histories,
  untouched global RNGs, config errors)::

      from bench.testing import ModelConformance

      class TestMyModel(ModelConformance):
          registry_name = "mymodel"
          def make_model(self, **params):
              return MyModel.from_params(params)

  It is a pytest test class, so it needs pytest; pytest is imported only when
  ``ModelConformance`` is asked for, never by ``bench`` itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench.testing.data import GENRES, tiny_frames, tiny_split

if TYPE_CHECKING:
    from bench.testing.conformance import ModelConformance

__all__ = ["GENRES", "ModelConformance", "tiny_frames", "tiny_split"]


def __getattr__(name: str) -> Any:
    if name == "ModelConformance":  # imports pytest: only when asked for
        import pytest

        # detailed assertion messages in the kit, as in a test module
        pytest.register_assert_rewrite("bench.testing.conformance")
        from bench.testing.conformance import ModelConformance

        return ModelConformance
    raise AttributeError(f"module 'bench.testing' has no attribute {name!r}")
