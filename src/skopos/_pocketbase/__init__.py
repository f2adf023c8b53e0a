"""Talking to PocketBase: the REST client, filter literals, the realtime stream, dates.

Nothing here knows about analytics; everything above it speaks PocketBase only through
``client.PocketBaseClient``.
"""
