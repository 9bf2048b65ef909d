"""GC-pause probes, one per runtime, all emitting the same `gc.*` metrics.

`python` (exact pauses from the in-process agent in `_agent/`, for launched targets),
`jvm` (unified GC log, or `jstat`), `go` (`GODEBUG=gctrace=1` lines); `common` holds
the pause records and rates they share. The estimate for an attached Python process
comes from its stacks: `probes.stacks.gc_estimate`.
"""
