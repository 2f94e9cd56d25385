"""LLM backends of llm-rerank: a local causal LM through transformers (``hf``) and any
OpenAI-compatible server (``openai_compat``), behind one small interface (``base``).

The replay cache in front of them lives in ``baselines.llm.cache``, the HTTP transport of the
OpenAI-compatible one in ``baselines.llm.http``. Importing this package loads neither torch
nor transformers.
"""

from baselines.llm.backends.base import LLMBackendError, LogLik, Reply
from baselines.llm.backends.hf import HFBackend, check_remote_code
from baselines.llm.backends.openai_compat import OpenAIBackend

__all__ = ["HFBackend", "LLMBackendError", "LogLik", "OpenAIBackend", "Reply", "check_remote_code"]
