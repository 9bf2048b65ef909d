"""The simulated LLM inference server's parts, run by the ``llm_server.py`` script beside it.

Kept as a plain directory next to the script (and shipped beside it in the wheel as
``tracker/_bundled/llm_sim``) so the script imports it from its own directory; it needs
only starlette and must not import ``tracker`` or ``probes``.
"""
