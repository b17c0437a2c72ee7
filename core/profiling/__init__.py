"""Layer-wise profiling: per-layer time, share, params, FLOPs and memory; the bottlenecks."""

from core.profiling._chart import profile_chart
from core.profiling._profile import DEFAULT_TOLERANCE, Profiler, profile, write_profile
from core.profiling._result import LayerProfile, Profile

__all__ = ["DEFAULT_TOLERANCE", "LayerProfile", "Profile", "Profiler", "profile", "profile_chart",
           "write_profile"]
