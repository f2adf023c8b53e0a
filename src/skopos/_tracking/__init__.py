"""Request → activity: what the request thread captures, and what the worker makes of it.

snapshot (request thread) → pipeline: validate (payload) → filter (site rules, IP rules,
bots) → enrich (user agent, client IP) → identify (visitor hash) → ``Activity``.
"""
