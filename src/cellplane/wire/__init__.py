"""Typed wire models shared by the server and the processes that talk to it.

A leaf package: it imports pydantic and nothing of Cellplane, so the agent and the server both
depend on it without depending on each other. `wire.agent` is the server<->agent contract.
"""
