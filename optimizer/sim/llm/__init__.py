"""The token-level LLM simulator: vLLM-style continuous batching per replica (``engine``), a cluster of
GPU pods under quotas driven by a scaling policy (``cluster``), LLM workloads (``workload``) and their
scores (``metrics``). Pure: no clock, no I/O. See ``docs/llm.md``."""
