"""Activity → PocketBase: sessionizing, JS error groups, the spool, batching and retries.

The worker takes calls from the queue, has them prepared by ``_tracking``, decides when to
write (``schedule``), and hands ``writes.PendingWrite`` lists to the writer thread.
"""
